"""MOTChallenge result files: ``frame,id,x,y,w,h,score,-1,-1,-1`` per line.

Frames are 1-based; boxes are top-left x, y, width, height in original-frame pixels, written with
full float precision (``repr``) so that a file read back gives the numbers that were written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fcm_common.core.atomic import write_text_atomic
from fcm_common.core.errors import FcmError


class MotFormatError(FcmError, ValueError):
    """A malformed MOTChallenge file."""


@dataclass(frozen=True)
class MotRow:
    frame: int
    track_id: int
    x: float
    y: float
    w: float
    h: float
    score: float = 1.0


def format_rows(rows: Iterable[MotRow]) -> str:
    return "".join(
        f"{r.frame},{r.track_id},{r.x!r},{r.y!r},{r.w!r},{r.h!r},{r.score!r},-1,-1,-1\n" for r in rows
    )


def write_rows(path: str | Path, rows: Iterable[MotRow]) -> None:
    """Write a result file (atomically)."""
    write_text_atomic(path, format_rows(rows))


def read_rows(path: str | Path) -> list[MotRow]:
    """Read a result (or ground-truth) file: the first seven columns of each line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MotFormatError(f"file not found: {path}") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.replace(" ", "").split(",")
        if len(fields) < 7:
            raise MotFormatError(f"{path}:{lineno}: expected at least 7 comma-separated fields, got {len(fields)}")
        try:
            frame, tid = int(float(fields[0])), int(float(fields[1]))
            x, y, w, h, score = (float(v) for v in fields[2:7])
        except ValueError:
            raise MotFormatError(f"{path}:{lineno}: non-numeric field in '{line.strip()}'") from None
        if frame < 1:
            raise MotFormatError(f"{path}:{lineno}: frame numbers start at 1, got {frame}")
        rows.append(MotRow(frame, tid, x, y, w, h, score))
    return rows
