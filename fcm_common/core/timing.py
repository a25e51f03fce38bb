"""Wall-clock time per pipeline stage (reported by the executables)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import torch


class StageTimer:
    """Accumulates seconds per named stage; synchronises CUDA so GPU work is attributed correctly."""

    def __init__(self, device: torch.device | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cuda = device is not None and device.type == "cuda"
        self.device = device

    @contextlib.contextmanager
    def stage(self, name: str):
        if self.cuda:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start
