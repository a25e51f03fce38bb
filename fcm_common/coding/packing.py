"""Channel-wise packing of feature tensors into one monochrome frame per picture.

A tensor C x H x W becomes a grid of ``rows x cols`` tiles of H x W, channel c at tile row
``c // cols`` and tile column ``c % cols`` (raster order, no gaps). Several tensors become
sub-frames stacked vertically.

The MPEG feature anchor's layout (:func:`anchor_layout`), as the MPEG framework computes it:
tensors largest first; each on a near-square grid whose short side is the largest divisor of C not
above sqrt(C) (the short side runs along the tile's long side); the smaller tensors re-flowed to
the width of the largest. JDE at 1088x608 gives 2176x2128 frames for ``dn53`` and 1088x2128 for
``alt1``, the same frames as the framework's at every input size (``tests/test_anchor_parity.py``).
For ``backbone`` (C = 536 = 8 x 67) the framework's re-flow is exact only for portrait inputs, where
ours is the same; for landscape ones its tiling fails, and here the smaller tensors get a partial
last tile row instead: 1088x6707 frames at 1088x608.

A single tensor (advMSFC) uses :func:`single_tensor_layout`: the same near-square rule, or, when
that grid is too elongated (C = 536 gives 8 x 67 tiles), a padded grid of ceil(sqrt(C)) columns
whose unused tiles hold a constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fcm_common.core.errors import FcmError

MAX_ASPECT = 2.0  # widest (or tallest) single-tensor frame before the padded grid is used


class PackingError(FcmError, ValueError):
    """Tensors that do not fit a layout."""


@dataclass(frozen=True)
class TileGrid:
    """Where one tensor goes: its shape, its tile grid, and its sub-frame's top row."""

    channels: int
    height: int
    width: int
    rows: int
    cols: int
    top: int = 0

    @property
    def frame_height(self) -> int:
        return self.rows * self.height

    @property
    def frame_width(self) -> int:
        return self.cols * self.width

    def __post_init__(self) -> None:
        if self.rows * self.cols < self.channels:
            raise PackingError(f"a {self.rows}x{self.cols} tile grid cannot hold {self.channels} channels")


@dataclass(frozen=True)
class FrameLayout:
    """Sub-frames stacked top to bottom. ``source_index[i]`` is the position, in the caller's tensor
    list, of the tensor in ``grids[i]``."""

    grids: tuple[TileGrid, ...]
    source_index: tuple[int, ...]

    @property
    def width(self) -> int:
        return max(g.frame_width for g in self.grids)

    @property
    def height(self) -> int:
        return sum(g.frame_height for g in self.grids)


def near_square_grid(channels: int, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the MPEG framework's near-square tiling of C tiles of H x W."""
    short = max(int(math.isqrt(channels)), 1)
    while channels % short:
        short -= 1
    long = channels // short
    if height > width:
        return short, long
    return long, short


def anchor_layout(shapes: Sequence[tuple[int, int, int]]) -> FrameLayout:
    """The MPEG feature anchor's frame layout for tensors of (C, H, W) ``shapes``."""
    order = sorted(range(len(shapes)), key=lambda i: -math.prod(shapes[i]))  # stable: ties keep order
    grids = []
    fixed_width = None
    top = 0
    for i in order:
        c, h, w = shapes[i]
        rows, cols = near_square_grid(c, h, w)
        if fixed_width is None:
            fixed_width = cols * w
        else:
            # Re-flow to the fixed width. Where the framework's rescaling divides exactly this is the
            # same grid; otherwise (the backbone split, C = 536 = 8 x 67) the last row is partial.
            if fixed_width % w:
                raise PackingError(f"a {c}x{h}x{w} tensor cannot be re-flowed to a width of {fixed_width}")
            cols = fixed_width // w
            rows = -(-c // cols)
        grid = TileGrid(c, h, w, rows, cols, top)
        grids.append(grid)
        top += grid.frame_height
    return FrameLayout(tuple(grids), tuple(order))


def single_tensor_layout(channels: int, height: int, width: int) -> FrameLayout:
    """Layout of one tensor: near-square tiling, or a padded grid if that is too elongated."""
    rows, cols = near_square_grid(channels, height, width)
    aspect = (cols * width) / (rows * height)
    if not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
        cols = math.ceil(math.sqrt(channels))
        rows = math.ceil(channels / cols)
    return FrameLayout((TileGrid(channels, height, width, rows, cols, 0),), (0,))


def pack(tensors: Sequence[np.ndarray], layout: FrameLayout, fill: int | float = 0) -> np.ndarray:
    """(C, H, W) arrays (in the caller's order) -> one 2-D frame; unused tiles get ``fill``."""
    if len(tensors) != len(layout.grids):
        raise PackingError(f"layout has {len(layout.grids)} tensors, got {len(tensors)}")
    dtype = np.result_type(*[t.dtype for t in tensors])
    frame = np.full((layout.height, layout.width), fill, dtype=dtype)
    for grid, index in zip(layout.grids, layout.source_index):
        t = tensors[index]
        if t.shape != (grid.channels, grid.height, grid.width):
            raise PackingError(f"tensor {index} has shape {t.shape}, layout expects {(grid.channels, grid.height, grid.width)}")
        full = t
        spare = grid.rows * grid.cols - grid.channels
        if spare:
            full = np.concatenate([t, np.full((spare, grid.height, grid.width), fill, dtype=t.dtype)])
        tiles = full.reshape(grid.rows, grid.cols, grid.height, grid.width).swapaxes(1, 2)
        frame[grid.top : grid.top + grid.frame_height, : grid.frame_width] = tiles.reshape(
            grid.frame_height, grid.frame_width
        )
    return frame


def unpack(frame: np.ndarray, layout: FrameLayout) -> list[np.ndarray]:
    """Inverse of :func:`pack`: the (C, H, W) arrays in the caller's order."""
    if frame.shape != (layout.height, layout.width):
        raise PackingError(f"frame is {frame.shape}, layout expects {(layout.height, layout.width)}")
    out: list[np.ndarray | None] = [None] * len(layout.grids)
    for grid, index in zip(layout.grids, layout.source_index):
        block = frame[grid.top : grid.top + grid.frame_height, : grid.frame_width]
        tiles = block.reshape(grid.rows, grid.height, grid.cols, grid.width).swapaxes(1, 2)
        out[index] = tiles.reshape(grid.rows * grid.cols, grid.height, grid.width)[: grid.channels].copy()
    return out  # type: ignore[return-value]
