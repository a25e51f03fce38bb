"""Ablation of advMSFC at the backbone split (issue 28): from the linear code shipped on 2026-12-04 to
the detections code with its QACT table, one step at a time, through the real encoder and decoder.

Steps (each an RD curve on the sample at the study's advMSFC QPs, VVenC medium, low delay):

1. ``shipped``: the linear code of 2026-12-04 (256 channels, its QACT table): ``--old-model``, e.g.
   ``git show b888b3c:cfg/weights/advmsfc_576x320_backbone.pt > runs/old_backbone.pt``;
2. ``+ mask``: the same code with the candidate mask in front (issue 28's measurement: at every cell
   outside a 3x3 neighbourhood of an anchor with foreground probability above 0.2, the features are
   replaced by the model's mean feature vector, its standardisation mean);
3. ``+ refit``: the detections code (only the proposals JDE keeps, on the finest grid), every channel
   (5 box channels + 32 embedding components), each embedding component at 3.5 of its own
   standard deviations (the first precision tried);
4. ``+ precision``: one scale for every embedding component (3.5 standard deviations of the first, the
   shipped choice);
5. ``+ QACT``: the shipped model with its calibrated QACT table (the channels it keeps per QP).

Printed: per step the rate points, the BD-rate against the previous step (pchip over the common MOTA
range, efficient points) and the lowest rate that keeps 90 % of the uncompressed MOTA (interpolated in
log rate between efficient points). ``--markdown`` also prints the table for docs/results_notes.md.

    python benchmarks/backbone_ablation.py --old-model runs/old_backbone.pt --out runs/ablation
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.bitstream import parse
from fcm_common.coding.methods.advmsfc import AdvMSFCMethod
from fcm_common.data.sources import open_source
from fcm_common.evaluation.bdrate import BDRateError, bd_rate_range, efficient_points
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import get_split
from fcm_common.msfc.bundled import bundled_model_for
from fcm_common.msfc.checkpoint import MSFCCheckpoint, load_checkpoint, save_checkpoint
from fcm_common.msfc.detection_code import EMBEDDING_SPREAD
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"
QPS = (7, 12, 17, 22, 27, 32, 37)
MASK_THRESHOLD = 0.2


class MaskedLinear(AdvMSFCMethod):
    """The linear code with the candidate mask in front (encoder only: the decoder is the model's)."""

    def reduce(self, features):
        model = self.model
        out = []
        for x, pos in zip(features, range(3)):
            b, c, h, w = x.shape
            det = x[:, :24].reshape(b, 4, 6, h, w)
            p = torch.softmax(det[:, :, 4:6], dim=2)[:, :, 1].amax(1, keepdim=True)  # b,1,h,w
            keep = torch.nn.functional.max_pool2d((p > MASK_THRESHOLD).float(), 3, 1, 1) > 0
            scale = model.order.index(pos)
            mean = model._stats()[scale][0][None, :, None, None]
            out.append(torch.where(keep, x, mean.expand_as(x)))
        return super().reduce(out)


def per_component_scale(ckpt: MSFCCheckpoint, embeddings_sd: torch.Tensor) -> MSFCCheckpoint:
    """A copy of a detections model whose embedding components each get 3.5 of their own standard deviations."""
    model = load_checkpoint(ckpt.path).model
    with torch.no_grad():
        for end in (model.msff, model.msfr):
            end.embedding_scale.copy_(embeddings_sd.clamp(min=1e-6) * EMBEDDING_SPREAD)
    return MSFCCheckpoint(split=ckpt.split, model=model, jde_weights_id=ckpt.jde_weights_id, qact=ckpt.qact,
                          code_range=ckpt.code_range, training=ckpt.training)


def component_sd(ckpt: MSFCCheckpoint, jde, frames: int = 256) -> torch.Tensor:
    """Standard deviation of each embedding component over the kept proposals of the fit's PETS09 frames."""
    from fcm_common.model.preprocess import network_inputs
    from fcm_common.msfc.detection_code import kept_embeddings

    source = open_source(Path(__file__).resolve().parents[1] / "runs" / "calib" / "PETS09-S2L1-1-500", max_frames=frames)

    def batches():
        with torch.inference_mode():
            for batch, _ in network_inputs(source, jde.input_width, jde.input_height, 8):
                yield [f.float() for f in jde.forward_part1(batch, "backbone")]

    emb = kept_embeddings(ckpt.model, batches(), frames // 8)
    comps = (emb - ckpt.model.msff.embedding_mean) @ ckpt.model.msff.embedding_basis
    return comps.std(0)


def run_point(jde, method, qp: int, sample: Path, model_path: Path, workdir: Path) -> tuple[float, float, int]:
    split = get_split("backbone")
    settings = EncodeSettings(split=split, qp=qp, codec="vvenc", preset="medium",
                              range_spec=method.range_spec(None, split, False))
    data, report = encode_sequence(open_source(sample), jde, method, settings, torch.device("cpu"))
    header, _ = parse(data)
    decoded = decode_stream(header, data, len(data), jde, torch.device("cpu"), model_path=str(model_path))
    source = open_source(sample)
    mota = evaluate([SequenceResult(sample.name, source.gt_path, decoded.tracker.rows, source.seqinfo_path,
                                    mode="mot")]).iloc[0]["MOTA"]
    return report.kbps, float(mota), report.coded_channels[0]


def rate_for(rates: list[float], motas: list[float], target: float) -> float | None:
    """Lowest rate whose efficient curve reaches ``target`` MOTA (log-rate interpolation)."""
    idx = efficient_points(rates, motas)
    pts = sorted((rates[i], motas[i]) for i in idx)
    for (r0, m0), (r1, m1) in zip([(None, -math.inf)] + pts, pts):
        if m1 >= target:
            if r0 is None or m1 == m0:
                return r1
            t = (target - m0) / (m1 - m0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-model", type=Path, required=True, help="the linear backbone model of 2026-12-04")
    ap.add_argument("--model", type=Path, help="the detections model (default: the bundled one)")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--qps", default=",".join(map(str, QPS)))
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--uncompressed", type=float, default=0.8149, help="MOTA of fcm-track on the sample")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    args.out.mkdir(parents=True, exist_ok=True)
    qps = [int(q) for q in args.qps.split(",")]
    jde = load_network(choose_network(None), "cpu")
    new_path = args.model or bundled_model_for("backbone", jde.weights_id)
    new = load_checkpoint(new_path, "backbone", jde.weights_id)
    old = load_checkpoint(args.old_model, "backbone", jde.weights_id)
    per_comp_path = args.out / "detections_per_component_scale.pt"
    if not per_comp_path.exists():
        save_checkpoint(per_comp_path, per_component_scale(new, component_sd(new, jde)))
    per_comp = load_checkpoint(per_comp_path, "backbone", jde.weights_id)
    every = new.model.fused_channels
    steps = [
        ("shipped (linear code, QACT)", AdvMSFCMethod(old), args.old_model),
        ("+ mask", MaskedLinear(old), args.old_model),
        ("+ refit (detections code, every channel)", AdvMSFCMethod(per_comp, channels=every), per_comp_path),
        ("+ precision (one embedding scale)", AdvMSFCMethod(new, channels=every), new_path),
        ("+ QACT (shipped)", AdvMSFCMethod(new), new_path),
    ]
    cache = args.out / "points.json"
    points = json.loads(cache.read_text()) if cache.exists() else {}
    for name, method, path in steps:
        for qp in qps:
            key = f"{name}|{qp}"
            if key in points:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                points[key] = run_point(jde, method.at_qp(qp), qp, args.sample, path, Path(tmp))
            cache.write_text(json.dumps(points, indent=1))
            print(name, qp, points[key], flush=True)

    target = 0.9 * args.uncompressed
    rows, previous = [], None
    for name, _, _ in steps:
        pts = [points[f"{name}|{qp}"] for qp in qps]
        rates, motas = [p[0] for p in pts], [p[1] for p in pts]
        kept = efficient_points(rates, motas)  # as make rd: dominated points are left out of the BD-rate
        rates, motas = [rates[i] for i in kept], [motas[i] for i in kept]
        bd = "-"
        if previous is not None:
            try:
                bd = bd_rate_range(previous[0], previous[1], rates, motas).describe()
            except BDRateError as exc:
                bd = f"n/a ({exc})"
        at90 = rate_for(rates, motas, target)
        curve = ", ".join(f"QP{q} {r:.1f}k/{m:.3f}/{c}ch" for q, (r, m, c) in zip(qps, pts))
        rows.append([name, bd, f"{at90:.1f}" if at90 else "never", curve])
        previous = (rates, motas)
    headers = ["step", "BD-rate vs previous step", f"kbps at 90 % of uncompressed (MOTA {target:.3f})", "rate points"]
    print_table("advMSFC backbone ablation, " + args.sample.name, headers, rows)
    if args.markdown:
        print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
        for r in rows:
            print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
