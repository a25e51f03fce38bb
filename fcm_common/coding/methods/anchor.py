"""The MPEG feature anchor: every channel of the three split tensors, packed as the framework does."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fcm_common.coding.methods.base import FeatureMethod, register_method
from fcm_common.coding.packing import FrameLayout, anchor_layout
from fcm_common.model.splits import SplitPoint

# the framework's fixed dataset ranges at its anchor splits; backbone has no framework range. They were
# measured on JDE-1088x608's features: any other network gets ranges measured over the sequence.
DEFAULT_RANGES = {"dn53": "tvd", "alt1": "hieve", "backbone": "frame"}
OTHER_NETWORKS = "sequence"


@register_method
class AnchorMethod(FeatureMethod):
    name = "anchor"
    code = 0
    summary = "the MPEG feature anchor"
    range_help = "anchor tvd (dn53), hieve (alt1), frame (backbone) for JDE-1088x608, sequence for other networks"
    codes_all_channels = True
    dataset_range = True

    @classmethod
    def stream_grids(cls, split: SplitPoint, input_width: int, input_height: int) -> list[tuple[int, int]]:
        return split.grids(input_width, input_height)

    def default_range(self, split: SplitPoint, reference_network: bool = True) -> str:
        return DEFAULT_RANGES[split.name] if reference_network else OTHER_NETWORKS

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
