"""How many threads torch (and onnxruntime) run with: chosen by the commands themselves (issue 29).

A command working on a file uses torch's default (a thread per core): it has the machine to itself
and the more threads, the sooner it ends. A live encoder (a camera, a URL, stdin, a file paced with
``--realtime``) and a decoder of a live stream (stdin, ``--listen``) work at the source's pace and
often share the machine with each other (``fcm-encode ... -o - | fcm-decode - -o -``): each takes
half the cores, at least one, at most :data:`LIVE_MAX_THREADS`. Two processes with a thread per core
each overcommit the machine: on the 2-core development CPU they fell behind a 10 fps source (p50
1.2 s, growing) where one thread each kept pace (docs/live.md). ``--torch-threads N`` overrides the
choice; so does ``OMP_NUM_THREADS`` in the environment (the user's, as torch reads it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import torch

LIVE_MAX_THREADS = 4  # batch 1 of a small network: little to gain from more, and more threads spin between frames


def choose_threads(live: bool, requested: int | None = None, cpu_count: int | None = None,
                   environ: Mapping[str, str] | None = None) -> int | None:
    """The torch thread count a command sets, or None to leave torch's default.

    ``requested`` (``--torch-threads``, >= 1) wins; then ``OMP_NUM_THREADS``, when set, is left to
    torch; a live command takes ``cpu_count // 2`` (at least 1, at most ``LIVE_MAX_THREADS``); any
    other keeps torch's default."""
    if requested:
        return requested
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS"):
        return None
    if not live:
        return None
    cores = cpu_count if cpu_count is not None else _usable_cores()
    return max(1, min(LIVE_MAX_THREADS, cores // 2))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(live: bool, requested: int | None = None) -> Iterator[int]:
    """:func:`choose_threads` applied to torch while the block runs (the threads it runs with are
    yielded), torch's previous count restored after it (a command run inside another process, as the
    tests do, leaves that process as it was)."""
    previous = torch.get_num_threads()
    threads = choose_threads(live, requested)
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
