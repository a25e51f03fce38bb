"""What both stream versions share: the stream parameters (:class:`StreamHeader`), their checks
(:func:`validate`) and :class:`BitstreamError`.

Version 2 (``coding.bitstream``: one header, then the payload) and version 3 (``coding.segments``:
units in segments) write the same parameters in two ways; they live here, below both, so that
``bitstream`` can read a version-3 file through ``segments`` without ``segments`` importing it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from fcm_common.coding.codecs import CODECS
from fcm_common.coding.identifiers import ID_BYTES
from fcm_common.coding.methods import METHODS
from fcm_common.coding.packing import FrameLayout
from fcm_common.core.errors import FcmError
from fcm_common.model.splits import SPLITS

VERSION = 2  # 2: the reconstruction hash also covers the header fields
GOPS = ("ld", "ra", "ll")  # "ll" (code 2) only in version-3 streams
SAMPLE_FORMATS = {10: "10-bit integer", 32: "float32"}
FLOAT32_MAX = float(np.finfo(np.float32).max)


class BitstreamError(FcmError, ValueError):
    """A bitstream that is truncated, corrupted or inconsistent."""


@dataclass
class StreamHeader:
    method: str
    split: str
    codec: str
    sample_bits: int  # 10 (VVC-coded levels) or 32 (float32 samples, lossless codec only)
    qp: int
    gop: str
    intra_period: int
    orig_width: int
    orig_height: int
    input_width: int
    input_height: int
    num_frames: int
    fps: Fraction
    coded_width: int  # frame size given to the inner codec (layout padded to multiples of 8)
    coded_height: int
    fused_channels: tuple[int, ...]  # channels of each tensor before truncation (C)
    layout: FrameLayout  # tile grids; grid.channels = coded channels (k)
    ranges: list[tuple[float, float]]  # one (lo, hi), or one per frame
    fill_level: int  # sample value of padding (unused tiles, frame padding)
    jde_id: bytes
    model_id: bytes = bytes(ID_BYTES)
    recon_hash: bytes = bytes(ID_BYTES)
    per_frame_range: bool = False
    chunked: bool = False
    payload_length: int = 0
    header_size: int = field(default=0, compare=False)
    version: int = field(default=VERSION, compare=False)  # 3: a segmented stream (coding.segments)

    def range_of(self, frame_index: int) -> tuple[float, float]:
        return self.ranges[frame_index] if self.per_frame_range else self.ranges[0]

    @property
    def coded_channels(self) -> list[int]:
        """k of each tensor, in split order."""
        out = [0] * len(self.layout.grids)
        for grid, index in zip(self.layout.grids, self.layout.source_index):
            out[index] = grid.channels
        return out


# ------------------------------------------------------------------------------- field codes
def name_from_table(table, code: int, what: str) -> str:
    if not 0 <= code < len(table):
        raise BitstreamError(f"invalid {what} code {code} in the header")
    return table[code]


def name_from_registry(registry, code: int, what: str) -> str:
    cls = registry.by_code(code)
    if cls is None:
        raise BitstreamError(f"invalid {what} code {code} in the header")
    return cls.name


def validate(h: StreamHeader) -> None:
    """Check the header's fields against each other and against the split's geometry."""
    if h.method not in METHODS:
        raise BitstreamError(f"invalid method '{h.method}'")
    if h.codec not in CODECS:
        raise BitstreamError(f"invalid codec '{h.codec}'")
    if h.split not in SPLITS:
        raise BitstreamError(f"invalid split '{h.split}'")
    method, split = METHODS[h.method], SPLITS[h.split]
    if h.sample_bits not in SAMPLE_FORMATS:
        raise BitstreamError(f"invalid sample format: {h.sample_bits} bits")
    if h.sample_bits == 32 and not CODECS[h.codec].float_samples:
        raise BitstreamError("float32 samples can only be carried by the lossless codec")
    if h.num_frames < 1:
        raise BitstreamError("the header says the stream has no frames")
    if h.intra_period < 1:
        raise BitstreamError(f"invalid intra period {h.intra_period}")
    if min(h.orig_width, h.orig_height) < 1:
        raise BitstreamError(f"invalid original frame size {h.orig_width}x{h.orig_height}")
    if h.input_width % 32 or h.input_height % 32 or min(h.input_width, h.input_height) < 32:
        raise BitstreamError(f"invalid network input size {h.input_width}x{h.input_height}")
    if not 0 < h.fps <= 1000:
        raise BitstreamError(f"invalid frame rate {float(h.fps)}")
    if not -12 <= h.qp <= 63:
        raise BitstreamError(f"invalid QP {h.qp}")

    expected = method.stream_grid_choices(split, h.input_width, h.input_height)
    if len(h.layout.grids) != len(expected):
        raise BitstreamError(f"{h.method}/{h.split} carries {len(expected)} tensors, the header lists {len(h.layout.grids)}")
    for grid, index in zip(h.layout.grids, h.layout.source_index):
        c = h.fused_channels[index]
        if c < 1 or (grid.height, grid.width) not in expected[index]:
            grids = " or ".join(f"{hh}x{ww}" for hh, ww in expected[index])
            raise BitstreamError(
                f"tensor {index} is {c}x{grid.height}x{grid.width} in the header, "
                f"{h.method}/{h.split} at {h.input_width}x{h.input_height} has {grids} grids"
            )
        if not 1 <= grid.channels <= c:
            raise BitstreamError(f"tensor {index}: {grid.channels} coded channels, expected 1..{c}")
        if method.codes_all_channels and grid.channels != c:
            raise BitstreamError(f"tensor {index}: the {h.method} codes all {c} channels, the header says {grid.channels}")
    # sub-frames stacked without overlap, inside the coded frame
    top = 0
    for grid in sorted(h.layout.grids, key=lambda g: g.top):
        if grid.top != top:
            raise BitstreamError(f"tile layout: a sub-frame starts at row {grid.top}, expected {top}")
        top += grid.frame_height
    lw, lh = h.layout.width, h.layout.height
    if h.coded_width % 8 or h.coded_height % 8 or not (lw <= h.coded_width < lw + 8 and lh <= h.coded_height < lh + 8):
        raise BitstreamError(
            f"coded frame size {h.coded_width}x{h.coded_height} does not fit the {lw}x{lh} layout padded to multiples of 8"
        )
    max_level = (1 << h.sample_bits) - 1 if h.sample_bits <= 16 else None
    if max_level is not None and not 0 <= h.fill_level <= max_level:
        raise BitstreamError(f"fill level {h.fill_level} is not a {h.sample_bits}-bit sample")
    expected_ranges = h.num_frames if h.per_frame_range else 1
    if len(h.ranges) != expected_ranges:
        raise BitstreamError(f"{len(h.ranges)} quantisation ranges, expected {expected_ranges}")
    if h.sample_bits == 32 and h.per_frame_range:
        raise BitstreamError("float32 samples are not quantised: per-frame ranges make no sense")
    for i, (lo, hi) in enumerate(h.ranges):
        # the decoder computes in float32: the width hi - lo must be a float32 number too
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo and hi - lo <= FLOAT32_MAX):
            raise BitstreamError(f"quantisation range {i} [{lo}, {hi}] is empty or not finite")
    for name, value in (("JDE weights identifier", h.jde_id), ("model identifier", h.model_id), ("reconstruction hash", h.recon_hash)):
        if len(value) != ID_BYTES:
            raise BitstreamError(f"the {name} must be {ID_BYTES} bytes")
    if not method.learned and any(h.model_id):
        raise BitstreamError(f"an {h.method} stream has no learned model, but the header names one")
    if method.learned and not any(h.model_id):
        raise BitstreamError(f"an {h.method} stream must name its model")
