"""MOT evaluation with motmetrics: the MPEG FCM framework's rules and the MOTChallenge devkit's.

Coordinates: ground truth is read 1-based (MOTChallenge/MATLAB pixels) and shifted by -1, as
motmetrics' ``mot15-2D`` reader does; tracks (:class:`~fcm_common.data.mot_format.MotRow`) are
0-based (tracks files are converted when read). A match needs IoU >= 0.5.

Modes (``auto`` picks one from the ground truth, see :func:`detect_mode`):

- ``mot``: the MOTChallenge devkit. Ground truth with flag (consider) 0 is not scored. In the
  MOT16/17/20 layout only pedestrians (class 1) are scored, and predictions matched (IoU >= 0.5,
  one-to-one over all boxes of the frame) to a distractor (person on vehicle, static person,
  distractor, reflection, and for MOT20 sequences non-motorised vehicle) or to a box of negative
  visibility are removed first: they are neither true nor false positives. 2DMOT2015 sequences
  have no classes: every flag-1 row counts and nothing is removed (predictions on flag-0 people
  are false positives, as in the devkit). Predictions after the last scored ground-truth frame
  are dropped. Frames are then matched as the devkit matches them (:mod:`.devkit`: pairs kept from
  the previous frame only, its min-cost matching and tie-breaker, a switch only for an object
  present in the previous frame).
- ``tvd``: the framework's TVD evaluator (motmetrics ``CLEAR_MOT_M``): the same distractor
  removal over frames 1..seqLength, ground truth with confidence >= 0.99 and class 1. Needs the
  class column (MOT16 layout).
- ``hieve``: the framework's HiEve evaluator (motmetrics ``compare_to_groundtruth``): ground truth
  with confidence >= 1, no class filter, no removal.

Assignment solvers, as the framework sets them (they matter on exact cost ties only): ``lap``
(lapjv) for TVD, ``munkres`` for HiEve sequences, ``lap`` for pooled TVD and HiEve rows (the
framework's class MOTA script rebuilds the accumulators with motmetrics' default solver, ``lap``
where it is installed). ``mot`` matches frames with the devkit's own algorithm; its distractor
removal and identity (IDF1) assignments use scipy, with boxes ordered by id.

Several sequences are *pooled*: one accumulator per sequence, summed into an OVERALL row, so a
class's MOTA is 1 - sum(FN + FP + IDs) / sum(GT), not a mean of per-sequence MOTAs.

motmetrics 1.4.0 calls ``np.asfarray``, which NumPy 2 removed; importing this module restores it
as ``np.asarray(a, dtype)`` when missing.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
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

from fcm_common.data.ground_truth import (  # noqa: E402
    PEDESTRIAN,
    GroundTruth,
    GroundTruthError,
    read_ground_truth,
)
from fcm_common.data.mot_format import MotRow  # noqa: E402
from fcm_common.data.sources import SourceError, seqinfo_length  # noqa: E402
from fcm_common.evaluation.devkit import clear_mot_events  # noqa: E402

EVAL_MODES = ("mot", "tvd", "hieve")
MODE_CHOICES = ("auto", *EVAL_MODES)
IOU_THRESHOLD = 0.5
SOLVERS = {"mot": "scipy", "tvd": "lap", "hieve": "munkres"}  # per sequence
POOLED_SOLVERS = {"mot": "scipy", "tvd": "lap", "hieve": "lap"}  # pooled rows (framework: class MOTA script)
POOLED_SOLVER = "lap"
DISTRACTORS = frozenset({2, 7, 8, 12})  # person_on_vehicle, static_person, distractor, reflection
DISTRACTORS_MOT20 = DISTRACTORS | {6}  # + non_mot_vehicle

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


def _check_mode(mode: str, choices=MODE_CHOICES) -> None:
    if mode not in choices:
        raise EvaluationError(f"unknown evaluation mode '{mode}' (choose from {', '.join(choices)})")


def detect_mode(gt_path: str | Path) -> str:
    """The rules a ground-truth file is scored with when none are asked for.

    TVD sequences (a folder named ``TVD-*`` or ``tvd_tracking``) keep the framework's TVD rules,
    HiEve sequences (a folder whose name contains ``hieve``) the framework's HiEve rules, for
    parity with MPEG's numbers; every other sequence is scored as the MOTChallenge devkit scores it.
    The three folders above the file are looked at (``<dataset>/<sequence>/gt/gt.txt``).
    """
    parts = [p.lower() for p in Path(gt_path).resolve().parts[:-1][-3:]]
    if any(re.fullmatch(r"tvd[-_].*", p) for p in parts):
        return "tvd"
    if any("hieve" in p for p in parts):
        return "hieve"
    return "mot"


@dataclass
class Target:
    """Validated ground truth of one sequence and the rules it is scored with."""

    gt: GroundTruth
    mode: str
    seq_length: int | None = None  # from seqinfo.ini (tvd rules)

    @property
    def path(self) -> Path:
        return self.gt.path


def prepare(
    gt: str | Path | GroundTruth | Target,
    mode: str = "auto",
    seqinfo: str | Path | None = None,
    layout: str = "auto",
) -> Target:
    """Read and validate ground truth (and ``seqinfo.ini``) and settle the mode, before any tracking."""
    if isinstance(gt, Target):
        return gt
    _check_mode(mode)
    if not isinstance(gt, GroundTruth):
        gt = read_ground_truth(gt, layout)
    if mode == "auto":
        mode = detect_mode(gt.path)
    if mode == "tvd" and not gt.has_classes:
        raise EvaluationError(
            f"{gt.path}: the TVD rules read the class and visibility columns, which the {gt.layout} layout "
            "does not have; score it with --eval-mode mot or hieve (or force the MOT16 layout)"
        )
    length = None
    if seqinfo is not None and Path(seqinfo).is_file():
        try:
            length = seqinfo_length(Path(seqinfo))
        except SourceError as exc:
            raise EvaluationError(str(exc)) from None
    return Target(gt, mode, length)


def load_ground_truth(path: str | Path, mode: str = "tvd", layout: str = "auto") -> pd.DataFrame:
    """Ground truth as the framework's motmetrics frame (mot15-2D: x, y shifted by -1; HiEve: confidence >= 1)."""
    _check_mode(mode, EVAL_MODES)
    return gt_frame(read_ground_truth(path, layout), min_confidence=1 if mode == "hieve" else -1)


def gt_frame(gt: GroundTruth, min_confidence: float = -1) -> pd.DataFrame:
    """``gt`` as motmetrics' ``loadtxt(fmt='mot15-2D')`` returns it (x, y - 1, indexed by frame and id)."""
    index = pd.MultiIndex.from_arrays([gt.frame, gt.ids], names=["FrameId", "Id"])
    nan = np.full(len(gt), -1.0)
    df = pd.DataFrame(
        {
            "X": gt.boxes[:, 0] - 1,
            "Y": gt.boxes[:, 1] - 1,
            "Width": gt.boxes[:, 2],
            "Height": gt.boxes[:, 3],
            "Confidence": gt.flag,
            "ClassId": gt.cls.astype(float) if gt.cls is not None else nan,
            "Visibility": gt.visibility if gt.visibility is not None else nan,
        },
        index=index,
    )
    return df[df["Confidence"] >= min_confidence]


def predictions_frame(rows: Sequence[MotRow]) -> pd.DataFrame:
    """Tracker output as a motmetrics frame (0-based; confidence 1 as the framework sets it)."""
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


def accumulate(
    gt: str | Path | GroundTruth | Target,
    rows: Sequence[MotRow],
    mode: str = "auto",
    seqinfo: str | Path | None = None,
    max_frame: int | None = None,
    *,
    layout: str = "auto",
    solver: str | None = None,
) -> mm.MOTAccumulator:
    """Per-frame matching events of one sequence (``max_frame``: only its first frames were coded).

    ``gt`` is a ground-truth file, a read :class:`GroundTruth` or a :class:`Target` from
    :func:`prepare` (whose mode then applies). ``solver`` overrides the mode's assignment solver.
    """
    target = prepare(gt, mode, seqinfo, layout)
    solver = solver or SOLVERS[target.mode]
    if max_frame is not None:
        rows = [r for r in rows if r.frame <= max_frame]
    gt_rows = target.gt.until(max_frame)
    try:
        with warnings.catch_warnings(), mm.lap.set_default_solver(solver):
            warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning)
            if target.mode == "mot":
                return _accumulate_devkit(gt_rows, rows)
            if target.mode == "hieve":
                return mm.utils.compare_to_groundtruth(
                    gt_frame(gt_rows, min_confidence=1), predictions_frame(rows), "iou", distth=IOU_THRESHOLD
                )
            return _accumulate_tvd(target, gt_rows, rows, max_frame)
    except (FcmError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - name the sequence whatever motmetrics trips over
        raise EvaluationError(
            f"scoring {target.path} with the {target.mode} rules failed ({type(exc).__name__}: {exc})"
        ) from exc


def _accumulate_tvd(target: Target, gt: GroundTruth, rows: Sequence[MotRow], max_frame: int | None):
    # CLEAR_MOT_M reads the sequence length (the frames it removes distractor matches from) from a
    # seqinfo.ini; one is written with the validated length, or the last frame seen when unknown.
    length = target.seq_length
    if max_frame is not None or length is None:
        frames = [int(f) for f in gt.frame] + [r.frame for r in rows]
        length = max_frame if max_frame is not None else max(frames, default=1)
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "seqinfo.ini"
        ini.write_text(f"[Sequence]\nseqLength={length}\n")
        acc, _ = mm.utils.CLEAR_MOT_M(gt_frame(gt), predictions_frame(rows), str(ini), "iou", distth=IOU_THRESHOLD)
    return acc


def _accumulate_devkit(gt: GroundTruth, rows: Sequence[MotRow]) -> mm.MOTAccumulator:
    """The MOTChallenge devkit's rules (evaluateTracking.m, preprocessResult.m, clearMOTMex) as motmetrics events."""
    boxes = gt.boxes - np.array([1.0, 1.0, 0.0, 0.0])  # 1-based file -> 0-based
    scored = gt.flag != 0
    ignore = np.zeros(len(gt), bool)
    if gt.has_classes:
        scored &= gt.cls == PEDESTRIAN
        distractors = DISTRACTORS_MOT20 if "mot20" in str(gt.path).lower() else DISTRACTORS
        ignore = np.isin(gt.cls, sorted(distractors)) | (gt.visibility < 0)
    last = int(gt.frame[scored].max()) if scored.any() else 0

    by_frame: dict[int, list[int]] = {}
    for k in np.lexsort((gt.ids, gt.frame)):
        by_frame.setdefault(int(gt.frame[k]), []).append(int(k))
    preds: dict[int, list[MotRow]] = {}
    for r in sorted(rows, key=lambda r: (r.frame, r.track_id)):
        if r.frame <= last:  # the devkit clips results to the last ground-truth frame
            preds.setdefault(r.frame, []).append(r)

    frames = {}
    for frame in sorted(set(by_frame) | set(preds)):
        members = np.asarray(by_frame.get(frame, []), dtype=np.int64)
        hyp = preds.get(frame, [])
        hyp_boxes = np.array([[r.x, r.y, r.w, r.h] for r in hyp], dtype=np.float64).reshape(-1, 4)
        if ignore[members].any() and hyp:
            dist = mm.distances.iou_matrix(boxes[members], hyp_boxes, max_iou=IOU_THRESHOLD)
            rids, cids = mm.lap.linear_sum_assignment(dist)
            drop = {int(c) for r, c in zip(rids, cids) if np.isfinite(dist[r, c]) and ignore[members[r]]}
            hyp = [h for j, h in enumerate(hyp) if j not in drop]
            hyp_boxes = np.delete(hyp_boxes, sorted(drop), axis=0)
        objs = members[scored[members]]
        dist = (mm.distances.iou_matrix(boxes[objs], hyp_boxes, max_iou=IOU_THRESHOLD)
                if len(objs) and len(hyp) else np.empty((len(objs), len(hyp))))
        frames[frame] = (gt.ids[objs], np.array([h.track_id for h in hyp], dtype=np.int64), dist)
    return clear_mot_events(mm.MOTAccumulator(), frames)


def summarize(
    accumulators: Sequence[mm.MOTAccumulator],
    names: Sequence[str],
    pooled: Sequence[mm.MOTAccumulator] | None = None,
    solvers: Sequence[str] | None = None,
    pooled_solver: str = POOLED_SOLVER,
) -> pd.DataFrame:
    """Metrics per sequence plus a pooled OVERALL row, with the columns of :data:`REPORTED`.

    ``pooled``: the accumulators the OVERALL row sums (default: ``accumulators``); ``solvers``: the
    assignment solver of each sequence's identity metrics (default: ``lap``), ``pooled_solver``
    the OVERALL row's.
    """
    if not accumulators:
        raise EvaluationError("nothing to evaluate")
    names = list(names)
    solvers = list(solvers or [POOLED_SOLVER] * len(accumulators))
    mh = mm.metrics.create()
    rows = []
    for acc, name, solver in zip(accumulators, names, solvers):
        with mm.lap.set_default_solver(solver):
            rows.append(mh.compute(acc, metrics=list(REPORTED), name=name))
    pooled = list(pooled or accumulators)
    with mm.lap.set_default_solver(pooled_solver):  # OVERALL merges these per-sequence partials
        overall = mh.compute_many(pooled, metrics=list(REPORTED), names=names, generate_overall=True).loc[["OVERALL"]]
    return pd.concat([*rows, overall]).rename(columns=REPORTED)


@dataclass
class SequenceResult:
    """One sequence to score: its name, ground truth, tracks (0-based rows) and options."""

    name: str
    gt: str | Path | GroundTruth | Target
    rows: Sequence[MotRow]
    seqinfo: str | Path | None = None
    max_frame: int | None = None
    mode: str = "auto"
    extra: dict = field(default_factory=dict)


def evaluate(items: Sequence[SequenceResult], layout: str = "auto") -> pd.DataFrame:
    """Score sequences, each under its own (or its detected) rules, and pool them into OVERALL.

    Each sequence's row is computed with its mode's solver; OVERALL with the pooled solver, from
    accumulators rebuilt with it where the mode's differs (the framework's class MOTA does that).
    """
    accs, pooled, solvers, modes = [], [], [], set()
    for item in items:
        target = prepare(item.gt, item.mode, item.seqinfo, layout)
        acc = accumulate(target, item.rows, max_frame=item.max_frame)
        solver, pooled_solver = SOLVERS[target.mode], POOLED_SOLVERS[target.mode]
        accs.append(acc)
        solvers.append(solver)
        modes.add(target.mode)
        pooled.append(acc if solver == pooled_solver else
                      accumulate(target, item.rows, max_frame=item.max_frame, solver=pooled_solver))
    pooled_solver = POOLED_SOLVERS["mot"] if modes == {"mot"} else POOLED_SOLVER
    return summarize(accs, [i.name for i in items], pooled=pooled, solvers=solvers, pooled_solver=pooled_solver)


__all__ = [
    "EVAL_MODES", "MODE_CHOICES", "SOLVERS", "POOLED_SOLVERS", "POOLED_SOLVER", "REPORTED", "EvaluationError", "GroundTruthError",
    "Target", "SequenceResult", "detect_mode", "prepare", "load_ground_truth", "gt_frame", "predictions_frame",
    "accumulate", "summarize", "evaluate",
]
