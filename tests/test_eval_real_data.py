"""Evaluation of real MOTChallenge excerpts with hand-counted expectations.

The excerpts are cut from the real sequences in shared/data and shipped in tests/data/real_gt; the
tracks are chosen copies of ground-truth boxes, so that every count below is known by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fcm_common.data.mot_format import MotRow
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate

ROOT = Path(__file__).resolve().parents[1]


def _score(seq: Path, rows, mode: str = "auto"):
    return evaluate([SequenceResult(seq.name, seq / "gt" / "gt.txt", rows, seq / "seqinfo.ini", mode=mode)])


def _excerpt(name: str, dest: Path) -> Path:
    """A real ground-truth excerpt shipped in tests/data/real_gt (cut from the shared data, frames
    renumbered from 1: PETS09-S2L1 147..149, MOT17-02-FRCNN 1..2); scoring needs no pictures."""
    return Path(shutil.copytree(ROOT / "tests" / "data" / "real_gt" / name, dest))


def _gt_box(seq: Path, frame: int, oid: int) -> tuple[float, float, float, float]:
    for line in (seq / "gt" / "gt.txt").read_text().splitlines():
        f = line.split(",")
        if int(f[0]) == frame and int(f[1]) == oid:
            return float(f[2]) - 1, float(f[3]) - 1, float(f[4]), float(f[5])  # 1-based file -> 0-based
    raise AssertionError(f"no id {oid} in frame {frame}")


def test_pets09_excerpt_with_flag_0_rows(tmp_path):
    # PETS09-S2L1 frames 147..149 (2DMOT2015 layout): id 12 is flagged 0 (not scored) in each
    seq = _excerpt("PETS09-S2L1-147", tmp_path / "PETS09-S2L1-147")
    box = lambda f, oid: _gt_box(seq, f, oid)  # noqa: E731
    rows = [MotRow(f, 1, *box(f, 9)) for f in (1, 2, 3)]            # id 9 tracked throughout: 3 TP
    rows += [MotRow(f, 2, *box(f, 12)) for f in (1, 2, 3)]          # flag-0 person: 3 FP (devkit, MOT15)
    rows += [MotRow(f, 3, *box(f, 11)) for f in (1, 2)]             # id 11 ...
    rows += [MotRow(3, 4, *box(3, 11))]                             # ... changes track: 1 switch
    rows += [MotRow(1, 5, *box(1, 19))]                             # id 19 (frame 1 only): 1 TP
    row = _score(seq, rows).iloc[0]
    # scored: 7 + 6 + 6 flag-1 boxes = 19; matched 3 + 3 + 1 (ids 9, 11, 19) = 7
    assert (int(row.GT), int(row.FP), int(row.FN), int(row.IDs)) == (19, 3, 12, 1)
    assert row.MOTA == pytest.approx(1 - (12 + 3 + 1) / 19)


def test_mot17_excerpt_with_distractors(tmp_path):
    # MOT17-02-FRCNN frames 1..2: 22 scored pedestrians per frame, and static persons (class 7),
    # persons on vehicles (2), distractors (8), bicycles (4), occluders (9), all flagged 0
    seq = _excerpt("MOT17-02-FRCNN", tmp_path / "MOT17-02-FRCNN")
    box = lambda f, oid: _gt_box(seq, f, oid)  # noqa: E731
    rows = [MotRow(f, 1, *box(f, 2)) for f in (1, 2)]               # pedestrian: 2 TP
    rows += [MotRow(f, 2, *box(f, 1)) for f in (1, 2)]              # static person: removed
    rows += [MotRow(f, 3, *box(f, 11)) for f in (1, 2)]             # person on vehicle: removed
    rows += [MotRow(1, 4, *box(1, 5))]                              # distractor: removed
    rows += [MotRow(1, 5, *box(1, 51))]                             # occluder: not a distractor, 1 FP
    rows += [MotRow(f, 6, 10.0, 10.0, 50.0, 100.0) for f in (1, 2)]  # nobody there: 2 FP
    rows += [MotRow(1, 7, *box(1, 21))]                             # pedestrian of visibility 0: 1 TP
    row = _score(seq, rows).iloc[0]
    assert (int(row.GT), int(row.FP), int(row.FN), int(row.IDs)) == (44, 3, 41, 0)
    assert row.MOTA == pytest.approx(0.0, abs=1e-12)
    # under the framework's TVD rules (same distractor removal, class-1 ground truth): the same
    tvd = _score(seq, rows, "tvd").iloc[0]
    assert (int(tvd.FP), int(tvd.FN)) == (3, 41)
