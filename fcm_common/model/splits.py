"""The three MPEG FCM split points of JDE-1088x608 (and of every network with its layer graph).

A split point is the set of layers whose outputs cross from the encoder side (NN part 1) to the
decoder side (NN part 2). Indices are 0-based Darknet layer indices (``[net]`` not counted) and
name the *output* of that layer. The order is the order MPEG lists them in (and the order of the
tensors returned by :meth:`fcm_common.model.jde.JDE.forward_part1`).

A split fixes layers and strides, hence the grids at a given input size; the channel counts are the
network's (:meth:`fcm_common.model.jde.JDE.split_shapes`). JDE-1088x608's are kept here as the
reference the MPEG framework and the advMSFC paper are written for.
"""

from __future__ import annotations

from dataclasses import dataclass

from fcm_common.core.errors import FcmError


@dataclass(frozen=True)
class SplitPoint:
    name: str
    layers: tuple[int, int, int]
    # (C, H, W) of each tensor of JDE-1088x608 at its 1088x608 input, in `layers` order.
    shapes_1088x608: tuple[tuple[int, int, int], ...]
    # JDE-1088x608's fused advMSFC channels (the coarsest tensor's channel count).
    fused_channels: int
    description: str
    # Downsampling factor of each tensor relative to the network input, in `layers` order.
    strides: tuple[int, int, int] = (32, 16, 8)

    def grids(self, input_width: int, input_height: int) -> list[tuple[int, int]]:
        """(H, W) of each tensor for a network input of the given size (any network of JDE's graph)."""
        return [(input_height // s, input_width // s) for s in self.strides]

    @property
    def coarsest(self) -> int:
        """Position, in `layers` order, of the tensor on the coarsest grid (where advMSFC fuses)."""
        return max(range(len(self.strides)), key=lambda i: self.strides[i])

    @property
    def finest(self) -> int:
        """Position, in `layers` order, of the tensor on the finest grid (where the backbone detections code is)."""
        return min(range(len(self.strides)), key=lambda i: self.strides[i])

    def is_reference(self, split_shapes) -> bool:
        """Whether a network's split tensors have JDE-1088x608's channel counts (the network the MPEG
        framework's fixed quantisation ranges were measured on), whatever its input size."""
        return [int(s[0]) for s in split_shapes] == [c for c, _, _ in self.shapes_1088x608]

    def shapes(self, input_width: int = 1088, input_height: int = 608) -> list[tuple[int, int, int]]:
        """(C, H, W) of each tensor of JDE-1088x608 (its channels) for an input of the given size."""
        return [(c, h, w) for (c, _, _), (h, w) in zip(self.shapes_1088x608, self.grids(input_width, input_height))]


SPLITS: dict[str, SplitPoint] = {
    "dn53": SplitPoint(
        "dn53",
        (36, 61, 74),
        ((256, 76, 136), (512, 38, 68), (1024, 19, 34)),
        1024,
        "end of the stride-8/16/32 Darknet-53 stages (residual adds)",
        (8, 16, 32),
    ),
    "alt1": SplitPoint(
        "alt1",
        (75, 90, 105),
        ((512, 19, 34), (256, 38, 68), (128, 76, 136)),
        512,
        "first 1x1 conv of each of the three heads",
    ),
    "backbone": SplitPoint(
        "backbone",
        (84, 99, 114),
        ((536, 19, 34), (536, 38, 68), (536, 76, 136)),
        536,
        "inputs of the three prediction (YOLO) layers: 24 detection + 512 embedding channels",
    ),
}

SPLIT_NAMES = tuple(SPLITS)
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}  # as signalled in the bitstream


class SplitError(FcmError, ValueError):
    """An unknown split name."""


def get_split(name: str | SplitPoint) -> SplitPoint:
    """Look a split point up by name (case-insensitive)."""
    if isinstance(name, SplitPoint):
        return name
    key = str(name).strip().lower()
    if key not in SPLITS:
        raise SplitError(f"unknown split '{name}' (choose from {', '.join(SPLIT_NAMES)})")
    return SPLITS[key]
