"""End-to-end throughput of fcm-encode and fcm-decode with the bundled networks (``make bench-e2e``).

Runs what the two commands run (NN part 1, MSFF or nothing, quantisation and packing, the inner
codec; then decoding, unpacking, MSFR, NN part 2 and the tracker) on the shipped sample, for the
design's default (advMSFC, backbone) and the anchor, and prints seconds per frame per stage and
frames/s end to end (wall clock of the whole call, so what the stages do not cover is counted too).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.bitstream import parse
from fcm_common.coding.methods import method_for_encoding
from fcm_common.core.device import resolve_device
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import SPLITS
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=SAMPLE)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--split", default="backbone")
    ap.add_argument("--preset", default="medium", help="VVenC preset (fcm-encode's default: medium)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    device = resolve_device(args.device)
    model = load_network(choose_network(None), device)
    split = SPLITS[args.split]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows = []
    for method_name in ("advmsfc", "anchor"):
        method = method_for_encoding(method_name, split, args.qp, model.weights_id, device)
        settings = EncodeSettings(split=split, qp=args.qp, codec="vvenc", preset=args.preset,
                                  range_spec=method.range_spec(None, split, split.is_reference(model.split_shapes(split.name))))
        source = open_source(args.input, max_frames=args.frames)
        start = time.perf_counter()
        data, report = encode_sequence(source, model, method, settings, device)
        encode_wall = time.perf_counter() - start
        header, payload = parse(data)
        start = time.perf_counter()
        decoded = decode_stream(header, payload, len(data), model, device, method=method)
        decode_wall = time.perf_counter() - start
        n = report.frames
        enc_stages = " ".join(f"{k} {v / n:.3f}" for k, v in report.seconds.items())
        dec_stages = " ".join(f"{k} {v / n:.3f}" for k, v in decoded.seconds.items())
        rows.append([f"{method_name} {split.name}", "fcm-encode", enc_stages, n / encode_wall])
        rows.append([f"{method_name} {split.name}", "fcm-decode", dec_stages, n / decode_wall])
    print_table(
        f"end to end, bundled JDE-576x320-fcm, {args.frames} frames of {args.input.name}, VVenC {args.preset} "
        f"QP {args.qp} ({name})",
        ["method", "command", "seconds per frame by stage", "frames/s"], rows,
    )


if __name__ == "__main__":
    main()
