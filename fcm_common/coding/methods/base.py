"""The feature-method interface and its registry.

A method says what is done to the split tensors before packing (encoder) and undone after
unpacking (decoder). One class in one module of this package is the whole method: decorated with
:func:`register_method`, it brings its name and bitstream code, the tensors a stream of it carries
(checked by the bitstream reader), its default quantisation range, and its command-line options
(turned into click options by :mod:`fcm_common.cli.options`; their values reach :meth:`prepare` and
:meth:`for_decoding` as keyword arguments, each method taking its own and ignoring the rest).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch

from fcm_common.coding.identifiers import ID_BYTES
from fcm_common.coding.packing import FrameLayout
from fcm_common.coding.quantization import RangeSpec
from fcm_common.coding.registry import CliOption, Registry
from fcm_common.core.errors import FcmError
from fcm_common.model.splits import SplitPoint


class FeatureMethod(ABC):
    name: ClassVar[str] = ""
    code: ClassVar[int] = -1  # in the bitstream header (docs/bitstream.md)
    summary: ClassVar[str] = ""  # how ``--method`` help names it
    range_help: ClassVar[str] = ""  # its default quantisation range, for ``--range`` help
    options: ClassVar[tuple[CliOption, ...]] = ()  # encoder side: fcm-encode, fcm-ctc -> prepare()
    decode_options: ClassVar[tuple[CliOption, ...]] = ()  # fcm-decode -> for_decoding()
    learned: ClassVar[bool] = False  # a stream names its learned model (else the model identifier is zero)
    codes_all_channels: ClassVar[bool] = False  # k = C for every tensor
    default_split: ClassVar[str | None] = None  # fcm-ctc without --split; None: the dataset's anchor split
    dataset_range: ClassVar[bool] = False  # fcm-ctc: the dataset's anchor range applies at its anchor split

    # ------------------------------------------------------------------------- construction
    @classmethod
    def check_options(cls, **options) -> None:
        """Cheap checks of the options, run before JDE is loaded."""

    @classmethod
    def prepare(cls, split: SplitPoint, jde_weights_id: str, device, **options) -> FeatureMethod:
        """Encoder side: the method for a split and JDE weights, with what it loads (once per run)."""
        return cls()

    def at_qp(self, qp: int) -> FeatureMethod:
        """The method as it codes at ``qp`` (a method whose choices depend on the rate resolves them)."""
        return self

    @classmethod
    def for_decoding(cls, device, **options) -> FeatureMethod:
        """Decoder side: the method named in a stream's header."""
        return cls()

    @classmethod
    def default_options(cls, split: SplitPoint, jde_weights_id: str, **options) -> dict:
        """``options`` with what the user left out filled in for this network (e.g. a bundled model)."""
        return options

    def describe_model(self) -> str:
        """What a summary says about the learned model (empty for methods without one)."""
        return ""

    # ------------------------------------------------------------------------- stream format
    @classmethod
    @abstractmethod
    def stream_grids(cls, split: SplitPoint, input_width: int, input_height: int) -> list[tuple[int, int]]:
        """(H, W) of each tensor a stream carries, in method order (their channels are the network's
        and the model's: the header states them, the decoder checks them against its own)."""

    @classmethod
    def stream_grid_choices(cls, split: SplitPoint, input_width: int, input_height: int) -> list[list[tuple[int, int]]]:
        """The grids each tensor of a stream may be on (what the header check accepts); by default
        exactly :meth:`stream_grids`. A method whose model chooses the grid lists every choice, and
        :meth:`check_stream` checks the model's."""
        return [[grid] for grid in cls.stream_grids(split, input_width, input_height)]

    def check_stream(self, fused_channels: Sequence[int], split_shapes: Sequence[tuple[int, int, int]],
                     grids: Sequence[tuple[int, int]] | None = None) -> None:
        """Decoder side: refuse a stream whose tensors (``fused_channels``; ``grids``: their (H, W)
        in method order) do not fit this method's network and model."""
        expected = self.fused_channels(split_shapes)
        if list(fused_channels) != list(expected):
            raise FcmError(
                f"the stream carries {'+'.join(map(str, fused_channels))} channels, this network and "
                f"{self.name} model make {'+'.join(map(str, expected))}: decode with the encoder's network"
            )
        if grids is not None:
            made = [(h, w) for _, h, w in self.coded_shapes(split_shapes)]
            if [tuple(g) for g in grids] != made:
                raise FcmError(
                    f"the stream's tensors are on {', '.join(f'{h}x{w}' for h, w in grids)} grids, this network and "
                    f"{self.name} model code on {', '.join(f'{h}x{w}' for h, w in made)}: decode with the encoder's model"
                )

    @property
    def model_id(self) -> bytes:
        """Identifier of the learned model (zeros when there is none)."""
        return bytes(ID_BYTES)

    # ------------------------------------------------------------------------- quantisation range
    def default_range(self, split: SplitPoint, reference_network: bool = True) -> str:
        """``--range`` when none is given."""
        return "frame"

    @property
    def model_range(self) -> tuple[float, float] | None:
        """The range ``--range model`` names (a learned model's code range), if any."""
        return None

    def range_spec(self, text: str | None, split: SplitPoint, reference_network: bool = True) -> RangeSpec:
        """The quantisation range: ``text`` (see fcm-encode --range), or the method's default
        (``reference_network``: a network with JDE-1088x608's channels, see SplitPoint.is_reference)."""
        text = self.default_range(split, reference_network) if text is None else text
        if text.strip().lower() == "model":
            if not self.model_range:
                raise FcmError("--range model needs an advmsfc model that records its code range")
            return RangeSpec("fixed", *self.model_range, "model")
        return RangeSpec.parse(text)

    # ------------------------------------------------------------------------- coding
    @abstractmethod
    def coded_shapes(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """(k, H, W) of the tensors actually packed, in method order."""

    @abstractmethod
    def fused_channels(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[int]:
        """Channels C of each method tensor before truncation."""

    @abstractmethod
    def layout(self, coded_shapes: Sequence[tuple[int, int, int]]) -> FrameLayout:
        """How the coded tensors are tiled into a frame."""

    @abstractmethod
    def reduce(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Encoder side: split tensors (B, C, H, W) -> tensors to code (B, k, H, W)."""

    @abstractmethod
    def restore(self, coded: Sequence[torch.Tensor], fused_channels: Sequence[int]) -> list[torch.Tensor]:
        """Decoder side: decoded tensors (B, k, H, W) -> the split tensors for JDE part 2."""


METHODS: Registry[FeatureMethod] = Registry("method")
register_method = METHODS.register


def check_method(name: str, **options) -> type[FeatureMethod]:
    """The method class, once its options are checked: none that only another method takes."""
    cls = METHODS[name]
    own = {o.name for o in cls.options}
    for other in METHODS:
        exclusive = [o for o in other.options if o.exclusive and o.name not in own]
        if other is not cls and any(options.get(o.name) is not None for o in exclusive):
            raise FcmError(f"{' and '.join(o.flag for o in exclusive)} apply to --method {other.name} only")
    cls.check_options(**options)
    return cls


def prepare_method(name: str, split: SplitPoint, jde_weights_id: str, device, **options) -> FeatureMethod:
    """Encoder side, once per run: see :meth:`FeatureMethod.prepare`."""
    return check_method(name, **options).prepare(split, jde_weights_id, device, **options)


def method_for_encoding(name: str, split: SplitPoint, qp: int, jde_weights_id: str, device, **options) -> FeatureMethod:
    """The method ready to code at ``qp`` (advmsfc: its kept-channel count resolved)."""
    return prepare_method(name, split, jde_weights_id, device, **options).at_qp(qp)


def method_for_decoding(name: str, device="cpu", **options) -> FeatureMethod:
    """The method named in a bitstream header."""
    return METHODS[name].for_decoding(device, **options)
