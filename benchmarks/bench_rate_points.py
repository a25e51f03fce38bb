"""What an advMSFC rate point costs: bytes per frame and kbps at each QACT (QP, channels) pair.

Runs the real frame coding (quantisation with the code range, near-square packing, the inner
codec, the 124-byte header) on the codes of a few frames. Without ``--model`` the advMSFC model is
untrained (random weights, feature statistics measured on the frames) and JDE has random weights:
the sizes then show the mechanics (frame sizes, header, how bytes scale with k and QP), not the
rates of trained models on real video.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.codecs import CodecParams, make_codec
from fcm_common.coding.frame_coding import FrameFormat, padded_size, tensors_to_frame
from fcm_common.coding.packing import single_tensor_layout
from fcm_common.coding.quantization import float32_range, zero_level
from fcm_common.coding.rate import kbps
from fcm_common.data.synthetic import render_sequence
from fcm_common.model.jde import load_jde
from fcm_common.model.preprocess import preprocess
from fcm_common.msfc.checkpoint import load_checkpoint
from fcm_common.msfc.networks import AdvMSFC, arch_for_split, scale_order
from fcm_common.msfc.qact import load_qact

HEADER_BYTES = 124  # advmsfc stream with one quantisation range


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="backbone")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--model", default=None)
    parser.add_argument("--codec", default="vvenc")
    parser.add_argument("--preset", default="faster")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()

    jde = load_jde(None)
    pictures, _ = render_sequence(args.frames, 1280, 720, seed=21)
    with torch.inference_mode():
        feats = [jde.forward_part1(preprocess(p)[0][None], args.split) for p in pictures]
        if args.model:
            model = load_checkpoint(args.model, split=args.split).model
        else:
            torch.manual_seed(0)
            model = AdvMSFC(arch_for_split(args.split), scale_order(args.split)).eval()
            stack = [torch.cat([f[i] for f in feats]) for i in range(3)]
            by_scale = model.by_scale(stack)
            model.set_statistics([x.mean((0, 2, 3)) for x in by_scale], [x.std((0, 2, 3)) for x in by_scale])
        codes = [model.encode(f)[0] for f in feats]
    lo, hi = float32_range(min(float(c.min()) for c in codes), max(float(c.max()) for c in codes))
    table = load_qact(args.split)
    codec = make_codec(args.codec)
    rows = []
    for qp, k in zip(table.qps, table.channels):
        layout = single_tensor_layout(k, codes[0].shape[1], codes[0].shape[2])
        width, height = padded_size(layout)
        fmt = FrameFormat(layout, width, height, 10, zero_level(lo, hi))
        with tempfile.TemporaryDirectory() as tmp:
            encoder = codec.open_encoder(width, height, CodecParams(qp=qp, fps=args.fps, intra_period=32, preset=args.preset), Path(tmp))
            for code in codes:
                encoder.write(tensors_to_frame([code[:k]], fmt, lo, hi))
            size = len(encoder.finish()) + HEADER_BYTES
        rows.append([qp, k, f"{width}x{height}", size / args.frames, kbps(size, args.frames, args.fps)])
    print_table(
        f"advmsfc/{args.split} rate points ({args.codec} {args.preset}, {args.frames} frames, "
        f"{'trained model ' + args.model if args.model else 'untrained model, random JDE'})",
        ["QP", "channels", "coded frame", "bytes/frame", f"kbps @ {args.fps:g} fps"],
        rows,
    )


if __name__ == "__main__":
    main()
