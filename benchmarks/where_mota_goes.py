"""Where the tracking accuracy goes: swap parts of the split features between the exact ones and a
reconstruction, run NN part 2 and the tracker, and score each mix (issue: advMSFC that keeps the
tracking).

The reconstruction is advMSFC without coding (``--model``, default the bundled model of the split,
``--channels K`` of its code kept), or whatever a bitstream decodes to (``--stream X.bin``: the
anchor at some QP, advMSFC through VVC, ...; its first frames must be the input's).

Parts swapped:
- each scale's split tensor (finest, middle, coarsest);
- the prediction-head inputs, computed by JDE from the (mixed) split tensors, in three channel
  groups: the confidence logits (2 per anchor), the box deltas (4 per anchor) and the embedding.
For the backbone split the split tensors are the head inputs themselves.

Each row is MOTA (MOTChallenge rules, motmetrics) and IDF1 on the input's ground truth, plus the
count of anchors that the exact features call foreground (probability > 0.5) and the mix does not.

    python benchmarks/where_mota_goes.py --split backbone --frames 60
    python benchmarks/where_mota_goes.py --split backbone --stream anchor_qp2.bin --markdown
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.bitstream import parse
from fcm_common.coding.methods import method_for_decoding
from fcm_common.data.sources import open_source
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.preprocess import network_inputs
from fcm_common.model.splits import SPLITS
from fcm_common.msfc.bundled import bundled_model_for
from fcm_common.msfc.checkpoint import load_checkpoint
from fcm_common.tracking.sequence import SequenceTracker
from fcm_decoder.decoder import decode_stream

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"
NUM_DET = 24
GROUPS = {  # channel indices of the head input (24 detection channels = 4 anchors x (dx, dy, dw, dh, bg, fg))
    "confidences": [a * 6 + i for a in range(4) for i in (4, 5)],
    "box deltas": [a * 6 + i for a in range(4) for i in range(4)],
}
SCALES = ("finest", "middle", "coarsest")

Features = list[torch.Tensor]  # one frame's split tensors (1, C, H, W) each, split order
DETECTIONS_NOTE = ("error: a detections code rebuilds every kept proposal as anchor 0 of the finest layer, so its channel "
                   "groups cannot be swapped with the exact features' anchor by anchor; compare its code channels instead "
                   "(docs/results_notes.md, 'The backbone detections code')")


def exact_features(model, source, split: str, frames: int) -> tuple[list[Features], list]:
    feats, boxes = [], []
    with torch.inference_mode():
        for batch, bx in network_inputs(source, model.input_width, model.input_height, 1):
            feats.append([f.float() for f in model.forward_part1(batch, split)])
            boxes.extend(bx)
            if len(feats) == frames:
                break
    return feats, boxes


def advmsfc_reconstruction(exact: list[Features], model_path: Path, split: str, jde_id: str,
                           channels: int | None) -> tuple[list[Features], str]:
    ckpt = load_checkpoint(model_path, split, jde_id)
    if ckpt.model.arch.fusion == "detections":
        raise SystemExit(DETECTIONS_NOTE)
    keep = channels or ckpt.model.fused_channels
    with torch.inference_mode():
        out = [ckpt.model(f, keep=keep) for f in exact]
    return out, f"advMSFC {model_path.name}, {keep} of {ckpt.model.fused_channels} channels, no coding"


def stream_reconstruction(path: Path, model, frames: int) -> tuple[list[Features], str]:
    data = path.read_bytes()
    header, payload = parse(data)
    method = method_for_decoding(header.method)
    if getattr(getattr(method, "model", None), "arch", None) is not None and method.model.arch.fusion == "detections":
        raise SystemExit(DETECTIONS_NOTE)
    report = decode_stream(header, payload, len(data), model, torch.device("cpu"), method=method, keep_features=True)
    layers = SPLITS[header.split].layers
    out = [[torch.from_numpy(report.features[f"layer_{layer}"][i])[None] for layer in layers]
           for i in range(min(frames, header.num_frames))]
    return out, f"{path.name} ({header.method} {header.split}, {header.codec} QP {header.qp})"


class Mixer:
    """Prediction rows of mixed features; what is taken from the reconstruction is chosen per call."""

    def __init__(self, model, split: str):
        self.model, self.split = model, split
        self.head_layers = [model.layer_inputs[y][0] for y in model.yolo_layers]

    def heads(self, feats: Features) -> Features:
        if list(SPLITS[self.split].layers) == self.head_layers:
            return feats
        return self.model.forward_heads(feats, self.split)

    def rows(self, exact: Features, recon: Features, scales: set[int], groups: set[str]) -> torch.Tensor:
        """Split tensors: reconstructed at the scale positions in ``scales``; then head inputs: the
        channel ``groups`` taken from the heads computed on the full reconstruction."""
        mixed = [r if i in scales else e for i, (e, r) in enumerate(zip(exact, recon))]
        heads = [h.clone() for h in self.heads(mixed)]
        if groups:
            full = self.heads(recon)
            for h, r in zip(heads, full):
                for g in groups:
                    idx = list(range(NUM_DET, h.shape[1])) if g == "embedding" else GROUPS[g]
                    h[:, idx] = r[:, idx]
        return self.model.forward_part2(heads, self.head_layers)


def foreground(rows: torch.Tensor) -> torch.Tensor:
    return rows[0, :, 4] > 0.5


def score(name: str, gt, seqinfo, fps: float, rows_of: Callable[[int], torch.Tensor], boxes, exact_fg) -> list:
    seq = SequenceTracker(fps)
    lost = 0
    for i, box in enumerate(boxes):
        rows = rows_of(i)
        lost += int((exact_fg[i] & ~foreground(rows)).sum())
        seq.push(rows[0], box)
    summary = evaluate([SequenceResult(name, gt, seq.rows, seqinfo, max_frame=len(boxes), mode="mot")])
    row = summary.iloc[0]
    return [float(row["MOTA"]), float(row["IDF1"]), int(row["FP"]), int(row["FN"]), lost]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=SAMPLE, help="MOTChallenge sequence folder with gt/gt.txt")
    ap.add_argument("--split", choices=list(SPLITS), default="backbone")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--model", type=Path, help="advMSFC model (default: the bundled one of the split)")
    ap.add_argument("--channels", type=int, help="advMSFC: code channels kept (default: all)")
    ap.add_argument("--stream", type=Path, help="take the reconstruction from this bitstream instead")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown (for the docs)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    model = load_network(choose_network(None), "cpu")
    source = open_source(args.input, max_frames=args.frames)
    split = args.split
    exact, boxes = exact_features(model, source, split, args.frames)
    if args.stream:
        recon, what = stream_reconstruction(args.stream, model, len(exact))
        split = parse(args.stream.read_bytes())[0].split
        if split != args.split:
            exact, boxes = exact_features(model, open_source(args.input, max_frames=args.frames), split, args.frames)
    else:
        path = args.model or bundled_model_for(split, model.weights_id)
        if path is None:
            ap.error(f"no bundled advMSFC model of {split} serves this network: pass --model")
        recon, what = advmsfc_reconstruction(exact, path, split, model.weights_id, args.channels)
    n = min(len(exact), len(recon))
    exact, recon, boxes = exact[:n], recon[:n], boxes[:n]
    mixer = Mixer(model, split)
    exact_fg = [foreground(model.forward_part2(f, split)) for f in exact]
    all_scales = {0, 1, 2}
    head_groups = ["confidences", "box deltas", "embedding"]

    variants: list[tuple[str, set[int], set[str]]] = [("exact (uncompressed)", set(), set()),
                                                       ("reconstructed", all_scales, set())]
    if split != "backbone":
        for i in range(3):
            pos = model_scale_position(split, i)
            variants.append((f"reconstructed but the {SCALES[i]} tensor exact", all_scales - {pos}, set()))
            variants.append((f"exact but the {SCALES[i]} tensor reconstructed", {pos}, set()))
        for g in head_groups:
            variants.append((f"exact but the {g} (heads) reconstructed", set(), {g}))
    else:
        for g in head_groups:
            others = {x for x in head_groups if x != g}
            variants.append((f"reconstructed but the {g} exact", set(), others))
            variants.append((f"exact but the {g} reconstructed", set(), {g}))

    gt, seqinfo = source.gt_path, source.seqinfo_path
    rows = []
    for name, scales, groups in variants:
        def rows_of(i, scales=scales, groups=groups):
            return mixer.rows(exact[i], recon[i], scales, groups)
        rows.append([name, *score(source.name, gt, seqinfo, source.fps, rows_of, boxes, exact_fg)])
    headers = ["features", "MOTA", "IDF1", "FP", "FN", "fg anchors lost"]
    title = f"where MOTA goes: {split}, {what}, first {n} frames of {source.name}"
    print_table(title, headers, rows)
    if args.markdown:
        print(f"\n{title}\n")
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for r in rows:
            print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]} | {r[4]} | {r[5]} |")


def model_scale_position(split: str, scale: int) -> int:
    """Position, in split order, of the finest (0), middle (1) or coarsest (2) tensor."""
    strides = SPLITS[split].strides
    return sorted(range(3), key=lambda i: strides[i])[scale]


if __name__ == "__main__":
    main()
