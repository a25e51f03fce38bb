"""Labelled training pictures: MOTChallenge sequences with ground truth, and footage labelled by teachers.

A sequence is named ``PATH`` or ``PATH:FIRST-LAST`` (1-based frame numbers, both included), so the
frames kept for validation are never read for training; a ``@W`` suffix (``PATH:1-550@2``) draws its
pictures W times as often as the others' (a sampling weight, on top of ``--balance``). Identities are renumbered across all
labelled sequences (0..nID-1); teacher-labelled boxes carry no identity (-1). Rows that the
MOTChallenge evaluation ignores (consider flag 0, or a class other than pedestrian in the 9-column
MOT16/17 layout) become *ignore regions*: anchors on them are neither foreground nor background.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcm_common.core.errors import FcmError
from fcm_common.data.ground_truth import PEDESTRIAN, read_ground_truth
from fcm_common.data.sources import open_source


class TrainingDataError(FcmError, ValueError):
    """Training data that cannot be used."""


@dataclass
class LabelledImage:
    """One RGB picture with its boxes (x1, y1, x2, y2 in its pixels)."""

    image: np.ndarray
    boxes: np.ndarray  # (N, 4) float32
    ids: np.ndarray  # (N,) int64, -1 = no identity
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    teacher: np.ndarray | None = None  # (N, D) teacher appearance embeddings, or None
    origin: str = ""
    weight: float = 1.0  # how often the picture is drawn, relative to the others (a SEQ's @W)


@dataclass(frozen=True)
class SequenceSpec:
    path: Path
    first: int | None = None
    last: int | None = None
    weight: float = 1.0  # sampling weight of its pictures (``@W``)

    @classmethod
    def parse(cls, text: str) -> SequenceSpec:
        match = re.fullmatch(r"(.+?)(?::(\d+)-(\d+))?(?:@(\d+(?:\.\d*)?|\.\d+))?", str(text))
        path, first, last, weight = match.group(1), match.group(2), match.group(3), match.group(4)
        if first is not None and int(first) > int(last):
            raise TrainingDataError(f"{text}: empty frame range {first}-{last}")
        if weight is not None and float(weight) <= 0:
            raise TrainingDataError(f"{text}: the sampling weight @{weight} must be positive")
        return cls(Path(path), int(first) if first else None, int(last) if last else None,
                   float(weight) if weight else 1.0)

    def keeps(self, frame: int) -> bool:
        return (self.first is None or frame >= self.first) and (self.last is None or frame <= self.last)

    def __str__(self) -> str:
        return (f"{self.path}" + (f":{self.first}-{self.last}" if self.first is not None else "")
                + (f"@{self.weight:g}" if self.weight != 1 else ""))


def read_training_gt(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """frame -> (boxes x1y1x2y2 0-based, ids, ignore boxes) of a MOTChallenge ground-truth file."""
    gt = read_ground_truth(path)
    consider = gt.flag != 0
    if gt.has_classes:
        consider &= gt.cls == PEDESTRIAN
    xywh = gt.boxes.copy()
    xywh[:, :2] -= 1  # MOTChallenge pixels are 1-based
    corners = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).astype(np.float32)
    valid = (xywh[:, 2] > 1) & (xywh[:, 3] > 1)
    out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for frame in np.unique(gt.frame):
        sel = gt.frame == frame
        keep = sel & consider & valid
        out[int(frame)] = (corners[keep], gt.ids[keep].astype(np.int64), corners[sel & ~consider & valid])
    return out


def load_sequence(spec: SequenceSpec, first_id: int = 0) -> tuple[list[LabelledImage], int]:
    """The labelled frames of one sequence, identities numbered from ``first_id``; returns (images, count of ids)."""
    source = open_source(spec.path)
    if source.gt_path is None:
        raise TrainingDataError(f"{spec.path}: no gt/gt.txt (label it with --teacher-video instead)")
    gt = read_training_gt(source.gt_path)
    raw_ids = sorted({int(i) for f, (_, ids, _) in gt.items() if spec.keeps(f) for i in ids})
    mapping = {raw: first_id + n for n, raw in enumerate(raw_ids)}
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    images = []
    for frame, image in enumerate(source.frames(), start=1):
        if not spec.keeps(frame):
            continue
        boxes, ids, ignore = gt.get(frame, empty)
        images.append(LabelledImage(image, boxes, np.array([mapping[int(i)] for i in ids], np.int64), ignore,
                                    origin=f"{source.name}:{frame}", weight=spec.weight))
    if not images:
        raise TrainingDataError(f"{spec}: no frames in that range")
    return images, len(raw_ids)
