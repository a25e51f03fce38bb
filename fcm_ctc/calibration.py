"""QACT calibration: the channel count for each QP, chosen from measured rate-accuracy points.

For every QP and every candidate channel count, the validation sequences are encoded, decoded and
tracked (exactly as fcm-encode / fcm-decode do), giving points (kbps, pooled MOTA). The efficient
frontier is the upper convex hull of the points in the (log10 kbps, MOTA) plane. For each QP the
chosen k is that QP's point on the frontier with the highest MOTA; if none of its points is on the
frontier, the one closest below it. The table is written in ``cfg/qact.toml``'s format, the points
as CSV. Use sequences that are not in your test set.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fcm_common.coding.codecs import InnerCodec
from fcm_common.coding.methods.advmsfc import AdvMSFCMethod
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import FrameSource
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_common.model.splits import SplitPoint
from fcm_common.msfc.qact import QACTTable, write_qact
from fcm_ctc.experiment import code_and_track
from fcm_encoder.encoder import EncodeSettings

Points = dict[tuple[int, int], tuple[float, float]]  # (qp, k) -> (kbps, pooled MOTA)


def upper_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper convex hull (x ascending) of (x, y) points: the efficient rate-accuracy frontier."""
    pts = sorted(set(points))
    hull: list[tuple[float, float]] = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:  # hull[-1] not above the chord
                hull.pop()
            else:
                break
        hull.append(p)
    # keep only the rising part: beyond the best accuracy, more rate is never efficient
    best = max(range(len(hull)), key=lambda i: hull[i][1])
    return hull[: best + 1]


def hull_gap(point: tuple[float, float], hull: list[tuple[float, float]]) -> float:
    """How far (in accuracy) a point lies below the frontier; 0 on it."""
    x, y = point
    if x <= hull[0][0]:
        frontier = hull[0][1]
    elif x >= hull[-1][0]:
        frontier = hull[-1][1]
    else:
        frontier = hull[-1][1]
        for (x1, y1), (x2, y2) in zip(hull, hull[1:]):
            if x1 <= x <= x2:
                frontier = y1 + (y2 - y1) * (x - x1) / (x2 - x1)
                break
    return max(frontier - y, 0.0)


def choose_channels(points: Points, qps: list[int]) -> dict[int, int]:
    """QP -> k from {(qp, k): (kbps, mota)}."""
    xy = {key: (math.log10(max(r, 1e-9)), m) for key, (r, m) in points.items()}
    hull = upper_hull(list(xy.values()))
    choice = {}
    for qp in qps:
        candidates = [(key, v) for key, v in xy.items() if key[0] == qp]
        gaps = [(hull_gap(v, hull), -v[1], key[1]) for key, v in candidates]
        choice[qp] = min(gaps)[2]
    return choice


def require_ground_truth(sources: Sequence[FrameSource]) -> None:
    for s in sources:
        if s.gt_path is None:
            raise FcmError(f"{s.path}: calibration needs ground truth (gt/gt.txt)")


@dataclass
class Calibration:
    points: Points
    choice: dict[int, int]  # QP -> k
    table: QACTTable


def calibrate(
    sources: Sequence[FrameSource], jde, method: AdvMSFCMethod, split: SplitPoint, qps: list[int], ks: list[int],
    codec: InnerCodec, device, eval_mode: str = "auto", on_point: Callable[[], None] | None = None, **encode,
) -> Calibration:
    """Measure every (QP, k) on ``sources`` (with ground truth) and choose k per QP.

    ``encode``: further :class:`EncodeSettings` (intra_period, preset, gop).
    """
    require_ground_truth(sources)
    fused = method.model.fused_channels
    if max(ks) > fused:
        raise FcmError(f"channel counts must not exceed {fused}")
    quant_range = method.range_spec(None, split, split.is_reference(jde.split_shapes(split.name)))
    points: Points = {}
    for qp in qps:
        for k in ks:
            at_k = AdvMSFCMethod(method.checkpoint, k)
            settings = EncodeSettings(split=split, qp=qp, codec=codec, range_spec=quant_range, **encode)
            items, total_bits, total_seconds = [], 0.0, 0.0
            for source in sources:
                result = code_and_track(source, jde, at_k, settings, device)
                items.append(SequenceResult(source.name, source.gt_path, result.rows, source.seqinfo_path, mode=eval_mode))
                total_bits += result.bytes * 8
                total_seconds += result.frames / result.fps
                if on_point:
                    on_point()
            mota = float(evaluate(items).loc["OVERALL", "MOTA"])
            points[(qp, k)] = (total_bits / total_seconds / 1000, mota)
    choice = choose_channels(points, qps)
    return Calibration(points, choice, QACTTable(tuple(qps), tuple(choice[q] for q in qps)))


def write_calibration(output: Path, split: SplitPoint, calibration: Calibration, comment: str) -> Path:
    """The table (``output``, cfg/qact.toml format) and the points (the same name, ``.csv``)."""
    write_qact(output, {split.name: calibration.table}, comment=comment)
    points_path = output.with_suffix(".csv")
    with open(points_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["qp", "channels", "kbps", "mota", "chosen"])
        for (qp, k), (rate, mota) in sorted(calibration.points.items()):
            writer.writerow([qp, k, f"{rate:.4f}", f"{mota:.6f}", int(calibration.choice[qp] == k)])
    return points_path
