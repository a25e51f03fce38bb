"""Min-max quantisation of features to 10-bit samples, as the MPEG framework does it.

``q = floor(clamp((x - lo) / (hi - lo), 0, 1) * 1023)`` and back ``x = q / 1023 * (hi - lo) + lo``
(floor, not round: a systematic -1/2 step bias that the anchor has and that we keep), computed in
float32 on the tensor's device.

The anchor's range is either the framework's fixed dataset range (TVD, HiEve), one range measured
over the whole sequence (two passes of NN part 1), a range per frame (8 bytes per frame in the
bitstream, as early FCM test models did), or one given by the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fcm_common.core.errors import FcmError

BIT_DEPTH = 10
MAX_LEVEL = (1 << BIT_DEPTH) - 1

# The MPEG framework's fixed ranges (CompressAI-Vision MIN_MAX_DATASET).
DATASET_RANGES = {
    "tvd": (-4.722218990325928, 48.58344268798828),
    "hieve": (-1.0795, 11.8232),
}
RANGE_MODES = ("tvd", "hieve", "sequence", "frame")


class QuantizationError(FcmError, ValueError):
    """An unusable quantisation range."""


@dataclass(frozen=True)
class RangeSpec:
    """How the encoder chooses the quantisation range: a mode, or fixed numbers."""

    mode: str  # "fixed", "sequence" or "frame"
    lo: float = 0.0
    hi: float = 0.0
    label: str = ""

    @classmethod
    def parse(cls, text: str) -> RangeSpec:
        """``tvd`` | ``hieve`` | ``sequence`` | ``frame`` | ``LO,HI``."""
        key = text.strip().lower()
        if key in DATASET_RANGES:
            lo, hi = DATASET_RANGES[key]
            return cls("fixed", lo, hi, key)
        if key in ("sequence", "frame"):
            return cls(key, label=key)
        try:
            lo, hi = (float(v) for v in key.split(","))
        except ValueError:
            raise QuantizationError(
                f"invalid range '{text}' (use {', '.join(RANGE_MODES)} or LO,HI)"
            ) from None
        check_range(lo, hi)
        return cls("fixed", lo, hi, f"{lo:g},{hi:g}")


def check_range(lo: float, hi: float) -> None:
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise QuantizationError(f"quantisation range [{lo}, {hi}] is empty or not finite")


def float32_range(lo: float, hi: float) -> tuple[float, float]:
    """The range as float32 numbers (what the bitstream stores), widened if it became empty."""
    lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
    if hi32 <= lo32:  # a constant tensor: any non-empty range represents it
        hi32 = float(np.nextafter(np.float32(lo32), np.float32(np.inf)))
    return lo32, hi32


def value_range(tensors) -> tuple[float, float]:
    """Smallest and largest value over a list of tensors."""
    return min(float(t.min()) for t in tensors), max(float(t.max()) for t in tensors)


def quantize(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """float tensor -> int32 tensor of levels 0..1023 (same device)."""
    check_range(lo, hi)
    out = ((x.float() - lo) / (hi - lo)).clamp_(0, 1)
    return (out * MAX_LEVEL).floor_().to(torch.int32)


def dequantize(q: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """levels -> float32 tensor."""
    out = q.float() / MAX_LEVEL
    return out * (hi - lo) + lo


def zero_level(lo: float, hi: float) -> int:
    """The level closest to 0.0 (what a zero feature becomes), used for padding tiles."""
    return int(min(max(round(-lo / (hi - lo) * MAX_LEVEL), 0), MAX_LEVEL))
