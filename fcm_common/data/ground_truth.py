"""Ground-truth files of the MOTChallenge family: layout recognition and validation.

One line per annotated box, comma-separated, frames and pixel coordinates 1-based (MATLAB):

- ``mot15`` (2DMOT2015; HiEve uses it too): ``frame,id,x,y,w,h,flag,x_world,y_world,z_world``,
  10 fields. No class: the last three fields are world coordinates (or -1) and are not used.
- ``mot16`` (MOT16, MOT17, MOT20; TVD uses it too): ``frame,id,x,y,w,h,flag,class,visibility``,
  9 fields. ``flag`` 0 marks boxes that are not scored; ``class`` is one of :data:`CLASS_NAMES`;
  ``visibility`` is in [0, 1] (-1 where unknown).

The layout is recognised from the number of fields (10: ``mot15``, 9: ``mot16``) or forced
(``mot16`` then reads the first 9 fields of longer lines, ``mot15`` the first 7 and no class).
Every line is validated; a bad one is refused with the file, the line and the field named, so that
a broken file is never silently scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fcm_common.core.errors import FcmError

LAYOUTS = ("mot15", "mot16")
LAYOUT_CHOICES = ("auto", *LAYOUTS)
LAYOUT_FIELDS = {"mot15": 10, "mot16": 9}  # recognised by these field counts
LAYOUT_NAMES = {
    "mot15": "2DMOT2015/HiEve layout: frame,id,x,y,w,h,flag,x_world,y_world,z_world",
    "mot16": "MOT16/17/20/TVD layout: frame,id,x,y,w,h,flag,class,visibility",
}
_MIN_FIELDS = {"mot15": 7, "mot16": 9}  # what a forced layout reads

# MOTChallenge classes (MOT16 paper, table 3; 13 from MOT20).
CLASS_NAMES = {
    1: "pedestrian",
    2: "person_on_vehicle",
    3: "car",
    4: "bicycle",
    5: "motorbike",
    6: "non_mot_vehicle",
    7: "static_person",
    8: "distractor",
    9: "occluder",
    10: "occluder_on_ground",
    11: "occluder_full",
    12: "reflection",
    13: "crowd",
}
PEDESTRIAN = 1

_FIELDS = ("frame", "id", "x", "y", "width", "height", "flag")


class GroundTruthError(FcmError, ValueError):
    """A ground-truth file that cannot be read or does not fit a MOTChallenge layout."""


@dataclass(frozen=True)
class GroundTruth:
    """The rows of a ground-truth file, as written in it (1-based x, y)."""

    path: Path
    layout: str
    frame: np.ndarray  # int64
    ids: np.ndarray  # int64
    boxes: np.ndarray  # (N, 4) float64: x, y, w, h
    flag: np.ndarray  # float64
    cls: np.ndarray | None = None  # int64, mot16 only
    visibility: np.ndarray | None = None  # float64, mot16 only
    line: np.ndarray | None = None  # line number of each row

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def has_classes(self) -> bool:
        return self.cls is not None

    @property
    def last_frame(self) -> int:
        return int(self.frame.max()) if len(self) else 0

    def select(self, mask: np.ndarray) -> GroundTruth:
        """The rows where ``mask`` is true."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return replace(
            self, frame=self.frame[mask], ids=self.ids[mask], boxes=self.boxes[mask], flag=self.flag[mask],
            cls=pick(self.cls), visibility=pick(self.visibility), line=pick(self.line),
        )

    def until(self, last_frame: int | None) -> GroundTruth:
        """Only the rows of frames 1..last_frame (all of them for None)."""
        return self if last_frame is None else self.select(self.frame <= last_frame)


def _number(text: str, path: Path, lineno: int, name: str) -> float:
    try:
        if "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise GroundTruthError(f"{path}:{lineno}: {name} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise GroundTruthError(f"{path}:{lineno}: {name} is {text}, not a finite number")
    return value


def _integer(text: str, path: Path, lineno: int, name: str) -> int:
    value = _number(text, path, lineno, name)
    if value != int(value):
        raise GroundTruthError(f"{path}:{lineno}: {name} '{text}' is not an integer")
    return int(value)


def _split(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")]


def recognise_layout(path: Path, first_fields: int, lineno: int) -> str:
    for layout, count in LAYOUT_FIELDS.items():
        if first_fields == count:
            return layout
    known = "; ".join(f"{LAYOUT_FIELDS[k]} fields: {LAYOUT_NAMES[k]}" for k in LAYOUTS)
    raise GroundTruthError(
        f"{path}:{lineno}: {first_fields} comma-separated fields, which fits no MOTChallenge ground-truth layout ({known})"
    )


def read_ground_truth(path: str | Path, layout: str = "auto") -> GroundTruth:
    """Read and validate a ground-truth file (``layout``: ``auto``, ``mot15`` or ``mot16``)."""
    path = Path(path)
    if layout not in LAYOUT_CHOICES:
        raise GroundTruthError(f"unknown ground-truth layout '{layout}' (choose from {', '.join(LAYOUT_CHOICES)})")
    if path.is_dir():
        raise GroundTruthError(f"{path}: a folder, not a ground-truth file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GroundTruthError(f"ground truth not found: {path}") from None
    except UnicodeDecodeError:
        raise GroundTruthError(f"{path}: not a text file") from None
    except OSError as exc:
        raise GroundTruthError(f"cannot read ground truth {path} ({exc.strerror or exc})") from None

    frames, ids, boxes, flags, classes, vis, lines = [], [], [], [], [], [], []
    seen: dict[tuple[int, int], int] = {}
    expected = None  # field count of the first line (auto layout)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        fields = _split(raw)
        if layout == "auto":
            layout = recognise_layout(path, len(fields), lineno)
            expected = len(fields)
        if expected is not None and len(fields) != expected:
            raise GroundTruthError(
                f"{path}:{lineno}: {len(fields)} fields where the file's first line has {expected} ({LAYOUT_NAMES[layout]})"
            )
        if len(fields) < _MIN_FIELDS[layout]:
            raise GroundTruthError(
                f"{path}:{lineno}: {len(fields)} fields, the {LAYOUT_NAMES[layout]} needs {_MIN_FIELDS[layout]}"
            )
        frame = _integer(fields[0], path, lineno, "frame")
        if frame < 1:
            raise GroundTruthError(f"{path}:{lineno}: frame {frame}: frame numbers start at 1")
        oid = _integer(fields[1], path, lineno, "id")
        x, y, w, h = (_number(fields[k], path, lineno, _FIELDS[k]) for k in range(2, 6))
        if w <= 0 or h <= 0:
            name, value = ("width", fields[4]) if w <= 0 else ("height", fields[5])
            raise GroundTruthError(f"{path}:{lineno}: box {name} {value} is not positive")
        flag = _number(fields[6], path, lineno, "flag (consider/confidence)")
        if layout == "mot16":
            cls_value = _number(fields[7], path, lineno, "class")
            cls = int(cls_value) if cls_value == int(cls_value) else 0
            if cls not in CLASS_NAMES:
                hint = (" (a 2DMOT2015 file with world coordinates? read it with the mot15 layout)"
                        if len(fields) >= 10 else "")
                raise GroundTruthError(
                    f"{path}:{lineno}: class {fields[7]} is not a MOTChallenge class (1..{max(CLASS_NAMES)}){hint}"
                )
            v = _number(fields[8], path, lineno, "visibility")
            if not -1 <= v <= 1:
                raise GroundTruthError(f"{path}:{lineno}: visibility {fields[8]} is outside [0, 1] (or -1 for unknown)")
            classes.append(cls)
            vis.append(v)
        elif len(fields) > 7:
            for k, name in zip(range(7, min(len(fields), 10)), ("x_world", "y_world", "z_world")):
                _number(fields[k], path, lineno, name)
        first = seen.setdefault((frame, oid), lineno)
        if first != lineno:
            raise GroundTruthError(f"{path}:{lineno}: id {oid} appears twice in frame {frame} (also on line {first})")
        frames.append(frame)
        ids.append(oid)
        boxes.append((x, y, w, h))
        flags.append(flag)
        lines.append(lineno)
    if not frames:
        raise GroundTruthError(f"{path}: no ground-truth rows")
    return GroundTruth(
        path=path,
        layout=layout,
        frame=np.asarray(frames, np.int64),
        ids=np.asarray(ids, np.int64),
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        flag=np.asarray(flags, np.float64),
        cls=np.asarray(classes, np.int64) if layout == "mot16" else None,
        visibility=np.asarray(vis, np.float64) if layout == "mot16" else None,
        line=np.asarray(lines, np.int64),
    )
