"""Bjontegaard delta rate of a test rate-accuracy curve against an anchor curve.

log10(rate) is interpolated as a function of the accuracy (MOTA) for each curve and integrated
over the accuracy interval both curves cover; the average difference d of the two integrals gives
``BD-rate = 10**d - 1`` (negative: the test needs less rate for the same accuracy).

Interpolation: piecewise cubic Hermite (PCHIP, scipy), the JVET/MPEG reporting practice; or the
VCEG-M33 cubic polynomial fitted through the points (``method="cubic"``, at least 4 points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from fcm_common.core.errors import FcmError

METHODS = ("pchip", "cubic")


class BDRateError(FcmError, ValueError):
    """Curves that cannot be compared."""


def _curve(rates: Sequence[float], accuracies: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(rates, dtype=float)
    acc = np.asarray(accuracies, dtype=float)
    if rates.shape != acc.shape or rates.ndim != 1:
        raise BDRateError(f"{what}: rates and accuracies must be lists of the same length")
    if len(rates) < 2:
        raise BDRateError(f"{what}: at least 2 rate points are needed, got {len(rates)}")
    if not np.all(np.isfinite(rates)) or not np.all(np.isfinite(acc)) or np.any(rates <= 0):
        raise BDRateError(f"{what}: rates must be positive and accuracies finite")
    order = np.argsort(acc, kind="stable")
    acc, log_rate = acc[order], np.log10(rates[order])
    if np.any(np.diff(acc) <= 0):
        raise BDRateError(f"{what}: two rate points have the same accuracy ({what} curve is flat)")
    return acc, log_rate


def efficient_points(rates: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the rate points on the efficient curve: by increasing rate, each one more accurate
    than every cheaper point. A point that costs more without being more accurate (two QPs at the
    same MOTA, as near-lossless anchor points often are) is dominated and makes the curve flat,
    which BD-rate cannot integrate; reports drop such points and say which."""
    order = sorted(range(len(rates)), key=lambda i: (rates[i], -accuracies[i]))
    kept: list[int] = []
    for i in order:
        if not kept or accuracies[i] > accuracies[kept[-1]]:
            kept.append(i)
    return sorted(kept)


@dataclass(frozen=True)
class BDRate:
    """A BD-rate (fraction: -0.5 = half the rate at equal accuracy) and the accuracy range it was
    integrated over (the overlap of the two curves): a BD-rate means little without it."""

    value: float
    lo: float
    hi: float

    def describe(self, mota_scale: float = 100) -> str:
        """``-42.6% over MOTA 29.4..81.5%``; ``mota_scale``: 100 for MOTA given as a fraction, 1 for percent."""
        return f"{100 * self.value:+.1f}% over MOTA {mota_scale * self.lo:.1f}..{mota_scale * self.hi:.1f}%"


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_acc: Sequence[float],
    test_rates: Sequence[float],
    test_acc: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-rate as a fraction (-0.5 = half the rate at equal accuracy)."""
    return bd_rate_range(anchor_rates, anchor_acc, test_rates, test_acc, method).value


def bd_rate_range(
    anchor_rates: Sequence[float],
    anchor_acc: Sequence[float],
    test_rates: Sequence[float],
    test_acc: Sequence[float],
    method: str = "pchip",
) -> BDRate:
    """BD-rate and the accuracy range it covers."""
    if method not in METHODS:
        raise BDRateError(f"unknown interpolation '{method}' (choose from {', '.join(METHODS)})")
    xa, ya = _curve(anchor_rates, anchor_acc, "anchor")
    xt, yt = _curve(test_rates, test_acc, "test")
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if hi <= lo:
        raise BDRateError(
            f"the accuracy ranges do not overlap (anchor {xa[0]:.4g}..{xa[-1]:.4g}, test {xt[0]:.4g}..{xt[-1]:.4g})"
        )
    if method == "pchip":
        area_a = PchipInterpolator(xa, ya).integrate(lo, hi)
        area_t = PchipInterpolator(xt, yt).integrate(lo, hi)
    else:
        if len(xa) < 4 or len(xt) < 4:
            raise BDRateError("the cubic (VCEG-M33) fit needs at least 4 points per curve")
        pa, pt = np.polyint(np.polyfit(xa, ya, 3)), np.polyint(np.polyfit(xt, yt, 3))
        area_a = np.polyval(pa, hi) - np.polyval(pa, lo)
        area_t = np.polyval(pt, hi) - np.polyval(pt, lo)
    return BDRate(float(10 ** ((area_t - area_a) / (hi - lo)) - 1), float(lo), float(hi))


def plot_curves(curves: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], path, title: str = "") -> None:
    """RD curves (accuracy vs kbps, log rate axis): ``{panel: {label: (kbps, accuracy)}}`` -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for ax, (panel, series) in zip(axes.flat, curves.items()):
        for label, (rates, acc) in series.items():
            order = np.argsort(rates)
            ax.plot(np.asarray(rates)[order], np.asarray(acc)[order], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("kbps")
        ax.set_ylabel("MOTA (%)")
        ax.set_title(panel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
