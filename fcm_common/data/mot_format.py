"""MOTChallenge tracks files: ``frame,id,x,y,w,h,score,-1,-1,-1`` per line.

Coordinates: in memory (:class:`MotRow`, the tracker, the evaluation) boxes are 0-based pixel
coordinates of the original frame, as JDE computes them. Files follow the MOTChallenge convention,
1-based (MATLAB) pixels: the top-left pixel is (1, 1), so x and y are written plus one. That is
the convention of the MOTChallenge ground truth and of other trackers' result files, so that a
tracks file scores the same in fcm-eval, in the MOTChallenge devkit and in motmetrics.
``origin=0`` reads or writes files whose x, y are 0-based.

The shift is exact: x is written as the decimal of ``repr(x)`` plus one and read back as the
decimal minus one, so a file read back gives the very floats that were written (full precision).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import MAX_PREC, Decimal, localcontext
from pathlib import Path

from fcm_common.core.atomic import write_text_atomic
from fcm_common.core.errors import FcmError

ORIGINS = (0, 1)
FILE_ORIGIN = 1  # fcm writes MOTChallenge's 1-based pixels


class MotFormatError(FcmError, ValueError):
    """A malformed MOTChallenge file."""


@dataclass(frozen=True)
class MotRow:
    frame: int
    track_id: int
    x: float  # 0-based pixels
    y: float
    w: float
    h: float
    score: float = 1.0


def _check_origin(origin: int) -> None:
    if origin not in ORIGINS:
        raise MotFormatError(f"the pixel origin of a tracks file is 0 or 1, not {origin}")


_EXACT = 30  # decimal exponents within +-30 are shifted exactly; beyond, in floating point


def _shifted_text(value: float, shift: int) -> str:
    if shift == 0 or not math.isfinite(value):
        return repr(value)
    if value != 0 and not 10.0**-_EXACT < abs(value) < 10.0**_EXACT:
        return repr(value + shift)
    with localcontext(prec=MAX_PREC):  # exact: only as many digits as the sum needs
        return format(Decimal(repr(value)) + shift, "f")


def _shifted_value(text: str, shift: int) -> float:
    if shift == 0:
        return float(text)
    number = Decimal(text)  # ValueError subclass (InvalidOperation) for junk
    if not number.is_finite() or (number and abs(number.adjusted()) > _EXACT):
        return float(number) - shift
    with localcontext(prec=MAX_PREC):
        return float(number - shift)


def format_rows(rows: Iterable[MotRow], origin: int = 0) -> str:
    """Rows as MOTChallenge text; ``origin`` 0 writes the in-memory (0-based) coordinates."""
    _check_origin(origin)
    return "".join(
        f"{r.frame},{r.track_id},{_shifted_text(r.x, origin)},{_shifted_text(r.y, origin)},"
        f"{r.w!r},{r.h!r},{r.score!r},-1,-1,-1\n"
        for r in rows
    )


def write_rows(path: str | Path, rows: Iterable[MotRow], origin: int = FILE_ORIGIN) -> None:
    """Write a tracks file (atomically), x and y in the file's pixel ``origin`` (1: MOTChallenge)."""
    write_text_atomic(path, format_rows(rows, origin))


def read_rows(path: str | Path, origin: int = FILE_ORIGIN) -> list[MotRow]:
    """Read a tracks file: ``frame,id,x,y,w,h[,score,...]`` per line, x and y in pixel ``origin``.

    Returned rows have 0-based coordinates. A missing score reads as 1. Refused with the line
    named: fewer than 6 fields, a non-numeric or non-finite value, a frame below 1, a box without
    area, an id twice in one frame (the MOTChallenge devkit refuses that too).
    """
    _check_origin(origin)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MotFormatError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise MotFormatError(f"{path}: a folder, not a tracks file") from None
    except UnicodeDecodeError:
        raise MotFormatError(f"{path}: not a text file") from None
    rows = []
    seen: dict[tuple[int, int], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6:
            raise MotFormatError(f"{path}:{lineno}: expected at least 6 comma-separated fields (frame,id,x,y,w,h), got {len(fields)}")
        try:
            if any("_" in f for f in fields[:7]):
                raise ValueError
            frame_f, tid_f = float(fields[0]), float(fields[1])
            x, y = (_shifted_value(v, origin) for v in fields[2:4])
            w, h = float(fields[4]), float(fields[5])
            score = float(fields[6]) if len(fields) > 6 else 1.0
        except (ValueError, ArithmeticError):
            raise MotFormatError(f"{path}:{lineno}: non-numeric field in '{line.strip()}'") from None
        if not all(math.isfinite(v) for v in (frame_f, tid_f, x, y, w, h, score)):
            raise MotFormatError(f"{path}:{lineno}: a field is not a finite number in '{line.strip()}'")
        if frame_f != int(frame_f) or tid_f != int(tid_f):
            raise MotFormatError(f"{path}:{lineno}: frame and id must be integers in '{line.strip()}'")
        frame, tid = int(frame_f), int(tid_f)
        if frame < 1:
            raise MotFormatError(f"{path}:{lineno}: frame numbers start at 1, got {frame}")
        if w <= 0 or h <= 0:
            raise MotFormatError(f"{path}:{lineno}: box width and height must be positive, got {fields[4]} x {fields[5]}")
        first = seen.setdefault((frame, tid), lineno)
        if first != lineno:
            raise MotFormatError(f"{path}:{lineno}: track {tid} appears twice in frame {frame} (also on line {first})")
        rows.append(MotRow(frame, tid, x, y, w, h, score))
    return rows
