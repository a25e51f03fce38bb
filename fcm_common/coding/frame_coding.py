"""Feature tensors of one picture <-> one frame of samples for the inner codec.

10-bit samples: each tensor is min-max quantised (:mod:`fcm_common.coding.quantization`), tiled
(:mod:`fcm_common.coding.packing`) with unused tiles at the fill level, and the frame is padded right
and bottom to multiples of 8 by repeating its last column/row.
float32 samples (lossless codec only) skip quantisation: the uncompressed reference.

Padding and the MPEG framework. The framework (CompressAI-Vision) writes its packed frames into a
YUV file padded to multiples of 2 with its ``mid_level`` (``readwriteYUV``) and gives VTM the
unpadded size; VTM (``ConformanceWindowMode=1``) pads what it reads to its 8-sample CU grid by
repeating the last column and row, and signals a conformance window. For the ``dn53`` and ``alt1``
anchors no padding ever happens: every dimension of the packed frame is a multiple of 8 for any
network input that is a multiple of 32, so the frames handed to VVC are the framework's sample for
sample and the coded size is the layout size (``tests/test_anchor_parity.py``; geometry checked
for every size from 32 to 2048). Frames that are not multiples of 8 (``backbone`` anchors, which the
framework packs only for portrait inputs, and advMSFC) are padded here with VTM's own rule, so VVC
codes the same samples as VTM would from the unpadded frame; only the framework's VTM stream would
signal the crop, ours crops with the layout size from the header. (The framework's 2-alignment never
applies: its frames are even, and on an odd one its YUV file and the size it passes VTM would
disagree.) See ``docs/parity.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fcm_common.coding.packing import FrameLayout, pack, unpack
from fcm_common.coding.quantization import dequantize, quantize


def padded_size(layout: FrameLayout) -> tuple[int, int]:
    """(width, height) of the coded frame: the layout rounded up to multiples of 8."""
    return -(-layout.width // 8) * 8, -(-layout.height // 8) * 8


@dataclass(frozen=True)
class FrameFormat:
    layout: FrameLayout
    coded_width: int
    coded_height: int
    sample_bits: int = 10
    fill_level: int = 0

    @property
    def dtype(self):
        return np.uint16 if self.sample_bits == 10 else np.float32


def tensors_to_frame(tensors: Sequence[torch.Tensor], fmt: FrameFormat, lo: float, hi: float) -> np.ndarray:
    """(k, H, W) tensors of one picture -> a (coded_height, coded_width) frame."""
    if fmt.sample_bits == 10:
        arrays = [quantize(t, lo, hi).cpu().numpy().astype(np.uint16) for t in tensors]
        fill = fmt.fill_level
    else:
        arrays = [t.detach().float().cpu().numpy() for t in tensors]
        fill = 0.0
    frame = pack(arrays, fmt.layout, fill=fill)
    pad_h = fmt.coded_height - frame.shape[0]
    pad_w = fmt.coded_width - frame.shape[1]
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w)), mode="edge")
    return np.ascontiguousarray(frame, dtype=fmt.dtype)


def frame_to_tensors(frame: np.ndarray, fmt: FrameFormat, lo: float, hi: float, device="cpu") -> list[torch.Tensor]:
    """Inverse of :func:`tensors_to_frame`: float32 (k, H, W) tensors on ``device``."""
    cropped = frame[: fmt.layout.height, : fmt.layout.width]
    out = []
    for array in unpack(np.ascontiguousarray(cropped), fmt.layout):
        t = torch.from_numpy(array.astype(np.int32 if fmt.sample_bits == 10 else np.float32)).to(device)
        out.append(dequantize(t, lo, hi) if fmt.sample_bits == 10 else t)
    return out
