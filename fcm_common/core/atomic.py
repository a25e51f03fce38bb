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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise FcmError(f"cannot write {target}: {exc.strerror or exc}") from None
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


def check_writable(*targets: str | Path | None) -> None:
    """Refuse, before any work is done, an output that cannot be written: a folder in its place,
    a file where its folder should be, a folder without write permission. (Folders that do not
    exist yet are made when the output is written, not here: a failing command leaves nothing.)"""
    for target in targets:
        if target is None:
            continue
        target = Path(target)
        if target.is_dir():
            raise FcmError(f"cannot write {target}: it is a folder")
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise FcmError(f"cannot write {target}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise FcmError(f"cannot write {target}: no permission to write in {folder}")


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
