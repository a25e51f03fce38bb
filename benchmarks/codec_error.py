"""VVC's error on real advMSFC codes, per QP, in 10-bit quantisation steps: the noise that
``fcm-train --codec-noise`` simulates (trained through the codec, QP 32 is no surprise).

Packs the first frames of a sequence exactly as fcm-encode does (bundled JDE and advMSFC model of
the split, or ``--model``, every code channel, the model's range) and codes them with VVenC at each
QP; prints the rms and the 99th percentile of |decoded - packed| over the code's tiles.

    python benchmarks/codec_error.py --split backbone --qps 7,12,17,22,27,32,37
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.codecs import make_codec
from fcm_common.coding.methods import method_for_encoding
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import SPLITS
from fcm_encoder.encoder import EncodeSettings, sequence_frames

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=SAMPLE)
    ap.add_argument("--split", choices=list(SPLITS), default="backbone")
    ap.add_argument("--model", type=Path, help="advMSFC model (default: the bundled one)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--qps", default="7,12,17,22,27,32,37")
    ap.add_argument("--preset", default="medium")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    model = load_network(choose_network(None), "cpu")
    split = SPLITS[args.split]
    method = method_for_encoding("advmsfc", split, 32, model.weights_id, "cpu",
                                 **({"model_path": args.model} if args.model else {}))
    method = method.__class__(method.checkpoint, method.model.fused_channels)  # every channel
    rows = []
    for qp in (int(q) for q in args.qps.split(",")):
        settings = EncodeSettings(split=split, qp=qp, codec="vvenc", preset=args.preset,
                                  range_spec=method.range_spec(None, split, False))
        plan, frames = sequence_frames(open_source(args.input, max_frames=args.frames), model, method, settings, torch.device("cpu"))
        packed = [f for f, _ in frames]
        codec = make_codec("vvenc")
        with tempfile.TemporaryDirectory(prefix="fcm-err-") as tmp:
            enc = codec.open_encoder(plan.width, plan.height, settings.codec_params(open_source(args.input).fps), Path(tmp))
            for f in packed:
                enc.write(f)
            payload = enc.finish()
            decoded = list(codec.decode(payload, plan.width, plan.height, len(packed), Path(tmp)))
        h, w = plan.layout.height, plan.layout.width  # the tiles (the padding to 8 is not code)
        err = np.concatenate([(d[:h, :w].astype(np.float64) - p[:h, :w]).ravel() for d, p in zip(decoded, packed)])
        rows.append([qp, float(np.sqrt((err ** 2).mean())), float(np.percentile(np.abs(err), 99)),
                     len(payload) * 8 / len(packed) / 1000])
    print_table(f"VVenC {args.preset} error on advMSFC {split.name} codes ({method.model.fused_channels} channels, "
                f"{args.frames} frames of {args.input.name}), in 10-bit steps",
                ["QP", "rms", "p99 |error|", "kbit per frame"], rows)


if __name__ == "__main__":
    main()
