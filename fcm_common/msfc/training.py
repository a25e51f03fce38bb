"""Training advMSFC with the Selective Learning Strategy (SLS), JDE frozen.

SLS: at every step, for every sample, draw n uniformly from 0..C and zero the code's channels n..C-1
before MSFR. MSFR thus learns to reconstruct from any prefix of the code, and MSFF learns to put
what matters most in the first channels (nested dropout; the linear limit is PCA ordering). At
coding time QACT keeps the first k channels and the decoder zero-fills the rest, which is exactly
the situation SLS trained for.

Loss: the reconstruction error of the three split tensors, each standardised per channel (so that
no scale or channel dominates), averaged over the scales (``feature_weight``). Optional task term
(``task_weight``): the error of JDE's prediction-head inputs computed from the reconstruction
(layers 84/99/114; for ``backbone`` these are the split tensors themselves), with the 24 detection
channels weighted 4x and 1 - cosine on the embeddings. Optional output term (``output_weight``,
:func:`output_loss`): what JDE's decoder and the tracker read of those heads, against what the
uncompressed network gives: foreground probabilities, box deltas of the anchors the network calls
foreground, embedding directions there.

Through the codec (``codec_qps``): the code goes through :func:`through_codec`, a 4x4-DCT
deadzone quantiser at a random QP (its step fitted to VVenC's error on real codes,
``benchmarks/codec_error.py``), with straight-through gradients: what MSFR sees in training is
close to what it sees after VVC. (Gaussian noise of VVC's rms error was tried first: it did not
make QP 27-32 any better, because VVC removes small coefficients rather than adding noise.)

A linear model (``fusion = linear``) starts from the principal components of the stacked
standardised features (:func:`init_linear_code`): the code is then the PCA code, channel i scaled
to (var_i/var_0)^``code_decay`` of the first one's spread.

Data: any pedestrian frames (videos, MOTChallenge folders, image folders), letterboxed like JDE's
input, with horizontal flips and, half of the time, a random half-size crop first (a zoom that
makes people larger). Features are computed on the fly by JDE part 1, or once for a fixed set of
frames and kept memory-mapped (:class:`FeatureStore`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fcm_common.core.errors import FcmError
from fcm_common.data.sources import FrameSource
from fcm_common.model.preprocess import letterbox, to_tensor
from fcm_common.msfc.networks import AdvMSFC, LinearFusion

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
    feature_weight: float = 1.0
    output_weight: float = 0.0
    codec_qps: tuple[int, int] | None = None  # train through the codec proxy at QPs in this range
    crop: tuple[int, int] | None = None  # train on crops of this many coarsest cells (H, W)
    code_decay: float = 0.25  # a linear code's channel scales at the start (init_linear_code)
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


PROXY_BLOCK = 4
PROXY_STEP_GAIN = 6.0  # fitted: the proxy's rms error then matches VVenC medium's on real codes (QP 22..32)
PROXY_ROUNDING = 1 / 3  # a deadzone quantiser's rounding offset (small coefficients become zero, as in VVC)


def _dct_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.float()


def vvc_step(qp: torch.Tensor | float) -> torch.Tensor | float:
    """The proxy's quantisation step, in 10-bit levels, at a QP (VVC's step doubles every 6 QPs)."""
    return PROXY_STEP_GAIN * 2 ** ((qp - 4) / 6)


def through_codec(code: torch.Tensor, generator: torch.Generator, qps: tuple[int, int]) -> torch.Tensor:
    """A differentiable stand-in for VVC at a random QP in ``qps`` per sample: the code is quantised
    to 10 bits (min-max per sample), cut into 4x4 blocks per channel, DCT-transformed, its
    coefficients quantised with a deadzone at the QP's step (small ones vanish, as VVC's do: what
    an additive noise model misses) and transformed back; gradients pass straight through."""
    b, c, h, w = code.shape
    flat = code.detach().flatten(1)
    lo = flat.min(1).values[:, None, None, None]
    scale = ((flat.max(1).values - flat.min(1).values).clamp(min=1e-6) / 1023)[:, None, None, None]
    levels = (code - lo) / scale - 512
    n = PROXY_BLOCK
    padded = F.pad(levels, (0, (-w) % n, 0, (-h) % n), mode="replicate")
    hh, ww = padded.shape[2:]
    blocks = padded.reshape(b, c, hh // n, n, ww // n, n).permute(0, 1, 2, 4, 3, 5)
    d = _dct_matrix(n).to(code.device)
    coeffs = d @ blocks @ d.T
    qp = qps[0] + torch.rand(b, generator=generator) * (qps[1] - qps[0])
    step = vvc_step(qp).to(code.device).view(b, 1, 1, 1, 1, 1)
    quantised = torch.sign(coeffs) * torch.floor(coeffs.abs() / step + PROXY_ROUNDING) * step
    coeffs = coeffs + (quantised - coeffs).detach()
    back = (d.T @ coeffs @ d).permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh, ww)[:, :, :h, :w]
    levels_q = torch.round(back.detach() + 512).clamp(0, 1023) - 512
    back = back + (levels_q - back).detach()
    return (back + 512) * scale + lo


FG_SURE = 0.5  # the tracker keeps detections above this foreground probability
FG_NEAR = 0.05  # anchors above this (either side) are where a detection can appear or vanish
NEAR_WEIGHT = 20.0


def output_loss(heads_recon: Sequence[torch.Tensor], heads_exact: Sequence[torch.Tensor],
                box_weight: float = 5.0, embedding_weight: float = 1.0) -> torch.Tensor:
    """What JDE's decoder and the tracker read, reconstructed against uncompressed, per head:

    - the foreground probability of every anchor (softmax of its two logits): Bernoulli KL
      divergence from the uncompressed one, weighted ``NEAR_WEIGHT`` x where either is above
      ``FG_NEAR`` (where a detection can appear or vanish; elsewhere both are near zero);
    - the box deltas (dx, dy, dw, dh) of the anchors the uncompressed network calls foreground: L1;
    - the embedding direction of the cells holding such an anchor: 1 - cosine.
    """
    total = 0.0
    for r, e in zip(heads_recon, heads_exact):
        b, _, h, w = e.shape
        dr = r[:, :24].reshape(b, 4, 6, h, w)
        de = e[:, :24].reshape(b, 4, 6, h, w)
        lr = dr[:, :, 5] - dr[:, :, 4]
        le = de[:, :, 5] - de[:, :, 4]
        pe = torch.sigmoid(le)
        kl = (F.binary_cross_entropy_with_logits(lr, pe, reduction="none")
              - F.binary_cross_entropy_with_logits(le, pe, reduction="none"))
        near = (pe > FG_NEAR) | (torch.sigmoid(lr.detach()) > FG_NEAR)
        weight = 1.0 + NEAR_WEIGHT * near.float()
        total = total + (weight * kl).sum() / weight.sum()
        sure = pe > FG_SURE
        if sure.any():
            box = (dr[:, :, :4] - de[:, :, :4]).abs().permute(0, 1, 3, 4, 2)[sure].mean()
            cells = sure.any(1)
            cos = F.cosine_similarity(r[:, 24:], e[:, 24:], dim=1)[cells]
            total = total + box_weight * box + embedding_weight * (1 - cos).mean()
    return total / len(heads_exact)


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
    heads_exact: Sequence[torch.Tensor] | None = None,
) -> float:
    """One optimisation step on a batch of split tensors (split order); ``heads_exact``: the
    uncompressed network's head inputs for them, if cached (else computed with ``heads_fn``)."""
    model.train()
    target = model.standardise(features)
    code = model.msff(*target)
    if settings.sls:
        code = sls_mask(code, generator)
    if settings.codec_qps:
        code = through_codec(code, generator, tuple(settings.codec_qps))
    elif settings.quant_noise:
        code = add_quantisation_noise(code, generator)
    recon = model.msfr(code)
    loss = settings.feature_weight * reconstruction_loss(recon, target)
    if (settings.task_weight or settings.output_weight) and heads_fn is not None:
        if heads_exact is None:
            with torch.no_grad():
                heads_exact = heads_fn(features)
        heads_recon = heads_fn(model.destandardise(recon))
        if settings.task_weight:
            loss = loss + settings.task_weight * task_loss(heads_recon, heads_exact)
        if settings.output_weight:
            loss = loss + settings.output_weight * output_loss(heads_recon, heads_exact)
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


@torch.no_grad()
def init_linear_code(model: AdvMSFC, batches: Iterator, num_batches: int, decay: float = 0.25) -> torch.Tensor:
    """Set a linear model's projections to the principal components of the stacked standardised
    features of ``num_batches`` batches: the code is the first C components in decreasing variance
    (the order SLS and QACT want), component i scaled to a standard deviation of
    ``(var_i / var_0) ** decay``; the back-projection is their transpose, scaled back.

    ``decay`` = 0 whitens (every channel as loud: the tail channels cost as much rate as the first);
    0.5 keeps the components' own scales (the tail falls below VVC's quantisation step and costs
    nothing, but loses its precision). Measured on the backbone split (docs/results_notes.md): 0.25
    codes the same MOTA at about half the rate of 0. Returns the share of the variance the
    components hold, per component count (cumulative)."""
    total = mean_sum = None
    count = 0
    for _ in range(num_batches):
        z = LinearFusion.stack(*model.standardise(next(batches))).double()
        x = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        total = x.T @ x if total is None else total + x.T @ x
        mean_sum = x.sum(0) if mean_sum is None else mean_sum + x.sum(0)
        count += x.shape[0]
    mean = mean_sum / count
    cov = total / count - torch.outer(mean, mean)
    evals, evecs = torch.linalg.eigh(cov)
    order = evals.argsort(descending=True)
    evals, evecs = evals[order].clamp(min=1e-8), evecs[:, order]
    c = model.fused_channels
    basis = evecs[:, :c]
    scale = evals[:c].sqrt() / (evals[:c] / evals[0]) ** decay
    project, unproject = model.msff.project, model.msfr.unproject
    project.weight.copy_((basis / scale).T.float()[:, :, None, None])
    project.bias.copy_((-(mean @ basis) / scale).float())
    unproject.weight.copy_((basis * scale).float()[:, :, None, None])
    unproject.bias.copy_(mean.float())
    return (evals.cumsum(0) / evals.sum()).float()


class FeatureStore:
    """Split tensors (and, for splits whose heads are not the split tensors, the uncompressed
    network's head inputs) of a fixed set of frames, float16, memory-mapped from a folder: built
    once, reused by every run and stage that trains on the same frames with the same JDE."""

    META = "features.json"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / self.META).read_text())
        self.features = np.load(self.folder / "features.npy", mmap_mode="r")
        heads = self.folder / "heads.npy"
        self.heads = np.load(heads, mmap_mode="r") if heads.is_file() else None

    @staticmethod
    def matches(folder: Path, key: dict) -> bool:
        meta = Path(folder) / FeatureStore.META
        return meta.is_file() and json.loads(meta.read_text()).get("key") == key

    @classmethod
    def build(cls, folder: Path, key: dict, jde, frames: Iterator[torch.Tensor], count: int, split: str, device,
              with_heads: bool, progress: Callable[[int], None] | None = None) -> FeatureStore:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("features.npy", "heads.npy", cls.META):
            (folder / name).unlink(missing_ok=True)
        shapes = [list(s) for s in jde.split_shapes(split)]
        head_shapes = None
        sizes = [math.prod(s) for s in shapes]
        feats = np.lib.format.open_memmap(folder / "features.npy", "w+", np.float16, (count, sum(sizes)))
        heads = None
        with torch.no_grad():
            for i in range(count):
                x = jde.forward_part1(next(frames)[None].to(device), split)
                feats[i] = torch.cat([t.flatten() for t in x]).to("cpu", torch.float16).numpy()
                if with_heads:
                    h = jde.forward_heads(x, split)
                    if heads is None:
                        head_shapes = [list(t.shape[1:]) for t in h]
                        heads = np.lib.format.open_memmap(folder / "heads.npy", "w+", np.float16,
                                                          (count, sum(math.prod(s) for s in head_shapes)))
                    heads[i] = torch.cat([t.flatten() for t in h]).to("cpu", torch.float16).numpy()
                if progress:
                    progress(1)
        feats.flush()
        if heads is not None:
            heads.flush()
        meta = {"key": key, "frames": count, "shapes": shapes, "head_shapes": head_shapes}
        (folder / cls.META).write_text(json.dumps(meta, indent=1))
        return cls(folder)

    @staticmethod
    def _unflatten(rows: np.ndarray, shapes: list[list[int]]) -> list[torch.Tensor]:
        out, start = [], 0
        for s in shapes:
            n = math.prod(s)
            out.append(torch.from_numpy(np.ascontiguousarray(rows[:, start:start + n])).reshape(len(rows), *s))
            start += n
        return out

    def batches(self, batch_size: int, generator: torch.Generator, device, crop: tuple[int, int] | None = None,
                coarsest: int = 2) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor] | None]]:
        """Random batches of (split tensors, head inputs or None) as float32 on ``device``; with
        ``crop`` = (H, W) in cells of the coarsest grid, one random window of that size per batch
        (every tensor cropped at its own resolution)."""
        n = self.meta["frames"]
        shapes = self.meta["shapes"]
        while True:
            idx = sorted(torch.randint(0, n, (batch_size,), generator=generator).tolist())
            feats = self._unflatten(self.features[idx], shapes)
            heads = self._unflatten(self.heads[idx], self.meta["head_shapes"]) if self.heads is not None else None
            if crop is not None:
                gh, gw = shapes[coarsest][1:]
                ch, cw = min(crop[0], gh), min(crop[1], gw)
                y = int(torch.randint(0, gh - ch + 1, (1,), generator=generator))
                x = int(torch.randint(0, gw - cw + 1, (1,), generator=generator))

                def cut(t, y=y, x=x, ch=ch, cw=cw, gh=gh):
                    f = t.shape[2] // gh
                    return t[:, :, y * f:(y + ch) * f, x * f:(x + cw) * f]
                feats = [cut(t) for t in feats]
                heads = [cut(t) for t in heads] if heads is not None else None
            yield ([t.to(device, torch.float32) for t in feats],
                   [t.to(device, torch.float32) for t in heads] if heads is not None else None)
