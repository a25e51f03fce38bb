"""The MPEG feature anchor: every channel of the three split tensors, packed as the framework does."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.packing import FrameLayout, anchor_layout


class AnchorMethod(FeatureMethod):
    name = "anchor"

    def coded_shapes(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        return [tuple(s) for s in split_shapes]

    def fused_channels(self, split_shapes: Sequence[tuple[int, int, int]]) -> list[int]:
        return [c for c, _, _ in split_shapes]

    def layout(self, coded_shapes: Sequence[tuple[int, int, int]]) -> FrameLayout:
        return anchor_layout(coded_shapes)

    def reduce(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return list(features)

    def restore(self, coded: Sequence[torch.Tensor], fused_channels: Sequence[int]) -> list[torch.Tensor]:
        return list(coded)
