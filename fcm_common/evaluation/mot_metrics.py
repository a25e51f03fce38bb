"""MOT evaluation with motmetrics, the way the MPEG FCM framework does it.

- Ground truth is read in motmetrics' ``mot15-2D`` convention, which shifts x and y by -1 (MATLAB
  one-based pixels); predictions are not shifted. A match needs IoU >= 0.5.
- ``tvd`` mode (``CLEAR_MOT_M``): predictions matched to distractor ground truth (classes 2, 7, 8,
  12, or visibility < 0) are dropped first; ground truth with confidence >= 0.99 and class 1 is
  scored. Needs the sequence's ``seqinfo.ini`` (for its length); one is synthesised from the
  frame numbers when the sequence has none.
- ``hieve`` mode (``compare_to_groundtruth``): ground truth with confidence >= 1, no class filter.
- Several sequences are *pooled*: one accumulator per sequence, summed into an OVERALL row, so a
  class's MOTA is 1 - sum(FN + FP + IDs) / sum(GT), not a mean of per-sequence MOTAs.

The assignment solver is pinned to scipy's (motmetrics otherwise picks whichever solver happens to
be installed; optimal costs agree, tie-breaking may not).

motmetrics 1.4.0 calls ``np.asfarray``, which NumPy 2 removed; importing this module restores it
as ``np.asarray(a, dtype)`` when missing.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fcm_common.core.errors import FcmError

if not hasattr(np, "asfarray"):  # NumPy >= 2: motmetrics 1.4.0 still calls it

    def _asfarray(a, dtype=np.float64):
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.inexact):
            dtype = np.dtype(np.float64)
        return np.asarray(a, dtype=dtype)

    np.asfarray = _asfarray

import motmetrics as mm  # noqa: E402  (after the NumPy shim)

from fcm_common.data.mot_format import MotRow  # noqa: E402

EVAL_MODES = ("tvd", "hieve")
IOU_THRESHOLD = 0.5
SOLVER = "scipy"

# Columns of the result tables: motmetrics name -> printed name.
REPORTED = {
    "mota": "MOTA",
    "idf1": "IDF1",
    "motp": "MOTP",
    "num_switches": "IDs",
    "num_false_positives": "FP",
    "num_misses": "FN",
    "num_objects": "GT",
    "recall": "Rcll",
    "precision": "Prcn",
    "mostly_tracked": "MT",
    "mostly_lost": "ML",
}


class EvaluationError(FcmError, ValueError):
    """Ground truth or an evaluation setting that cannot be used."""


def load_ground_truth(path: str | Path, mode: str = "tvd") -> pd.DataFrame:
    """Ground truth as a motmetrics frame (mot15-2D: x, y shifted by -1)."""
    _check_mode(mode)
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"ground truth not found: {path}")
    try:
        with warnings.catch_warnings():
            # motmetrics 1.4.0 shifts with a tuple, which pandas 3 warns about (still correct)
            warnings.filterwarnings("ignore", message="Operation with tuple is deprecated")
            return mm.io.loadtxt(str(path), fmt="mot15-2D", min_confidence=1 if mode == "hieve" else -1)
    except (ValueError, pd.errors.ParserError, IndexError) as exc:
        raise EvaluationError(f"{path}: not a MOTChallenge ground-truth file ({exc})") from None


def predictions_frame(rows: Sequence[MotRow]) -> pd.DataFrame:
    """Tracker output as a motmetrics frame (unshifted; confidence 1 as the framework sets it)."""
    index = pd.MultiIndex.from_arrays(
        [[r.frame for r in rows], [r.track_id for r in rows]], names=["FrameId", "Id"]
    )
    return pd.DataFrame(
        {
            "X": [r.x for r in rows],
            "Y": [r.y for r in rows],
            "Width": [r.w for r in rows],
            "Height": [r.h for r in rows],
            "Confidence": [1.0] * len(rows),
            "ClassId": [-1] * len(rows),
            "Visibility": [-1.0] * len(rows),
        },
        index=index,
        dtype=float,
    )


def _check_mode(mode: str) -> None:
    if mode not in EVAL_MODES:
        raise EvaluationError(f"unknown evaluation mode '{mode}' (choose from {', '.join(EVAL_MODES)})")


def accumulate(
    gt_path: str | Path,
    rows: Sequence[MotRow],
    mode: str = "tvd",
    seqinfo: str | Path | None = None,
    max_frame: int | None = None,
) -> mm.MOTAccumulator:
    """Per-frame matching events of one sequence (``max_frame``: only its first frames were coded)."""
    gt = load_ground_truth(gt_path, mode)
    if max_frame is not None:
        gt = gt[gt.index.get_level_values(0) <= max_frame]
        rows = [r for r in rows if r.frame <= max_frame]
    pred = predictions_frame(rows)
    with mm.lap.set_default_solver(SOLVER):
        if mode == "hieve":
            return mm.utils.compare_to_groundtruth(gt, pred, "iou", distth=IOU_THRESHOLD)
        if seqinfo is not None and Path(seqinfo).is_file() and max_frame is None:
            acc, _ = mm.utils.CLEAR_MOT_M(gt, pred, str(seqinfo), "iou", distth=IOU_THRESHOLD)
            return acc
        frames = [int(f) for f in gt.index.get_level_values(0)] + [r.frame for r in rows]
        length = max_frame if max_frame is not None else max(frames, default=1)
        with tempfile.TemporaryDirectory() as tmp:
            ini = Path(tmp) / "seqinfo.ini"
            ini.write_text(f"[Sequence]\nseqLength={length}\n")
            acc, _ = mm.utils.CLEAR_MOT_M(gt, pred, str(ini), "iou", distth=IOU_THRESHOLD)
        return acc


def summarize(accumulators: Sequence[mm.MOTAccumulator], names: Sequence[str]) -> pd.DataFrame:
    """Metrics per sequence plus a pooled OVERALL row, with the columns of :data:`REPORTED`."""
    if not accumulators:
        raise EvaluationError("nothing to evaluate")
    mh = mm.metrics.create()
    summary = mh.compute_many(
        list(accumulators),
        metrics=list(REPORTED),
        names=list(names),
        generate_overall=len(accumulators) > 1,
    )
    if len(accumulators) == 1:
        overall = summary.iloc[[0]].copy()
        overall.index = ["OVERALL"]
        summary = pd.concat([summary, overall])
    return summary.rename(columns=REPORTED)
