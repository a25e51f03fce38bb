"""``fcm-train``: train an advMSFC model for one split point with the Selective Learning Strategy."""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from fcm_common.cli.support import (
    FcmCommand,
    jde_cfg_option,
    print_table,
    progress,
    resolve_weights,
    stderr_console,
    weights_option,
)
from fcm_common.core.device import DEVICE_CHOICES, resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_source
from fcm_common.model.splits import SPLIT_NAMES
from fcm_common.msfc.checkpoint import MSFCCheckpoint, load_checkpoint, save_checkpoint
from fcm_common.msfc.networks import AdvMSFC, arch_for_split, count_parameters, scale_order
from fcm_common.msfc.qact import load_qact
from fcm_common.msfc.training import (
    FeatureCache,
    FrameStream,
    TrainSettings,
    error_by_channels,
    feature_batches,
    learning_rate,
    measure_code_range,
    measure_statistics,
    train_step,
)


def _validation(jde, sources, split, device, frames: int, batch: int):
    """A fixed, unaugmented set of batches for the error-by-channels report."""
    stream = iter(FrameStream(sources, (jde.input_width, jde.input_height), seed=12345, buffer=1, augment=False))
    gen = feature_batches(jde, stream, split, batch, device)
    return [next(gen) for _ in range(max(frames // batch, 1))]


@click.command(name="fcm-train", cls=FcmCommand)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="SOURCE...")
@click.option("--split", type=click.Choice(SPLIT_NAMES), required=True, help="JDE split point the model serves.")
@weights_option
@jde_cfg_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Checkpoint (default: advmsfc_<split>.pt).")
@click.option("--resume", is_flag=True, help="Continue training from --output (same split, JDE weights, architecture).")
@click.option("--steps", type=click.IntRange(min=1), default=20000, show_default=True, help="Total optimisation steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--task-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the prediction-head error term (0: reconstruction only).")
@click.option("--quant-noise/--no-quant-noise", default=False, show_default=True,
              help="Add +-1/2-step uniform noise to the code (simulates 10-bit quantisation).")
@click.option("--no-sls", is_flag=True, help="Train without the Selective Learning Strategy (for comparison only).")
@click.option("--stats-frames", type=click.IntRange(min=1), default=64, show_default=True,
              help="Frames used to measure feature statistics, the code range and the validation error.")
@click.option("--cache-features", is_flag=True, help="Compute JDE features once for --cache-frames frames and keep them in memory.")
@click.option("--cache-frames", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--cache-limit-gb", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--arch", "arch_path", type=click.Path(path_type=Path), help="Architecture TOML (default: cfg/advmsfc.toml).")
@click.option("--qact", "qact_path", type=click.Path(path_type=Path), help="QACT table to record (default: cfg/qact.toml).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate for image folders.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
def main(sources, split, weights, jde_cfg, output, resume, steps, batch_size, lr, task_weight, quant_noise, no_sls,
         stats_frames, cache_features, cache_frames, cache_limit_gb, checkpoint_every, arch_path, qact_path, fps, seed, device):
    """Train advMSFC (MSFF + MSFR) on SOURCE videos / MOTChallenge folders / image folders, JDE frozen."""
    from fcm_common.model.jde import load_jde

    opened = [open_source(p, fps=fps) for p in sources]
    output = output or Path(f"advmsfc_{split}.pt")
    dev = resolve_device(device)
    jde = load_jde(resolve_weights(weights), device=dev, cfg=jde_cfg)
    settings = TrainSettings(
        split=split, steps=steps, batch_size=batch_size, lr=lr, sls=not no_sls, quant_noise=quant_noise,
        task_weight=task_weight, stats_frames=stats_frames, seed=seed, checkpoint_every=checkpoint_every,
    )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    frames = iter(FrameStream(opened, (jde.input_width, jde.input_height), seed=seed, buffer=settings.shuffle_buffer))

    if resume:
        ckpt = load_checkpoint(output, split, jde.weights_id, dev)
        if ckpt.step >= steps:
            raise FcmError(f"{output} has already done {ckpt.step} steps; ask for more with --steps")
        model, qact = ckpt.model, ckpt.qact
        if ckpt.generator_state is not None:
            generator.set_state(ckpt.generator_state)
        start = ckpt.step
        stderr_console.print(f"resuming {output} at step {start}")
    else:
        if output.exists():
            raise FcmError(f"{output} exists: pass --resume to continue it, or another -o")
        model = AdvMSFC(arch_for_split(split, arch_path), scale_order(split)).to(dev)
        qact = load_qact(split, qact_path)
        start = 0

    if cache_features:
        with progress() as bar:
            bar.add_task("caching features", total=None)
            cache = FeatureCache.build(jde, [next(frames) for _ in range(cache_frames)], split, dev, int(cache_limit_gb * 2**30))
        batches = cache.batches(batch_size, generator)
    else:
        batches = feature_batches(jde, frames, split, batch_size, dev)

    if not resume:
        means, stds = measure_statistics(batches, model.order, max(stats_frames // batch_size, 1))
        model.set_statistics([m.to(dev) for m in means], [s.to(dev) for s in stds])
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=settings.weight_decay)
    if resume and ckpt.optimizer_state:
        optimizer.load_state_dict(ckpt.optimizer_state)
    heads_fn = (lambda feats: jde.forward_heads(feats, split)) if task_weight else None

    def checkpoint(step: int, code_range=None) -> None:
        model.eval()
        save_checkpoint(output, MSFCCheckpoint(
            split=split, model=model, jde_weights_id=jde.weights_id, qact=qact, code_range=code_range,
            training={**settings.to_dict(), "sources": [str(p) for p in sources], "steps_done": step},
            step=step, optimizer_state=optimizer.state_dict(), generator_state=generator.get_state(),
        ))

    losses: list[float] = []
    began = time.perf_counter()
    step = start
    try:
        with progress() as bar:
            task = bar.add_task("training", total=steps, completed=start)
            for step in range(start, steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, settings)
                losses.append(train_step(model, next(batches), optimizer, generator, settings, heads_fn))
                bar.update(task, advance=1, description=f"training (loss {sum(losses[-50:]) / len(losses[-50:]):.4f})")
                if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                    checkpoint(step + 1)
            step = steps
    except KeyboardInterrupt:
        checkpoint(step)
        raise FcmError(f"interrupted at step {step}; saved {output}, continue with --resume") from None

    validation = _validation(jde, opened, split, dev, stats_frames, batch_size)
    code_range = measure_code_range(model, iter(validation), len(validation))
    checkpoint(steps, code_range)
    elapsed = time.perf_counter() - began
    ks = sorted(set(qact.channels) | {model.fused_channels})
    errors: dict[int, float] = {}
    for feats in validation:
        for k, v in error_by_channels(model, feats, ks).items():
            errors[k] = errors.get(k, 0.0) + v / len(validation)
    print_table(
        f"fcm-train {split}: {steps - start} steps in {elapsed:.0f} s -> {output}",
        ["MSFF params", "MSFR params", "last loss", "code range"],
        [[count_parameters(model.msff), count_parameters(model.msfr), sum(losses[-50:]) / max(len(losses[-50:]), 1),
          f"[{code_range[0]:.3g}, {code_range[1]:.3g}]"]],
    )
    print_table("standardised reconstruction MSE by kept channels (validation frames)", [str(k) for k in ks], [[errors[k] for k in ks]])
