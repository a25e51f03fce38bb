"""Real ground-truth excerpts shipped in tests/data/real_gt and the hand-chosen tracks scored on them.

Cut from the shared data with frames renumbered from 1: PETS09-S2L1 147..149 (2DMOT2015 layout, id 12
flagged 0) and MOT17-02-FRCNN 1..2 (static persons, persons on vehicles, distractors, occluders).
The tracks are copies of ground-truth boxes, so every count the tests expect is known by hand; the
evaluation tests score them in-process and through ``fcm-track --gt``.
"""

from __future__ import annotations

import configparser
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from fcm_common.data.mot_format import MotRow

REAL_GT = Path(__file__).resolve().parent / "data" / "real_gt"


def excerpt(name: str, dest: Path, pictures: bool = False) -> Path:
    """Copy an excerpt to ``dest``; ``pictures``: add blank pictures of the seqinfo size and count
    (for commands that open the sequence; its tracker is replaced, so only the count matters)."""
    shutil.copytree(REAL_GT / name, dest)
    if pictures:
        info = configparser.ConfigParser()
        info.read(dest / "seqinfo.ini")
        seq = info["Sequence"]
        (dest / "img1").mkdir()
        blank = Image.fromarray(np.zeros((int(seq["imHeight"]), int(seq["imWidth"]), 3), np.uint8))
        for i in range(1, int(seq["seqLength"]) + 1):
            blank.save(dest / "img1" / f"{i:06d}{seq['imExt']}")
    return dest


def gt_box(seq: Path, frame: int, oid: int) -> tuple[float, float, float, float]:
    for line in (seq / "gt" / "gt.txt").read_text().splitlines():
        f = line.split(",")
        if int(f[0]) == frame and int(f[1]) == oid:
            return float(f[2]) - 1, float(f[3]) - 1, float(f[4]), float(f[5])  # 1-based file -> 0-based
    raise AssertionError(f"no id {oid} in frame {frame}")


def pets09_rows(seq: Path) -> list[MotRow]:
    """PETS09-S2L1 147..149: scored 7 + 6 + 6 flag-1 boxes = 19, matched 7 -> GT 19, FP 3, FN 12, IDs 1."""
    box = lambda f, oid: gt_box(seq, f, oid)  # noqa: E731
    rows = [MotRow(f, 1, *box(f, 9)) for f in (1, 2, 3)]            # id 9 tracked throughout: 3 TP
    rows += [MotRow(f, 2, *box(f, 12)) for f in (1, 2, 3)]          # flag-0 person: 3 FP (devkit, MOT15)
    rows += [MotRow(f, 3, *box(f, 11)) for f in (1, 2)]             # id 11 ...
    rows += [MotRow(3, 4, *box(3, 11))]                             # ... changes track: 1 switch
    rows += [MotRow(1, 5, *box(1, 19))]                             # id 19 (frame 1 only): 1 TP
    return rows


def mot17_rows(seq: Path) -> list[MotRow]:
    """MOT17-02-FRCNN 1..2 (22 scored pedestrians per frame): GT 44, FP 3, FN 41, IDs 0."""
    box = lambda f, oid: gt_box(seq, f, oid)  # noqa: E731
    rows = [MotRow(f, 1, *box(f, 2)) for f in (1, 2)]               # pedestrian: 2 TP
    rows += [MotRow(f, 2, *box(f, 1)) for f in (1, 2)]              # static person: removed
    rows += [MotRow(f, 3, *box(f, 11)) for f in (1, 2)]             # person on vehicle: removed
    rows += [MotRow(1, 4, *box(1, 5))]                              # distractor: removed
    rows += [MotRow(1, 5, *box(1, 51))]                             # occluder: not a distractor, 1 FP
    rows += [MotRow(f, 6, 10.0, 10.0, 50.0, 100.0) for f in (1, 2)]  # nobody there: 2 FP
    rows += [MotRow(1, 7, *box(1, 21))]                             # pedestrian of visibility 0: 1 TP
    return rows
