"""Inner codecs on the same packed features (``make bench-codec``).

Packs the anchor frames of a split (random-weight JDE on synthetic frames, one range measured
over the frames) and codes them with each codec/preset: bytes, kbps at the given frame rate,
encode and decode seconds per frame, and the PSNR of the decoded 10-bit samples (peak 1023).
VTM joins in when it is found (``--vtm-dir`` or ``$FCM_VTM_DIR``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.codecs import CodecError, CodecParams, make_codec
from fcm_common.coding.frame_coding import FrameFormat, padded_size, tensors_to_frame
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import float32_range, zero_level
from fcm_common.coding.rate import kbps
from fcm_common.data.synthetic import render_sequence
from fcm_common.model.jde import load_jde
from fcm_common.model.preprocess import preprocess


def packed_frames(split: str, frames: int) -> list[np.ndarray]:
    model = load_jde(None)
    pictures, _ = render_sequence(frames, 1280, 720, seed=11)
    with torch.inference_mode():
        feats = [model.forward_part1(preprocess(p)[0][None], split) for p in pictures]
    lo, hi = float32_range(min(float(t.min()) for f in feats for t in f), max(float(t.max()) for f in feats for t in f))
    method = AnchorMethod()
    layout = method.layout(method.coded_shapes(model.split_shapes(split)))
    width, height = padded_size(layout)
    fmt = FrameFormat(layout, width, height, 10, zero_level(lo, hi))
    return [tensors_to_frame([t[0] for t in f], fmt, lo, hi) for f in feats]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1023**2 / mse)


def run(codec_name: str, frames: list[np.ndarray], params: CodecParams, vtm_dir: str | None):
    codec = make_codec(codec_name, vtm_dir=vtm_dir)
    h, w = frames[0].shape
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        encoder = codec.open_encoder(w, h, params, Path(tmp))
        for f in frames:
            encoder.write(f)
        payload = encoder.finish()
        enc = time.perf_counter() - start
        start = time.perf_counter()
        decoded = list(codec.decode(payload, w, h, len(frames), Path(tmp)))
        dec = time.perf_counter() - start
    quality = float(np.mean([psnr(a, b) for a, b in zip(frames, decoded)]))
    return len(payload), enc / len(frames), dec / len(frames), quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="alt1")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--qp", type=int, default=32)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--intra-period", type=int, default=32)
    parser.add_argument("--presets", default="faster,medium", help="VVenC presets to time")
    parser.add_argument("--vtm-dir", default=None)
    args = parser.parse_args()

    frames = packed_frames(args.split, args.frames)
    h, w = frames[0].shape
    rows = []
    base = dict(qp=args.qp, fps=args.fps, intra_period=args.intra_period)
    runs = [("lossless", "-", CodecParams(**base))]
    runs += [("vvenc", p, CodecParams(preset=p, **base)) for p in args.presets.split(",")]
    runs.append(("vtm", "LDB cfg", CodecParams(**base)))
    for name, label, params in runs:
        try:
            size, enc, dec, quality = run(name, frames, params, args.vtm_dir)
        except CodecError as exc:
            if name != "vtm":
                raise
            print(f"vtm skipped: {exc}")
            continue
        rows.append([name, label, size, kbps(size, len(frames), args.fps), enc, dec, quality])
    print_table(
        f"{args.split} anchor frames {w}x{h}, {args.frames} frames, QP {args.qp}, intra period {args.intra_period}",
        ["codec", "preset", "bytes", "kbps", "enc s/frame", "dec s/frame", "PSNR dB"],
        rows,
    )


if __name__ == "__main__":
    main()
