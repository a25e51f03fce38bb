"""Feature tensors of one picture <-> one frame of samples for the inner codec.

10-bit samples: each tensor is min-max quantised (:mod:`fcm_common.coding.quantization`), tiled
(:mod:`fcm_common.coding.packing`) with unused tiles at the fill level, and the frame is padded right
and bottom to multiples of 8 by repeating its last column/row (cheaper to code than a step).
float32 samples (lossless codec only) skip quantisation: the uncompressed reference.
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
