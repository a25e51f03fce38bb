"""Write outputs all at once: to a temporary file beside the target, renamed when complete.

A command that fails half-way (bad input, a codec error, Ctrl-C) then leaves no truncated output
file behind, and a reader never sees a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fcm_common.core.errors import FcmError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target``, on error it is deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_overwriting_inputs(output: str | Path, *inputs: str | Path) -> None:
    """An output path that is one of the inputs (the same file, also through links) is refused:
    writing it would destroy the input."""
    out = Path(output)
    for item in inputs:
        item = Path(item)
        same = out.resolve() == item.resolve() or (out.exists() and item.exists() and os.path.samefile(out, item))
        if same:
            raise FcmError(f"the output {out} is the input {item}: choose another -o")


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
