"""``fcm-train``: train an advMSFC model for one split point with the Selective Learning Strategy."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from fcm_common.cli.options import split_option
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    progress,
    stderr_console,
    two_sizes,
    weights_option,
)
from fcm_common.core.device import resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_range
from fcm_common.msfc.checkpoint import export_for_inference, load_checkpoint
from fcm_common.msfc.networks import count_parameters
from fcm_common.msfc.trainer import TrainListener, TrainRun, train
from fcm_common.msfc.training import TrainSettings


class _Bars(TrainListener):
    """Progress bars on stderr."""

    def __init__(self, output: Path):
        self.output = output
        self.bar = self.task = None

    def resumed(self, step: int) -> None:
        stderr_console.print(f"resuming {self.output} at step {step}")

    @contextlib.contextmanager
    def caching(self, frames: int):
        with progress() as bar:
            task = bar.add_task("computing the features to train on", total=frames)
            yield lambda n: bar.advance(task, n)

    def code_initialised(self, explained: float) -> None:
        stderr_console.print(f"code set to the principal components: {explained:.2%} of the variance")

    @contextlib.contextmanager
    def training(self, start: int, steps: int):
        with progress() as self.bar:
            self.task = self.bar.add_task("training", total=steps, completed=start)
            yield

    def step(self, loss: float) -> None:
        self.bar.update(self.task, advance=1, description=f"training (loss {loss:.4f})")


def _qp_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise FcmError(f"--codec-qp must be MIN-MAX, got '{text}'") from None
    if not 0 <= lo <= hi <= 63:
        raise FcmError(f"--codec-qp must be within 0-63 with MIN <= MAX, got '{text}'")
    return lo, hi


def _crop(text: str | None, cached: bool, split) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = two_sizes(text, "HxW", "9x16 cells of the coarsest grid")
    except click.BadParameter as exc:
        raise FcmError(f"--crop: {exc.message}") from None
    if not cached or split.name != "backbone":
        raise FcmError("--crop needs --cache-features and the backbone split (whose split tensors are the head "
                       "inputs: a crop of the other splits changes what NN part 2 computes at its borders)")
    return h, w


@click.command(name="fcm-train", cls=FcmCommand)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE[:FIRST-LAST]...")
@split_option(required=True, help="JDE split point the model serves.")
@weights_option
@jde_cfg_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Checkpoint (default: advmsfc_<split>.pt).")
@click.option("--resume", is_flag=True, help="Continue training from --output (same split, JDE weights, architecture).")
@click.option("--steps", type=click.IntRange(min=0), default=20000, show_default=True,
              help="Total optimisation steps (0: a linear code's PCA start as it is, no optimisation).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Training samples per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Peak learning rate (AdamW, warm-up and cosine decay).")
@click.option("--task-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the prediction-head error term (0: reconstruction only).")
@click.option("--output-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of the output term: foreground probabilities, box deltas and embedding directions "
                   "JDE's decoder and the tracker read, against the uncompressed network's.")
@click.option("--feature-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the standardised reconstruction error of the split tensors.")
@click.option("--codec-qp", "codec_qp", type=str, default=None,
              help="Train through a codec proxy (4x4 DCT, deadzone quantisation at VVC's step) at QPs drawn in "
                   "MIN-MAX, e.g. 7-37.")
@click.option("--code-decay", type=click.FloatRange(0, 0.5), default=0.25, show_default=True,
              help="Linear code: channel i starts at a standard deviation of (var_i/var_0)^DECAY (0 whitens).")
@click.option("--crop", type=str, default=None, help="Train on HxW windows of the coarsest grid (cached features, backbone).")
@click.option("--quant-noise/--no-quant-noise", default=False, show_default=True,
              help="Add +-1/2-step uniform noise to the code (simulates 10-bit quantisation).")
@click.option("--no-sls", is_flag=True, help="Train without the Selective Learning Strategy (for comparison only).")
@click.option("--stats-frames", type=click.IntRange(min=1), default=64, show_default=True,
              help="Frames used to measure feature statistics, the code range and the validation error.")
@click.option("--pca-frames", type=click.IntRange(min=1), default=256, show_default=True,
              help="Frames whose features start a linear code (its principal components).")
@click.option("--cache-features", is_flag=True,
              help="Compute JDE features (and head inputs) once for --cache-frames frames, float16, memory-mapped in "
                   "--cache-dir, and train on them (a later run with the same frames and JDE reuses them).")
@click.option("--cache-frames", type=click.IntRange(min=1), default=512, show_default=True,
              help="Frames whose features --cache-features keeps.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Folder of the cached features (default: OUTPUT.features/).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="Steps between checkpoints (--resume continues from the last one).")
@click.option("--arch", "arch_path", type=click.Path(path_type=Path), help="Architecture TOML (default: cfg/advmsfc.toml).")
@click.option("--qact", "qact_path", type=click.Path(path_type=Path), help="QACT table to record (default: cfg/qact.toml).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate for image folders.")
@click.option("--export", "export_path", type=click.Path(path_type=Path),
              help="When training is done, also write the inference-only model (float16 weights) here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (sampling, SLS, initial weights).")
@device_option
def main(sources, split, weights, jde_cfg, output, resume, steps, batch_size, lr, task_weight, output_weight, feature_weight,
         codec_qp, code_decay, crop, quant_noise, no_sls, stats_frames, pca_frames, cache_features, cache_frames, cache_dir,
         checkpoint_every, arch_path, qact_path, fps, export_path,
         seed, device):
    """Train advMSFC (MSFF + MSFR) on SOURCE videos / MOTChallenge folders / image folders (frames FIRST..LAST
    only, if given), JDE frozen."""
    opened = [open_range(p, fps=fps) for p in sources]
    output = output or Path(f"advmsfc_{split.name}.pt")
    dev = resolve_device(device)
    jde = open_network(weights, jde_cfg, dev)
    settings = TrainSettings(
        split=split.name, steps=steps, batch_size=batch_size, lr=lr, sls=not no_sls, quant_noise=quant_noise,
        task_weight=task_weight, output_weight=output_weight, feature_weight=feature_weight, codec_qps=_qp_range(codec_qp), code_decay=code_decay,
        crop=_crop(crop, cache_features, split), stats_frames=stats_frames, seed=seed, checkpoint_every=checkpoint_every,
    )
    run = TrainRun(opened, output, [str(p) for p in sources], resume, arch_path, qact_path,
                   cache_frames if cache_features else None, cache_dir, pca_frames=pca_frames)
    result = train(jde, split, settings, run, dev, _Bars(output))

    ks = sorted(result.errors)
    model, (lo, hi) = result.model, result.code_range
    print_table(
        f"fcm-train {split.name}: {result.steps - result.start} steps in {result.seconds:.0f} s -> {output}",
        ["MSFF params", "MSFR params", "last loss", "code range"],
        [[count_parameters(model.msff), count_parameters(model.msfr), result.last_loss if result.steps > result.start else "-", f"[{lo:.3g}, {hi:.3g}]"]],
    )
    measure = ("embedding error (1 - cosine) of the kept proposals" if model.arch.fusion == "detections"
               else "standardised reconstruction MSE")
    print_table(f"{measure} by kept channels (validation frames)", [str(k) for k in ks],
                [[result.errors[k] for k in ks]])
    if export_path is not None:
        size = export_for_inference(load_checkpoint(output), export_path)
        stderr_console.print(f"inference model: {export_path} ({size / 2**20:.1f} MiB)")
