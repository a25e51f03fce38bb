"""advMSFC as a feature-coding method: MSFF, QACT truncation to k channels, MSFR.

Encoder: the split tensors are fused into the SLS-ordered code (C channels at the coarsest grid)
and only its first k channels are packed (one 10-bit frame per picture, near-square tiles). k
comes from the QACT table at the coding QP, or ``--channels``, and is signalled in the bitstream.
Decoder: the k decoded channels are zero-filled to C and MSFR rebuilds the three split tensors
for JDE part 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fcm_common.coding.bitstream import ID_BYTES
from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.packing import FrameLayout, single_tensor_layout
from fcm_common.core.errors import FcmError
from fcm_common.msfc.checkpoint import MSFCCheckpoint, load_checkpoint


class AdvMSFCMethod(FeatureMethod):
    name = "advmsfc"

    def __init__(self, checkpoint: MSFCCheckpoint, keep: int | None = None):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        channels = self.model.fused_channels
        if keep is not None and not 1 <= keep <= channels:
            raise FcmError(f"--channels must be within 1..{channels} for {checkpoint.split}, got {keep}")
        self.keep = keep or channels

    @property
    def model_id(self) -> bytes:
        return bytes.fromhex(self.checkpoint.model_id)[:ID_BYTES]

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


def load_advmsfc_method(path, device="cpu", split=None, jde_weights_id=None, keep=None) -> AdvMSFCMethod:
    if path is None:
        raise FcmError("advmsfc needs its trained model: pass --model PATH (train one with fcm-train)")
    return AdvMSFCMethod(load_checkpoint(path, split, jde_weights_id, device), keep)
