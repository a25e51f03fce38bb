"""Evaluation of real MOTChallenge excerpts with hand-counted expectations.

The excerpts are cut from the real sequences in shared/data and shipped in tests/data/real_gt; the
tracks are chosen copies of ground-truth boxes, so that every count below is known by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from real_excerpts import excerpt, mot17_rows, pets09_rows

from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate


def _score(seq: Path, rows, mode: str = "auto"):
    return evaluate([SequenceResult(seq.name, seq / "gt" / "gt.txt", rows, seq / "seqinfo.ini", mode=mode)])


def test_pets09_excerpt_with_flag_0_rows(tmp_path):
    # PETS09-S2L1 frames 147..149 (2DMOT2015 layout): id 12 is flagged 0 (not scored) in each
    seq = excerpt("PETS09-S2L1-147", tmp_path / "PETS09-S2L1-147")
    rows = pets09_rows(seq)
    row = _score(seq, rows).iloc[0]
    # scored: 7 + 6 + 6 flag-1 boxes = 19; matched 3 + 3 + 1 (ids 9, 11, 19) = 7
    assert (int(row.GT), int(row.FP), int(row.FN), int(row.IDs)) == (19, 3, 12, 1)
    assert row.MOTA == pytest.approx(1 - (12 + 3 + 1) / 19)


def test_mot17_excerpt_with_distractors(tmp_path):
    # MOT17-02-FRCNN frames 1..2: 22 scored pedestrians per frame, and static persons (class 7),
    # persons on vehicles (2), distractors (8), bicycles (4), occluders (9), all flagged 0
    seq = excerpt("MOT17-02-FRCNN", tmp_path / "MOT17-02-FRCNN")
    rows = mot17_rows(seq)
    row = _score(seq, rows).iloc[0]
    assert (int(row.GT), int(row.FP), int(row.FN), int(row.IDs)) == (44, 3, 41, 0)
    assert row.MOTA == pytest.approx(0.0, abs=1e-12)
    # under the framework's TVD rules (same distractor removal, class-1 ground truth): the same
    tvd = _score(seq, rows, "tvd").iloc[0]
    assert (int(tvd.FP), int(tvd.FN)) == (3, 41)
