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
from fcm_common.msfc.checkpoint import MSFCCheckpoint, load_checkpoint
from fcm_common.msfc.qact import QACTTable, load_qact

# resolved to an absolute path: fcm-ctc's workers may run in another folder
MODEL_OPTION = cli_option(
    "--model", "model_path", envvar="FCM_ADVMSFC_MODEL", type=click.Path(path_type=Path, resolve_path=True),
    exclusive=False, help="advMSFC checkpoint for this split (fcm-train); default $FCM_ADVMSFC_MODEL.",
)


@register_method
class AdvMSFCMethod(FeatureMethod):
    name = "advmsfc"
    code = 1
    summary = "advmsfc (needs --model)"
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
                   help="advMSFC checkpoint named by an advmsfc stream (default $FCM_ADVMSFC_MODEL)."),
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
    def check_options(cls, model_path=None, **_) -> None:
        if model_path is None:
            raise FcmError("--method advmsfc needs --model PATH (train one with fcm-train), or use --method anchor")

    @classmethod
    def prepare(cls, split: SplitPoint, jde_weights_id: str, device, model_path=None, channels=None, qact_path=None,
                **_) -> AdvMSFCMethod:
        cls.check_options(model_path=model_path)
        checkpoint = load_checkpoint(model_path, split, jde_weights_id, device)
        return cls(checkpoint, qact=load_qact(split, qact_path) if qact_path else None, channels=channels)

    def at_qp(self, qp: int) -> AdvMSFCMethod:
        keep = self.channels if self.channels is not None else self.qact.channels_for(qp)
        fused = self.model.fused_channels
        if not 1 <= keep <= fused:
            raise FcmError(f"{keep} kept channels: must be within 1..{fused} for {self.checkpoint.split}")
        return AdvMSFCMethod(self.checkpoint, keep, self.qact, self.channels)

    @classmethod
    def for_decoding(cls, device, model_path=None, **_) -> AdvMSFCMethod:
        if model_path is None:
            raise FcmError("advmsfc needs its trained model: pass --model PATH (train one with fcm-train)")
        return cls(load_checkpoint(model_path, device=device))

    # ------------------------------------------------------------------------- stream format
    @classmethod
    def stream_shapes(cls, split: SplitPoint, input_width: int, input_height: int) -> list[tuple[int, int, int]]:
        """One tensor of the split's fused channels at its coarsest grid."""
        shapes = split.shapes(input_width, input_height)
        coarse = max(range(len(shapes)), key=lambda i: split.strides[i])
        return [(split.fused_channels, shapes[coarse][1], shapes[coarse][2])]

    @property
    def model_id(self) -> bytes:
        return bytes.fromhex(self.checkpoint.model_id)[:ID_BYTES]

    def default_range(self, split: SplitPoint) -> str:
        return "model" if self.model_range else "frame"

    @property
    def model_range(self) -> tuple[float, float] | None:
        return self.checkpoint.code_range

    # ------------------------------------------------------------------------- coding
    def coded_shapes(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        _, h, w = split_shapes[self.model.order[2]]  # the coarsest grid
        return [(self.keep, h, w)]

    def fused_channels(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[int]:
        return [self.model.fused_channels]

    def layout(self, coded_shapes: Sequence[tuple[int, int, int]]) -> FrameLayout:
        return single_tensor_layout(*coded_shapes[0])

    def reduce(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.model.encode(features)[:, : self.keep]]

    def restore(self, coded: Sequence[torch.Tensor], fused_channels: Sequence[int]) -> list[torch.Tensor]:
        return self.model.decode(self.model.zero_fill(coded[0], fused_channels[0]))
