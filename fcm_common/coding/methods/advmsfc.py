"""advMSFC as a feature-coding method: MSFF, QACT truncation to k channels, MSFR.

Encoder: the split tensors are fused into the SLS-ordered code (C channels at the coarsest grid)
and only its first k channels are packed (one 10-bit frame per picture, near-square tiles). k
comes from the QACT table at the coding QP, or ``--channels``, and is signalled in the bitstream.
Decoder: the k decoded channels are zero-filled to C and MSFR rebuilds the three split tensors
for JDE part 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
import torch

from fcm_common.coding.identifiers import ID_BYTES
from fcm_common.coding.methods.base import FeatureMethod, register_method
from fcm_common.coding.packing import FrameLayout, single_tensor_layout
from fcm_common.coding.registry import cli_option
from fcm_common.core.errors import FcmError
from fcm_common.model.splits import SplitPoint
from fcm_common.msfc.bundled import bundled_model_by_id, bundled_model_for, bundled_model_name, is_bundled
from fcm_common.msfc.checkpoint import MSFCCheckpoint, load_checkpoint
from fcm_common.msfc.qact import QACTTable, load_qact

# resolved to an absolute path: fcm-ctc's workers may run in another folder
MODEL_OPTION = cli_option(
    "--model", "model_path", envvar="FCM_ADVMSFC_MODEL", type=click.Path(path_type=Path, resolve_path=True),
    exclusive=False, help="advMSFC checkpoint for this split (fcm-train); default $FCM_ADVMSFC_MODEL, else the bundled model of the split when the JDE is the bundled one.",
)


@register_method
class AdvMSFCMethod(FeatureMethod):
    name = "advmsfc"
    code = 1
    summary = "advmsfc (bundled models serve the bundled JDE; else --model)"
    range_help = "advmsfc model"
    learned = True
    default_split = "backbone"
    options = (
        MODEL_OPTION,
        cli_option("--channels", type=click.IntRange(min=1), help="advmsfc: keep K channels (overrides the QACT table)."),
        cli_option("--qact", "qact_path", type=click.Path(path_type=Path), help="advmsfc: QACT table (default: the model's)."),
    )
    decode_options = (
        cli_option("--model", "model_path", envvar="FCM_ADVMSFC_MODEL", type=click.Path(path_type=Path), exclusive=False,
                   help="advMSFC checkpoint named by an advmsfc stream (default $FCM_ADVMSFC_MODEL, else the bundled model it names)."),
    )

    def __init__(self, checkpoint: MSFCCheckpoint, keep: int | None = None, qact: QACTTable | None = None,
                 channels: int | None = None):
        """``keep``: channels coded now; ``qact`` (default: the model's) and ``channels`` (a fixed k)
        decide it at another QP (:meth:`at_qp`)."""
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        fused = self.model.fused_channels
        if keep is not None and not 1 <= keep <= fused:
            raise FcmError(f"--channels must be within 1..{fused} for {checkpoint.split}, got {keep}")
        self.keep = keep or fused
        self.qact = qact or checkpoint.qact
        self.channels = channels

    # ------------------------------------------------------------------------- construction
    @classmethod
    def default_options(cls, split: SplitPoint, jde_weights_id: str, **options) -> dict:
        """No --model: the bundled model of the split, if it serves these JDE weights."""
        if options.get("model_path") is None:
            options["model_path"] = bundled_model_for(split.name, jde_weights_id)
            if options["model_path"] is None:
                raise FcmError(
                    "--method advmsfc needs --model PATH: the bundled advMSFC models serve the bundled JDE only "
                    "(train one for these weights with fcm-train), or use --method anchor"
                )
        return options

    @classmethod
    def prepare(cls, split: SplitPoint, jde_weights_id: str, device, model_path=None, channels=None, qact_path=None,
                **_) -> AdvMSFCMethod:
        model_path = cls.default_options(split, jde_weights_id, model_path=model_path)["model_path"]
        checkpoint = load_checkpoint(model_path, split, jde_weights_id, device)
        qact = load_qact(split, qact_path, checkpoint.model.fused_channels) if qact_path else None
        return cls(checkpoint, qact=qact, channels=channels)

    def at_qp(self, qp: int) -> AdvMSFCMethod:
        keep = self.channels if self.channels is not None else self.qact.channels_for(qp)
        fused = self.model.fused_channels
        if not 1 <= keep <= fused:
            raise FcmError(f"{keep} kept channels: must be within 1..{fused} for {self.checkpoint.split}")
        return type(self)(self.checkpoint, keep, self.qact, self.channels)  # a subclass (an encoder variant) stays itself

    @classmethod
    def for_decoding(cls, device, model_path=None, model_id: bytes | None = None, **_) -> AdvMSFCMethod:
        if model_path is None and model_id is not None:
            model_path = bundled_model_by_id(model_id)
        if model_path is None:
            named = f" {model_id.hex()}" if model_id is not None else ""
            raise FcmError(f"the stream needs advMSFC model{named}, which is not bundled: pass --model PATH")
        return cls(load_checkpoint(model_path, device=device))

    def describe_model(self) -> str:
        path = self.checkpoint.path
        name = f"{bundled_model_name(self.checkpoint.split)} (bundled)" if path and is_bundled(path) else str(path)
        return f", advMSFC model: {name}"

    # ------------------------------------------------------------------------- stream format
    @classmethod
    def stream_grids(cls, split: SplitPoint, input_width: int, input_height: int) -> list[tuple[int, int]]:
        """One tensor, the fused code, on the split's coarsest grid (the paper's MSFF)."""
        return [split.grids(input_width, input_height)[split.coarsest]]

    @classmethod
    def stream_grid_choices(cls, split: SplitPoint, input_width: int, input_height: int) -> list[list[tuple[int, int]]]:
        """The coarsest grid, or the finest (the backbone detections code, :mod:`fcm_common.msfc.detection_code`)."""
        grids = split.grids(input_width, input_height)
        return [[grids[split.coarsest], grids[split.finest]]]

    @property
    def model_id(self) -> bytes:
        return bytes.fromhex(self.checkpoint.model_id)[:ID_BYTES]

    def default_range(self, split: SplitPoint, reference_network: bool = True) -> str:
        return "model" if self.model_range else "frame"

    @property
    def model_range(self) -> tuple[float, float] | None:
        return self.checkpoint.code_range

    # ------------------------------------------------------------------------- coding
    def coded_shapes(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        _, h, w = split_shapes[self.model.order[self.model.code_scale]]
        return [(self.keep, h, w)]

    def fused_channels(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[int]:
        return [self.model.fused_channels]

    def layout(self, coded_shapes: Sequence[tuple[int, int, int]]) -> FrameLayout:
        return single_tensor_layout(*coded_shapes[0])

    def reduce(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.model.encode(features)[:, : self.keep]]

    def restore(self, coded: Sequence[torch.Tensor], fused_channels: Sequence[int]) -> list[torch.Tensor]:
        return self.model.decode(self.model.zero_fill(coded[0], fused_channels[0]))
