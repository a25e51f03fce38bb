"""Feature-coding methods: what is done to the split tensors before packing, and undone after.

- ``anchor``: the MPEG feature anchor, all channels of the three tensors as they are.
- ``advmsfc``: multi-scale feature fusion into one tensor, QP-adaptive channel truncation, and
  reconstruction of the three tensors at the decoder (see :mod:`fcm_common.coding.methods.advmsfc`).

The encoder and decoder only talk to a method through :class:`FeatureMethod`, so a new method
plugs in without touching the bitstream, packing or codec code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from fcm_common.coding.bitstream import ID_BYTES
from fcm_common.coding.packing import FrameLayout


class FeatureMethod(ABC):
    name: str = ""

    @property
    def model_id(self) -> bytes:
        """Identifier of the learned model (zeros when there is none)."""
        return bytes(ID_BYTES)

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


def method_for_decoding(name: str, model_path=None, device="cpu") -> FeatureMethod:
    """The method named in a bitstream header."""
    if name == "anchor":
        from fcm_common.coding.methods.anchor import AnchorMethod

        return AnchorMethod()
    if name == "advmsfc":
        from fcm_common.coding.methods.advmsfc import load_advmsfc_method

        return load_advmsfc_method(model_path, device=device)
    raise ValueError(f"unknown method '{name}'")
