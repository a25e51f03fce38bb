"""Training advMSFC with the Selective Learning Strategy (SLS), JDE frozen.

SLS: at every step, for every sample, draw n uniformly from 0..C and zero the code's channels n..C-1
before MSFR. MSFR thus learns to reconstruct from any prefix of the code, and MSFF learns to put
what matters most in the first channels (nested dropout; the linear limit is PCA ordering). At
coding time QACT keeps the first k channels and the decoder zero-fills the rest, which is exactly
the situation SLS trained for.

Loss: the reconstruction error of the three split tensors, each standardised per channel (so that
no scale or channel dominates), averaged over the scales. Optional task term (``task_weight``):
the error of JDE's prediction-head inputs computed from the reconstruction (layers 84/99/114;
for ``backbone`` these are the split tensors themselves), with the 24 detection channels weighted
4x and 1 - cosine on the 512-d embeddings; measured, not on by default (see the README).

Data: any pedestrian frames (videos, MOTChallenge folders, image folders), letterboxed like JDE's
input, with horizontal flips and, half of the time, a random half-size crop first (a zoom that
makes people larger). Features are computed on the fly by JDE part 1; ``cache`` keeps them in
memory (float16) when they fit and are asked for.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fcm_common.core.errors import FcmError
from fcm_common.data.sources import FrameSource
from fcm_common.model.preprocess import letterbox, to_tensor
from fcm_common.msfc.networks import AdvMSFC

DETECTION_WEIGHT = 4.0


@dataclass
class TrainSettings:
    split: str
    steps: int = 20000
    batch_size: int = 8
    lr: float = 1e-4
    lr_min: float = 1e-6
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    sls: bool = True
    quant_noise: bool = False
    task_weight: float = 0.0
    stats_frames: int = 64
    shuffle_buffer: int = 64
    seed: int = 0
    checkpoint_every: int = 500

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------- SLS
def sls_mask(code: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keep a random prefix of channels per sample: n ~ U{0..C}, channels >= n zeroed."""
    batch, channels = code.shape[:2]
    n = torch.randint(0, channels + 1, (batch,), generator=generator).to(code.device)
    keep = torch.arange(channels, device=code.device)[None, :] < n[:, None]
    return code * keep[:, :, None, None].to(code.dtype)


def add_quantisation_noise(code: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform noise of +-1/2 step of a per-sample 10-bit min-max quantiser (simulates coding)."""
    flat = code.flatten(1)
    step = (flat.max(1).values - flat.min(1).values).clamp(min=1e-6) / 1023
    noise = torch.rand(code.shape, generator=generator).to(code.device) - 0.5
    return code + noise * step[:, None, None, None]


def reconstruction_loss(recon: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over the scales of the per-scale MSE (standardised tensors)."""
    return sum(F.mse_loss(r, t) for r, t in zip(recon, target)) / len(target)


def task_loss(heads_recon: Sequence[torch.Tensor], heads_orig: Sequence[torch.Tensor]) -> torch.Tensor:
    """Error of the prediction-head inputs: detection logits (x4) and embedding directions."""
    total = 0.0
    for r, o in zip(heads_recon, heads_orig):
        det = F.mse_loss(r[:, :24], o[:, :24])
        cos = F.cosine_similarity(r[:, 24:], o[:, 24:], dim=1)
        total = total + DETECTION_WEIGHT * det + (1 - cos).mean()
    return total / len(heads_orig)


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up (``warmup`` steps, at most a tenth of the run), then cosine decay to ``lr_min``."""
    warmup = min(settings.warmup, max(settings.steps // 10, 1))
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    progress = min((step - warmup) / max(settings.steps - warmup, 1), 1.0)
    return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (1 + math.cos(math.pi * progress))


def train_step(
    model: AdvMSFC,
    features: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    settings: TrainSettings,
    heads_fn: Callable[[Sequence[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> float:
    """One optimisation step on a batch of split tensors (split order)."""
    model.train()
    target = model.standardise(features)
    code = model.msff(*target)
    if settings.sls:
        code = sls_mask(code, generator)
    if settings.quant_noise:
        code = add_quantisation_noise(code, generator)
    recon = model.msfr(code)
    loss = reconstruction_loss(recon, target)
    if settings.task_weight and heads_fn is not None:
        with torch.no_grad():
            heads_orig = heads_fn(features)
        loss = loss + settings.task_weight * task_loss(heads_fn(model.destandardise(recon)), heads_orig)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def error_by_channels(model: AdvMSFC, features: Sequence[torch.Tensor], ks: Sequence[int]) -> dict[int, float]:
    """Standardised reconstruction MSE when only the first k code channels are kept."""
    model.eval()
    target = model.standardise(features)
    code = model.msff(*target)
    out = {}
    for k in ks:
        recon = model.msfr(model.zero_fill(code[:, :k], code.shape[1]))
        out[int(k)] = float(reconstruction_loss(recon, target))
    return out


# ------------------------------------------------------------------------------------------- data
class FrameStream:
    """Endless, shuffled, augmented letterboxed frames from a list of sources.

    Sources are read in order, cycling; a shuffle buffer mixes frames across time and sources
    without random access (so videos work as well as image folders).
    """

    def __init__(self, sources: Sequence[FrameSource], input_size: tuple[int, int], seed: int = 0,
                 buffer: int = 64, augment: bool = True):
        if not sources:
            raise FcmError("no training sources")
        self.sources = list(sources)
        self.width, self.height = input_size
        self.rng = random.Random(seed)
        self.buffer_size = max(buffer, 1)
        self.augment = augment

    def _raw(self) -> Iterator[np.ndarray]:
        while True:
            produced = 0
            for source in self.sources:
                for frame in source.frames():
                    produced += 1
                    yield frame
            if produced == 0:
                raise FcmError("the training sources hold no frames")

    def _augment(self, frame: np.ndarray) -> np.ndarray:
        if self.augment and self.rng.random() < 0.5:
            h, w = frame.shape[:2]
            ch, cw = max(h // 2, 1), max(w // 2, 1)
            y, x = self.rng.randint(0, h - ch), self.rng.randint(0, w - cw)
            frame = frame[y : y + ch, x : x + cw]
        if self.augment and self.rng.random() < 0.5:
            frame = frame[:, ::-1]
        return np.ascontiguousarray(frame)

    def __iter__(self) -> Iterator[torch.Tensor]:
        buffer: list[np.ndarray] = []
        for frame in self._raw():
            buffer.append(frame)
            if len(buffer) < self.buffer_size:
                continue
            pick = buffer.pop(self.rng.randrange(len(buffer)))
            padded, _ = letterbox(self._augment(pick), self.width, self.height)
            yield to_tensor(padded)


def feature_batches(jde, frames: Iterator[torch.Tensor], split: str, batch_size: int, device) -> Iterator[list[torch.Tensor]]:
    """Batches of JDE split tensors computed on the fly (JDE frozen)."""
    while True:
        batch = torch.stack([next(frames) for _ in range(batch_size)]).to(device)
        with torch.no_grad():
            feats = [f.float() for f in jde.forward_part1(batch, split)]
        yield feats  # outside the no_grad block: a generator suspended inside it would leak the mode


class FeatureCache:
    """Split tensors of a fixed set of frames, kept in memory in float16."""

    def __init__(self, features: list[list[torch.Tensor]], device):
        self.features = features  # per frame, split order, CPU float16
        self.device = device

    @classmethod
    def build(cls, jde, frames: list[torch.Tensor], split: str, device, limit_bytes: int) -> FeatureCache:
        shapes = jde.split_shapes(split)
        need = len(frames) * sum(math.prod(s) for s in shapes) * 2
        if need > limit_bytes:
            raise FcmError(
                f"caching {len(frames)} frames of {split} features needs {need / 2**30:.1f} GiB, over the "
                f"{limit_bytes / 2**30:.1f} GiB limit: train without --cache-features or raise --cache-limit-gb"
            )
        out = []
        with torch.no_grad():
            for frame in frames:
                feats = jde.forward_part1(frame[None].to(device), split)
                out.append([f[0].to("cpu", torch.float16) for f in feats])
        return cls(out, device)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[list[torch.Tensor]]:
        while True:
            idx = torch.randint(0, len(self.features), (batch_size,), generator=generator).tolist()
            yield [torch.stack([self.features[i][j] for i in idx]).to(self.device, torch.float32) for j in range(3)]


@torch.no_grad()
def measure_statistics(batches: Iterator[list[torch.Tensor]], order: Sequence[int], num_batches: int):
    """Per-channel mean and std of (finest, middle, coarsest), accumulated in float64."""
    sums = sq = None
    count = 0
    for _ in range(num_batches):
        feats = next(batches)
        scaled = [feats[i].double() for i in order]
        s = [x.sum(dim=(0, 2, 3)) for x in scaled]
        q = [(x * x).sum(dim=(0, 2, 3)) for x in scaled]
        counts = [x.shape[0] * x.shape[2] * x.shape[3] for x in scaled]
        sums = s if sums is None else [a + b for a, b in zip(sums, s)]
        sq = q if sq is None else [a + b for a, b in zip(sq, q)]
        count = counts if not count else [a + b for a, b in zip(count, counts)]
    means = [s / n for s, n in zip(sums, count)]
    stds = [torch.sqrt((q / n - m * m).clamp(min=0)) for q, n, m in zip(sq, count, means)]
    return [m.float() for m in means], [s.float() for s in stds]


@torch.no_grad()
def measure_code_range(model: AdvMSFC, batches: Iterator[list[torch.Tensor]], num_batches: int,
                       tail: float = 1e-4) -> tuple[float, float]:
    """A robust range of the code: its (tail, 1 - tail) quantiles over some batches."""
    model.eval()
    values = []
    for _ in range(num_batches):
        code = model.encode(next(batches)).flatten().float().cpu()
        if code.numel() > 2_000_000:
            code = code[torch.randperm(code.numel())[:2_000_000]]
        values.append(code)
    allv = torch.cat(values)
    if allv.numel() > 4_000_000:  # torch.quantile takes at most 2**24 values
        allv = allv[torch.randperm(allv.numel())[:4_000_000]]
    lo, hi = torch.quantile(allv, torch.tensor([tail, 1 - tail])).tolist()
    if hi <= lo:
        hi = lo + 1e-3
    return float(lo), float(hi)
