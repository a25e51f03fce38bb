"""NN part 1 at inference, cheaper variants measured against fp32 eager torch (issue 29).

On the bundled JDE (JDE-576x320-fcm), one split (backbone by default), batch 1, one torch thread
(a live encoder's setting on a small machine): each variant's time per frame (median over
``--repeats`` interleaved rounds, so that a machine whose load changes treats every variant alike),
its features' difference from fp32 eager torch on real frames of the shipped sample (max abs, and
max abs relative to the largest reference value), and, with ``--tracks``, the tracks: the variant's
part 1, then fp32 part 2 and the tracker on every frame of the sample, MOTA against the ground
truth and the rows that differ from the fp32 run.

Variants: ``fp32`` (the encoder's path), ``channels-last`` (NHWC tensors and weights), ``fold-bn``
(batch norm folded into the convolutions: the same arithmetic, fewer passes over memory),
``jit-freeze`` (``torch.jit.trace`` + ``freeze`` + ``optimize_for_inference``: folds batch norm,
oneDNN (mkldnn) convolutions and fusions), ``bf16`` (weights and activations in bfloat16, the
features cast back to fp32), ``onnxruntime`` (part 1 written as an ONNX graph by
``fcm_common.model.onnx_part1``, the live encoder's path, run by onnxruntime's CPU provider with as
many intra-op threads as torch has, all graph optimisations).

    python benchmarks/bench_part1.py [--split backbone] [--repeats 20] [--tracks]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcm_common.cli.support import print_table  # noqa: E402
from fcm_common.data.sources import open_source  # noqa: E402
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate  # noqa: E402
from fcm_common.model.bundled import choose_network, load_network  # noqa: E402
from fcm_common.model.onnx_part1 import part1_runner  # noqa: E402
from fcm_common.model.preprocess import network_inputs  # noqa: E402
from fcm_common.tracking.sequence import SequenceTracker  # noqa: E402

SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"


class _Part1(nn.Module):
    """``forward_part1`` of one split as a module (what trace and export need)."""

    def __init__(self, model, split: str):
        super().__init__()
        self.model, self.split = model, split

    def forward(self, x):
        return tuple(self.model.forward_part1(x, self.split))


def _fold_bn(model):
    """A copy of ``model`` whose convolutions carry their batch norm (eval mode)."""
    folded = copy.deepcopy(model)
    for seq in folded.module_list:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return folded


def variants(model, split: str, example: torch.Tensor, which: list[str]) -> dict:
    """name -> a callable (1, 3, H, W) fp32 tensor -> list of fp32 split tensors."""
    out = {}
    part1 = _Part1(model, split).eval()
    if "fp32" in which:
        out["fp32"] = lambda x: list(part1(x))
    if "channels-last" in which:
        cl = _Part1(copy.deepcopy(model).to(memory_format=torch.channels_last), split).eval()
        out["channels-last"] = lambda x: [t.contiguous() for t in cl(x.contiguous(memory_format=torch.channels_last))]
    if "fold-bn" in which:
        fb = _Part1(_fold_bn(model), split).eval()
        out["fold-bn"] = lambda x: list(fb(x))
    if "jit-freeze" in which:
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(_Part1(copy.deepcopy(model), split).eval(), example)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        out["jit-freeze"] = lambda x: [t.contiguous() for t in frozen(x)]
    if "bf16" in which:
        bf = _Part1(copy.deepcopy(model).to(torch.bfloat16), split).eval()
        out["bf16"] = lambda x: [t.float() for t in bf(x.to(torch.bfloat16))]
    if "onnxruntime" in which:
        run = part1_runner(model, split, torch.get_num_threads())
        if run is None:
            print("onnxruntime not installed: variant skipped", file=sys.stderr)
        else:
            out["onnxruntime"] = run
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="backbone")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20, help="interleaved rounds (one call per variant each)")
    parser.add_argument("--frames", type=int, default=20, help="sample frames the feature difference is measured on")
    parser.add_argument("--variants", default="fp32,channels-last,fold-bn,jit-freeze,bf16,onnxruntime")
    parser.add_argument("--tracks", action="store_true", help="also track the whole sample with each variant's part 1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_network(choose_network(None), torch.device("cpu")).eval()
    source = open_source(SAMPLE)
    frames = [batch for batch, _ in network_inputs(source, model.input_width, model.input_height, 1)]
    boxes = [b[0] for _, b in network_inputs(source, model.input_width, model.input_height, 1)]
    with torch.inference_mode():
        runs = variants(model, args.split, frames[0], args.variants.split(","))
        reference = [runs["fp32"](x) if "fp32" in runs else list(_Part1(model, args.split)(x)) for x in frames[: args.frames]]
        times: dict[str, list[float]] = {name: [] for name in runs}
        for fn in runs.values():  # warm-up (the first oneDNN / onnxruntime calls pick their kernels)
            fn(frames[0])
            fn(frames[1])
        for r in range(args.repeats):
            x = frames[r % len(frames)]
            for name, fn in runs.items():
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
        rows = []
        base = statistics.median(times["fp32"]) if "fp32" in times else float("nan")
        for name, fn in runs.items():
            max_abs = max_ref = 0.0
            for x, ref in zip(frames[: args.frames], reference):
                for a, b in zip(fn(x), ref):
                    max_abs = max(max_abs, float((a - b).abs().max()))
                    max_ref = max(max_ref, float(b.abs().max()))
            median = statistics.median(times[name])
            row = [name, f"{median * 1e3:.1f}", f"{base / median:.2f}", f"{max_abs:.2e}", f"{max_abs / max_ref:.2e}"]
            if args.tracks:
                mota, changed = _tracks(model, args.split, fn, frames, boxes, source)
                row += [f"{mota:.2f}", changed]
            rows.append(row)
    columns = ["variant", "ms/frame p50", "speed-up", "max abs diff", "max abs / max |ref|"]
    if args.tracks:
        columns += ["MOTA % (sample)", "rows differing from fp32"]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    load = os.getloadavg()[0]
    print_table(
        f"NN part 1, bundled JDE, split {args.split}, batch 1, {args.threads} torch thread(s), {cpu}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{load:.1f}; time: median of {args.repeats} interleaved calls",
        columns, rows,
    )
    return 0


_BASE_ROWS: list | None = None


def _tracks(model, split, fn, frames, boxes, source):
    """MOTA of the sample tracked with ``fn`` as part 1, and the rows that differ from fp32's."""
    global _BASE_ROWS
    seq = SequenceTracker(source.fps)
    for x, box in zip(frames, boxes):
        seq.push(model.forward_part2(fn(x), split)[0], box)
    rows = [(r.frame, r.track_id, round(r.x, 2), round(r.y, 2), round(r.w, 2), round(r.h, 2)) for r in seq.rows]
    if _BASE_ROWS is None:
        _BASE_ROWS = rows
    changed = len(set(rows) ^ set(_BASE_ROWS))
    result = evaluate([SequenceResult(source.name, source.gt_path, seq.rows, source.seqinfo_path, max_frame=len(frames))])
    return 100 * float(result.iloc[0]["MOTA"]), changed


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
