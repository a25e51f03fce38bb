"""End-to-end throughput of fcm-encode and fcm-decode with the bundled networks (``make bench-e2e``).

Runs what the two commands run (NN part 1, MSFF or nothing, quantisation and packing, the inner
codec; then decoding, unpacking, MSFR, NN part 2 and the tracker) on the shipped sample, for the
design's default (advMSFC, backbone) and the anchor, and prints seconds per frame per stage and
frames/s end to end (wall clock of the whole call, so what the stages do not cover is counted too).

On a GPU: ``--network jde1088`` times JDE-1088x608 (random weights: time does not depend on the
values) with an untrained advMSFC model of the paper's backbone architecture; ``--batch-size``
batches NN part 1 in the encoder; ``--precision bf16|fp16`` runs the network under autocast and
hands float32 features to the method (what is quantised and coded stays float32);
``--channels-last`` changes the network's memory layout.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.coding.bitstream import parse
from fcm_common.coding.methods import method_for_encoding
from fcm_common.core.device import resolve_device
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.jde import load_jde
from fcm_common.model.splits import SPLITS
from fcm_common.msfc.bundled import bundled_model_for
from fcm_common.msfc.checkpoint import MSFCCheckpoint, save_checkpoint
from fcm_common.msfc.networks import AdvMSFC, arch_for_split, scale_order
from fcm_common.msfc.qact import load_qact
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class Autocast:
    """The network with NN parts 1 and 2 under autocast, features handed on as float32."""

    def __init__(self, model, dtype: torch.dtype | None, channels_last: bool):
        self.model, self.dtype, self.channels_last = model, dtype, channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _run(self, fn, *args):
        with torch.autocast(self.model.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = fn(*args)
        return [t.float() for t in out] if isinstance(out, list) else out.float()

    def forward_part1(self, x, split):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._run(self.model.forward_part1, x, split)

    def forward_part2(self, features, split):
        return self._run(self.model.forward_part2, features, split)


def untrained_advmsfc(model, split: str, folder: Path) -> Path:
    """An advMSFC checkpoint with the architecture cfg/advmsfc.toml gives this network (random
    weights: only its time is measured)."""
    torch.manual_seed(0)
    arch = arch_for_split(split, split_shapes=model.split_shapes(split))
    net = AdvMSFC(arch, scale_order(split))
    path = folder / f"untrained_{split}.pt"
    save_checkpoint(path, MSFCCheckpoint(split=split, model=net, jde_weights_id=model.weights_id,
                                         qact=load_qact(split, None, arch.fused_channels)))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=SAMPLE)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--split", default="backbone")
    ap.add_argument("--preset", default="medium", help="VVenC preset (fcm-encode's default: medium)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--network", choices=["bundled", "jde1088"], default="bundled",
                    help="bundled JDE-576x320-fcm with its advMSFC model, or JDE-1088x608 (random weights) "
                         "with an untrained advMSFC model of the paper's architecture")
    ap.add_argument("--batch-size", type=int, default=1, help="frames per NN part 1 call in the encoder")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--methods", default="advmsfc,anchor")
    ap.add_argument("--skip-decode", action="store_true",
                    help="encoder only (with untrained models the decoder's tracker times garbage detections)")
    args = ap.parse_args()

    device = resolve_device(args.device)
    if args.network == "bundled":
        network = load_network(choose_network(None), device)
    else:
        network = load_jde(None, device=device)
        network.network_name = "JDE-1088x608 (random weights)"
    model = Autocast(network, DTYPES.get(args.precision), args.channels_last)
    split = SPLITS[args.split]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    scratch = tempfile.TemporaryDirectory(prefix="fcm-bench-")
    options = {}
    if args.network != "bundled" or bundled_model_for(split.name, network.weights_id) is None:
        # no trained model for this network: an untrained one of the same architecture times the same
        options["model_path"] = untrained_advmsfc(network, split.name, Path(scratch.name))
        network.network_name += " + untrained advMSFC"
    rows = []
    for method_name in args.methods.split(","):
        method = method_for_encoding(method_name, split, args.qp, model.weights_id, device,
                                     **(options if method_name == "advmsfc" else {}))
        settings = EncodeSettings(split=split, qp=args.qp, codec="vvenc", preset=args.preset, batch_size=args.batch_size,
                                  range_spec=method.range_spec(None, split, split.is_reference(model.split_shapes(split.name))))
        source = open_source(args.input, max_frames=args.frames)
        start = time.perf_counter()
        data, report = encode_sequence(source, model, method, settings, device)
        encode_wall = time.perf_counter() - start
        n = report.frames
        enc_stages = " ".join(f"{k} {v / n:.4f}" for k, v in report.seconds.items())
        rows.append([f"{method_name} {split.name}", "fcm-encode", enc_stages, n / encode_wall])
        if args.skip_decode:
            continue
        header, payload = parse(data)
        start = time.perf_counter()
        decoded = decode_stream(header, payload, len(data), model, device, method=method)
        decode_wall = time.perf_counter() - start
        dec_stages = " ".join(f"{k} {v / n:.4f}" for k, v in decoded.seconds.items())
        rows.append([f"{method_name} {split.name}", "fcm-decode", dec_stages, n / decode_wall])
    print_table(
        f"end to end, {network.network_name}, {args.frames} frames of {args.input.name}, VVenC {args.preset} "
        f"QP {args.qp}, batch {args.batch_size}, {args.precision}{', channels_last' if args.channels_last else ''} ({name})",
        ["method", "command", "seconds per frame by stage", "frames/s"], rows,
    )


if __name__ == "__main__":
    main()
