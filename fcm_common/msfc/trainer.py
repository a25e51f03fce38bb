"""An advMSFC training run, start to end: set-up (new or resumed), the SLS loop, the final measures.

The steps (SLS, loss, data) are in :mod:`fcm_common.msfc.training`; this module runs them as
``fcm-train`` does, so that the command only parses options and prints. A run checkpoints every
``checkpoint_every`` steps and on Ctrl-C; ``resume`` continues one (same split, JDE weights and
architecture) with its optimiser and random-generator state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from fcm_common.core.errors import FcmError
from fcm_common.data.sources import FrameSource
from fcm_common.model.splits import SplitPoint
from fcm_common.msfc.checkpoint import MSFCCheckpoint, load_checkpoint, save_checkpoint
from fcm_common.msfc.detection_code import (
    BOX_CHANNELS,
    CODE_RANGE,
    embedding_error_by_channels,
    fit_embedding_code,
    kept_embeddings,
    prediction_anchors,
)
from fcm_common.msfc.networks import AdvMSFC, MSFCArch, arch_for_split, scale_order
from fcm_common.msfc.qact import QACTTable, load_qact
from fcm_common.msfc.training import (
    FeatureStore,
    FrameStream,
    TrainSettings,
    error_by_channels,
    feature_batches,
    init_linear_code,
    learning_rate,
    measure_code_range,
    measure_statistics,
    train_step,
)

LOSS_WINDOW = 50  # steps the reported loss is averaged over


@dataclass
class TrainRun:
    """What a run works on besides its settings."""

    sources: Sequence[FrameSource]
    output: Path
    source_names: list[str] = field(default_factory=list)  # recorded in the checkpoint
    resume: bool = False
    arch_path: Path | None = None  # architecture TOML (default cfg/advmsfc.toml)
    qact_path: Path | None = None  # QACT table to record (default cfg/qact.toml)
    cache_frames: int | None = None  # train on the features of this many frames, computed once
    cache_dir: Path | None = None  # where they are kept (memory-mapped; default OUTPUT.features/)
    pca_frames: int = 256  # frames whose features initialise a linear model's code


@dataclass
class TrainResult:
    model: AdvMSFC
    qact: QACTTable
    start: int  # step the run started from (0, or where a resumed checkpoint was)
    steps: int
    seconds: float
    last_loss: float  # mean over the last LOSS_WINDOW steps
    code_range: tuple[float, float]
    errors: dict[int, float]  # standardised reconstruction MSE on validation frames by kept channels


class TrainListener:
    """What a front end hears about a run (``fcm-train`` draws progress bars); by default, nothing."""

    def resumed(self, step: int) -> None: ...

    def caching(self, frames: int) -> contextlib.AbstractContextManager:
        """While features of ``frames`` frames are computed; the context's value is called per frame."""
        return contextlib.nullcontext(lambda n: None)

    def code_initialised(self, explained: float) -> None:
        """A linear code was set to the principal components; ``explained``: their share of the variance."""

    def training(self, start: int, steps: int) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def step(self, loss: float) -> None:
        """After each step, with the mean loss of the recent steps."""


def _validation(jde, sources, split, device, frames: int, batch: int):
    """A fixed, unaugmented set of batches for the code range and the error-by-channels report."""
    stream = iter(FrameStream(sources, (jde.input_width, jde.input_height), seed=12345, buffer=1, augment=False))
    gen = feature_batches(jde, stream, split, batch, device)
    return [next(gen) for _ in range(max(frames // batch, 1))]


def _recent(losses: list[float]) -> float:
    window = losses[-LOSS_WINDOW:]
    return sum(window) / max(len(window), 1)


def train(jde, split: SplitPoint, settings: TrainSettings, run: TrainRun, device,
          listener: TrainListener | None = None) -> TrainResult:
    """Train (or continue training) an advMSFC model for ``split`` and write its checkpoint to ``run.output``."""
    listener = listener or TrainListener()
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    frames = iter(FrameStream(run.sources, (jde.input_width, jde.input_height), seed=settings.seed,
                              buffer=settings.shuffle_buffer))

    # set-up: a new model, or the checkpoint to continue
    ckpt = None
    if run.resume:
        ckpt = load_checkpoint(run.output, split, jde.weights_id, device)
        if ckpt.step >= settings.steps:
            raise FcmError(f"{run.output} has already done {ckpt.step} steps; ask for more with --steps")
        model, qact, start = ckpt.model, ckpt.qact, ckpt.step
        if ckpt.generator_state is not None:
            generator.set_state(ckpt.generator_state)
        listener.resumed(start)
    else:
        if run.output.exists():
            raise FcmError(f"{run.output} exists: pass --resume to continue it, or another -o")
        arch = arch_for_split(split, run.arch_path, jde.split_shapes(split))
        if arch.fusion == "detections":
            arch = _detections_arch(arch, jde, split, settings)
        elif settings.steps == 0 and arch.fusion != "linear":
            raise FcmError(f"--steps 0 keeps a linear code's PCA start; the {split.name} architecture's fusion is "
                           f"'{arch.fusion}', which starts random: ask for steps")
        model = AdvMSFC(arch, scale_order(split)).to(device)
        qact = load_qact(split, run.qact_path, arch.fused_channels)
        start = 0

    heads_are_features = jde.heads_are_split(split)
    if run.cache_frames:
        folder = run.cache_dir or run.output.with_suffix(".features")
        key = {"jde": jde.weights_id, "split": split.name, "sources": list(run.source_names), "frames": run.cache_frames,
               "seed": settings.seed, "input": [jde.input_width, jde.input_height]}
        if not FeatureStore.matches(folder, key):
            with listener.caching(run.cache_frames) as advance:
                FeatureStore.build(folder, key, jde, frames, run.cache_frames, split.name, device,
                                   with_heads=not heads_are_features, progress=advance)
        store = FeatureStore(folder)
        plain = (f for f, _ in store.batches(settings.batch_size, generator, device))
        batches = store.batches(settings.batch_size, generator, device, settings.crop, split.coarsest)
    else:
        plain = feature_batches(jde, frames, split, settings.batch_size, device)
        batches = ((f, None) for f in plain)

    if model.arch.fusion == "detections":
        return _fit_detections(jde, split, settings, run, device, model, qact, plain, listener)
    if ckpt is None:
        means, stds = measure_statistics(plain, model.order, max(settings.stats_frames // settings.batch_size, 1))
        model.set_statistics([m.to(device) for m in means], [s.to(device) for s in stds])
        if model.arch.fusion == "linear":
            explained = init_linear_code(model, plain, max(run.pca_frames // settings.batch_size, 1), settings.code_decay)
            listener.code_initialised(float(explained[model.fused_channels - 1]))
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if ckpt is not None and ckpt.optimizer_state:
        optimizer.load_state_dict(ckpt.optimizer_state)
    needs_heads = settings.task_weight or settings.output_weight
    heads_fn = None
    if needs_heads:
        heads_fn = (lambda feats: list(feats)) if heads_are_features else (lambda feats: jde.forward_heads(feats, split))

    def checkpoint(step: int, code_range=None) -> None:
        model.eval()
        save_checkpoint(run.output, MSFCCheckpoint(
            split=split.name, model=model, jde_weights_id=jde.weights_id, qact=qact, code_range=code_range,
            training={**settings.to_dict(), "sources": list(run.source_names), "steps_done": step},
            step=step, optimizer_state=optimizer.state_dict(), generator_state=generator.get_state(),
        ))

    # the loop
    losses: list[float] = []
    began = time.perf_counter()
    step = start
    try:
        with listener.training(start, settings.steps):
            for step in range(start, settings.steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, settings)
                feats, heads = next(batches)
                losses.append(train_step(model, feats, optimizer, generator, settings, heads_fn, heads))
                listener.step(_recent(losses))
                if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                    checkpoint(step + 1)
            step = settings.steps
    except KeyboardInterrupt:
        checkpoint(step)
        raise FcmError(f"interrupted at step {step}; saved {run.output}, continue with --resume") from None

    # the code range (the quantisation range) and the error by kept channels, on validation frames
    validation = _validation(jde, run.sources, split, device, settings.stats_frames, settings.batch_size)
    code_range = measure_code_range(model, iter(validation), len(validation))
    checkpoint(settings.steps, code_range)
    seconds = time.perf_counter() - began
    errors: dict[int, float] = {}
    for feats in validation:
        for k, v in error_by_channels(model, feats, sorted(set(qact.channels) | {model.fused_channels})).items():
            errors[k] = errors.get(k, 0.0) + v / len(validation)
    return TrainResult(model, qact, start, settings.steps, seconds, _recent(losses), code_range, errors)


def _detections_arch(arch: MSFCArch, jde, split: SplitPoint, settings: TrainSettings) -> MSFCArch:
    """The detections code for this network: its prediction layers' anchors; it is fitted, not trained."""
    if not jde.heads_are_split(split):
        raise FcmError(f"the detections code needs the prediction layers' inputs (the backbone split), not {split.name}")
    if settings.steps != 0:
        raise FcmError("the detections code is fitted (the embedding's principal components), not trained: use --steps 0")
    anchors, strides = prediction_anchors(jde.prediction_layers())
    return replace(arch, anchors=anchors, strides=strides)


def _fit_detections(jde, split: SplitPoint, settings: TrainSettings, run: TrainRun, device, model: AdvMSFC,
                    qact: QACTTable, batches, listener: TrainListener) -> TrainResult:
    """Fit a detections code: the principal components of the kept proposals' embeddings over
    ``run.pca_frames`` frames; report the embedding error by kept channels on validation frames."""
    began = time.perf_counter()
    embeddings = kept_embeddings(model, batches, max(run.pca_frames // settings.batch_size, 1))
    components = model.fused_channels - BOX_CHANNELS
    if len(embeddings) < max(components, 1):
        raise FcmError(f"{run.pca_frames} frames gave {len(embeddings)} proposals that JDE keeps; fitting "
                       f"{components} embedding components needs at least that many: fit on more frames "
                       "(--pca-frames) or on footage with people")
    explained = fit_embedding_code(model.msff, model.msfr, embeddings)
    listener.code_initialised(float(explained[model.fused_channels - BOX_CHANNELS - 1]))
    validation = _validation(jde, run.sources, split, device, settings.stats_frames, settings.batch_size)
    held_out = kept_embeddings(model, iter(validation), len(validation))
    ks = sorted(set(qact.channels) | {model.fused_channels})
    errors = embedding_error_by_channels(model.msff, held_out, ks)
    save_checkpoint(run.output, MSFCCheckpoint(
        split=split.name, model=model.eval(), jde_weights_id=jde.weights_id, qact=qact, code_range=CODE_RANGE,
        training={**settings.to_dict(), "sources": list(run.source_names), "steps_done": 0,
                  "pca_frames": run.pca_frames, "proposals_fitted": len(embeddings)},
    ))
    return TrainResult(model, qact, 0, 0, time.perf_counter() - began, float("nan"), CODE_RANGE, errors)
