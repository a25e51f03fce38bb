"""Does the task term of fcm-train help? Two short trainings, with and without it, compared.

Same data, seed, steps and architecture; only ``task_weight`` differs. Reported on held-out frames,
with k code channels kept: the standardised reconstruction error, the error of JDE's head inputs
(detection logits, embedding cosine distance), and the agreement of JDE's detections (proposals
with confidence > 0.5) with those of the uncompressed features (F1 over proposal positions).

Defaults are sized for a CPU (random-weight JDE at a 320x192 input, a small architecture,
synthetic frames): they check the mechanics and show the trade-off's direction, not the effect on
a trained JDE. For real numbers pass --weights, --frames-from (your footage) and full widths.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.core.resources import DEFAULT_JDE_CFG, cfg_file
from fcm_common.data.sources import open_source
from fcm_common.data.synthetic import write_mot_sequence
from fcm_common.model.jde import load_jde
from fcm_common.model.splits import get_split
from fcm_common.msfc.networks import AdvMSFC, MSFCArch, arch_for_split, scale_order
from fcm_common.msfc.training import (
    FrameStream,
    TrainSettings,
    feature_batches,
    learning_rate,
    measure_statistics,
    reconstruction_loss,
    task_loss,
    train_step,
)


def _small_cfg(folder: Path, width: int, height: int) -> Path:
    text = cfg_file(DEFAULT_JDE_CFG).read_text().replace("width=1088", f"width={width}").replace("height=608", f"height={height}")
    path = folder / "jde_small.cfg"
    path.write_text(text)
    return path


def _train(jde, sources, split, arch, steps, batch, task_weight, seed):
    torch.manual_seed(seed)
    model = AdvMSFC(arch, scale_order(split))
    gen = torch.Generator().manual_seed(seed)
    batches = feature_batches(jde, iter(FrameStream(sources, (jde.input_width, jde.input_height), seed=seed)), split, batch, "cpu")
    means, stds = measure_statistics(batches, model.order, 4)
    model.set_statistics(means, stds)
    settings = TrainSettings(split=split, steps=steps, batch_size=batch, lr=1e-3, warmup=10, task_weight=task_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    heads = lambda feats: jde.forward_heads(feats, split)  # noqa: E731
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, settings)
        train_step(model, next(batches), opt, gen, settings, heads if task_weight else None)
    return model.eval()


@torch.no_grad()
def _evaluate(jde, model, split, val, keep):
    recon_err = head_err = 0.0
    tp = fp = fn = 0
    for feats in val:
        code = model.encode(feats)
        rec = model.decode(model.zero_fill(code[:, :keep], code.shape[1]))
        recon_err += float(reconstruction_loss(model.standardise(rec), model.standardise(feats))) / len(val)
        h_rec, h_orig = jde.forward_heads(rec, split), jde.forward_heads(feats, split)
        head_err += float(task_loss(h_rec, h_orig)) / len(val)
        p_rec, p_orig = jde.forward_part2(rec, split)[..., 4] > 0.5, jde.forward_part2(feats, split)[..., 4] > 0.5
        tp += int((p_rec & p_orig).sum())
        fp += int((p_rec & ~p_orig).sum())
        fn += int((~p_rec & p_orig).sum())
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return recon_err, head_err, f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="backbone")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--task-weight", type=float, default=1.0)
    parser.add_argument("--keep", default="64,536")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--frames-from", nargs="*", default=None)
    parser.add_argument("--full-size", action="store_true", help="1088x608 input and the cfg architecture")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = None if args.full_size else _small_cfg(tmp, 320, 192)
        jde = load_jde(args.weights, cfg=cfg)
        if args.frames_from:
            sources = [open_source(p) for p in args.frames_from]
        else:
            sources = [open_source(write_mot_sequence(tmp / f"S{i}", num_frames=16, width=320, height=180, seed=40 + i))
                       for i in range(3)]
        val_sources = [open_source(write_mot_sequence(tmp / "VAL", num_frames=8, width=320, height=180, seed=99))]
        sp = get_split(args.split)
        if args.full_size:
            arch = arch_for_split(args.split)
        else:
            order = scale_order(args.split)
            arch = MSFCArch(tuple(sp.shapes_1088x608[i][0] for i in order), sp.fused_channels, (64, 128), (32, 64, 128), 16)
        val = list(feature_batches(jde, iter(FrameStream(val_sources, (jde.input_width, jde.input_height), buffer=1, augment=False)),
                                   args.split, 2, "cpu") for _ in range(1))
        val_batches = [next(val[0]) for _ in range(4)]
        rows = []
        for weight in (0.0, args.task_weight):
            model = _train(jde, sources, args.split, arch, args.steps, args.batch, weight, seed=0)
            for keep in (int(k) for k in args.keep.split(",")):
                rows.append([weight, keep, *_evaluate(jde, model, args.split, val_batches, keep)])
    print_table(
        f"task term, {args.split}, {args.steps} steps x {args.batch} "
        f"({'given weights' if args.weights else 'random JDE'}, {'1088x608' if args.full_size else '320x192, small arch'})",
        ["task weight", "kept k", "recon MSE (std.)", "head error", "detection F1 vs uncompressed"],
        rows,
    )


if __name__ == "__main__":
    main()
