"""Anchor frames against recorded frames of the MPEG framework's packing, sample for sample.

``tests/data/anchor_frames_reference.json`` holds what CompressAI-Vision's anchor path
(``FpnUtils.reshape_feature_pyramid_to_frame`` with ``packing_all_in_one=True``,
``min_max_normalization`` at 10 bits and the ``readwriteYUV`` 4:0:0 10-bit writer with its
2-alignment ``mid_level`` padding; only the ``yuvio`` file writer stubbed by a raw little-endian
writer) wrote into the YUV file it hands to VTM, for the feature tensors made by
:func:`split_features` below: per case the frame size it passes to VTM (``-wdt``/``-hgt``), its
``mid_level``, its sub-frame heights and the SHA-256 of the YUV file; and, per dataset range, the
SHA-256 of what its decoder's ``min_max_inv_normalization`` makes of the 1024 levels (float32).
Nothing of the framework's code is in this repository, only these numbers.

The ``backbone`` split, which the framework packs only for portrait inputs (C = 536 = 8 x 67 does
not re-flow otherwise), is included at 320x576: its frames are 756 rows high, which VTM pads to 760
by repeating the last row, as we do.

The features cover the whole quantiser: values below and above the dataset range (clamped),
exact zeros, and values on and next to the level boundaries ``lo + k (hi - lo) / 1023``, where a
different rounding of ``hi - lo`` or of the scaling would move a sample by one level.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fcm_common.coding.frame_coding import FrameFormat, padded_size, tensors_to_frame
from fcm_common.coding.packing import anchor_layout
from fcm_common.coding.quantization import DATASET_RANGES, dequantize, float32_range, zero_level
from fcm_common.model.splits import SPLITS, get_split

REFERENCE = Path(__file__).parent / "data" / "anchor_frames_reference.json"


def split_features(split: str, width: int, height: int, frames: int, seed: int, lo: float, hi: float) -> list[np.ndarray]:
    """Deterministic float32 split tensors ``(frames, C, H, W)`` in split-layer order.

    Only PCG64 uniform draws and IEEE arithmetic: the same values on every machine.
    """
    rng = np.random.default_rng(seed)
    span = hi - lo
    out = []
    for c, h, w in get_split(split).shapes(width, height):
        n = frames * c * h * w
        kind = rng.integers(0, 4, n)
        x = np.empty(n)
        wide = kind == 0  # anywhere, 10 % beyond each end of the range
        x[wide] = lo - 0.1 * span + rng.random(int(wide.sum())) * 1.2 * span
        small = kind == 1  # activations near zero, most of a real tensor
        x[small] = (rng.random(int(small.sum())) - 0.3) * 0.05 * span
        x[kind == 2] = 0.0
        edge = kind == 3  # on a level boundary, or one float32 step beside it
        levels = rng.integers(0, 1024, int(edge.sum()))
        x[edge] = lo + levels * (span / 1023)
        x = x.astype(np.float32)
        nudge = rng.integers(-1, 2, n).astype(np.float32)
        x[edge] = np.nextafter(x[edge], x[edge] + nudge[edge])
        out.append(x.reshape(frames, c, h, w))
    return out


def our_frames(features: list[np.ndarray], split: str, width: int, height: int, lo: float, hi: float) -> tuple[list[np.ndarray], dict]:
    """The frames our encoder hands the inner codec for these features (the encoder's own set-up)."""
    shapes = get_split(split).shapes(width, height)
    layout = anchor_layout(shapes)
    coded_width, coded_height = padded_size(layout)
    lo32, hi32 = float32_range(lo, hi)
    fmt = FrameFormat(layout, coded_width, coded_height, 10, zero_level(lo32, hi32))
    frames = [
        tensors_to_frame([torch.from_numpy(t[f]) for t in features], fmt, lo32, hi32)
        for f in range(features[0].shape[0])
    ]
    info = {
        "size": [coded_width, coded_height],
        "layout": [layout.width, layout.height],
        "fill": fmt.fill_level,
        "subframe_heights": [g.frame_height for g in layout.grids],
    }
    return frames, info


def vtm_padded(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """What VTM (``ConformanceWindowMode=1``) codes from a smaller frame: the last column, then the
    last row, repeated up to ``width`` x ``height``."""
    return np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1])), mode="edge")


def _reference() -> dict:
    # read at collection: a missing or unreadable file is a collection error, not zero tests that pass
    return json.loads(REFERENCE.read_text())


def _cases() -> dict:
    return _reference()["cases"]


def our_dequantised(name: str) -> bytes:
    """Our decoder's values of the 1024 levels, with the range as the bitstream carries it."""
    levels = torch.arange(1024, dtype=torch.int32)
    return dequantize(levels, *float32_range(*DATASET_RANGES[name])).numpy().astype("<f4").tobytes()


@pytest.mark.parametrize("name", sorted(_cases()))
def test_anchor_frames_equal_the_framework_packing(name):
    case = _cases()[name]
    gen = case["generator"]
    lo, hi = DATASET_RANGES[gen["range"]]
    features = split_features(gen["split"], gen["width"], gen["height"], gen["frames"], gen["seed"], lo, hi)
    frames, info = our_frames(features, gen["split"], gen["width"], gen["height"], lo, hi)
    ref = case["framework"]
    w, h = ref["vtm_size"]  # the framework's frame, and the size it gives VTM
    assert info["layout"] == [w, h]
    assert info["subframe_heights"] == ref["subframe_heights"]
    assert info["fill"] == ref["mid_level"]
    # our coded size is the framework's frame rounded up to VTM's 8-sample CU grid; for the
    # framework's dn53/alt1 anchors that is the frame itself (no padding on either side)
    assert info["size"] == [-(-w // 8) * 8, -(-h // 8) * 8]
    if gen["split"] in ("dn53", "alt1"):
        assert info["size"] == [w, h]
    data = b"".join(np.ascontiguousarray(f[:h, :w], "<u2").tobytes() for f in frames)
    assert len(data) == ref["yuv_bytes"]
    assert hashlib.sha256(data).hexdigest() == ref["yuv_sha256"]
    for f in frames:  # and the padding is VTM's own
        assert np.array_equal(f, vtm_padded(f[:h, :w], *info["size"]))


@pytest.mark.parametrize("name", sorted(_reference()["dequantised"]))
def test_dequantised_levels_equal_the_frameworks(name):
    assert hashlib.sha256(our_dequantised(name)).hexdigest() == _reference()["dequantised"][name]


def test_the_recording_covers_every_split_and_dataset_range():
    """The parametrised tests above are as strong as the recording: every split, both dataset
    ranges, the framework's three network inputs and a portrait one."""
    cases = [case["generator"] for case in _cases().values()]
    assert {c["split"] for c in cases} == set(SPLITS)
    assert {c["range"] for c in cases} == set(_reference()["dequantised"]) == {"tvd", "hieve"}
    assert {(c["width"], c["height"]) for c in cases} >= {(1088, 608), (864, 480), (576, 320), (320, 576)}
