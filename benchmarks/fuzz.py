"""Hostile bitstreams through the decoder (``make fuzz``): what happens to a damaged or forged stream.

The network is loaded once; for each inner codec and method a short stream of the shipped sample is
encoded, decoded once for the reference tracks, then decoded again N times, each time mutated:

* payload: bit flips, bursts of random bytes, truncation, insertion and deletion of bytes (for the
  last three the header's payload length is corrected and its CRC re-signed, so that the damage
  reaches the inner decoder instead of being caught by the length check);
* header: one field changed (a random byte of the fields, or a value: ranges, fill level, sizes,
  frame rate, QP, channel counts, identifiers) with the CRC re-signed, as a forger would.

Each decode runs in-process under a time limit and with warnings turned into errors, and ends as one
of: a clean error (an ``FcmError``: what the command line prints as one ``error:`` line), accepted with
output identical to the reference, accepted with a different output, a crash (any other exception or
a warning), or a hang. A payload mutation accepted with a different output, a crash or a hang fails
the run (exit status 1).

    python benchmarks/fuzz.py [--payload 300] [--header 100] [--codecs vvenc,lossless] [--methods anchor,advmsfc]
"""

from __future__ import annotations

import argparse
import csv
import random
import signal
import struct
import sys
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import torch

from fcm_common.cli.support import print_table, progress
from fcm_common.coding import bitstream
from fcm_common.coding.methods import method_for_encoding
from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import format_rows
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import SPLITS
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"
OUTCOMES = ("clean error", "identical output", "different output", "crash", "hang")
PAYLOAD_KINDS = ("bit flips", "burst", "truncation", "insertion", "deletion")
CRC_BYTES = 4
LENGTH_BYTES = 8


class Hang(BaseException):
    """Raised by the alarm when one decode runs past its time limit."""


def _alarm(_signum, _frame):
    raise Hang


def re_sign(data: bytearray, header_size: int, payload_length: int | None = None) -> bytes:
    """Set the payload length (if given) and recompute the header CRC, as a forger would."""
    crc_at = header_size - CRC_BYTES
    if payload_length is not None:
        struct.pack_into(">Q", data, crc_at - LENGTH_BYTES, payload_length)
    struct.pack_into(">I", data, crc_at, zlib.crc32(bytes(data[:crc_at])))
    return bytes(data)


def mutate_payload(stream: bytes, header_size: int, rng: random.Random, kind: str) -> bytes:
    head, payload = bytearray(stream[:header_size]), bytearray(stream[header_size:])
    n = len(payload)
    if kind == "bit flips":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            payload[i] ^= 1 << rng.randrange(8)
        return bytes(head + payload)
    if kind == "burst":
        start = rng.randrange(n)
        length = min(rng.randint(2, 64), n - start)
        payload[start:start + length] = bytes(rng.randrange(256) for _ in range(length))
        return bytes(head + payload)
    if kind == "truncation":
        payload = payload[: rng.randrange(n)]
    elif kind == "insertion":
        at = rng.randrange(n + 1)
        payload[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:  # deletion
        at = rng.randrange(n)
        del payload[at:at + rng.randint(1, 32)]
    return re_sign(head, header_size, len(payload)) + bytes(payload)


def _header_value_change(header: bitstream.StreamHeader, rng: random.Random) -> str:
    """Change one field of a parsed header in place; returns what was changed."""
    lo, hi = header.ranges[0]
    choice = rng.randrange(10)
    if choice == 0:
        scale = rng.choice([0.5, 0.9, 1.1, 2.0, 1e3, 1e30])
        header.ranges = [(a * scale, b * scale) for a, b in header.ranges]
        return f"ranges x{scale:g}"
    if choice == 1:
        shift = (hi - lo) * rng.uniform(-2, 2)
        header.ranges = [(a + shift, b + shift) for a, b in header.ranges]
        return "ranges shifted"
    if choice == 2:
        header.ranges = [(-3e38, 3e38)] * len(header.ranges)
        return "ranges huge"
    if choice == 3:
        header.fill_level = rng.randrange(1024)
        return "fill level"
    if choice == 4:
        header.orig_width, header.orig_height = rng.randint(1, 4000), rng.randint(1, 4000)
        return "original size"
    if choice == 5:
        header.fps = header.fps * rng.choice([2, 3]) / rng.choice([1, 5])
        return "frame rate"
    if choice == 6:
        header.qp = rng.randint(0, 63)
        return "QP"
    if choice == 7:
        header.recon_hash = bytes(rng.randrange(256) for _ in range(bitstream.ID_BYTES))
        return "reconstruction hash"
    if choice == 8:
        ident = bytearray(header.jde_id if rng.random() < 0.5 else header.model_id)
        ident[rng.randrange(len(ident))] ^= 0x01
        if rng.random() < 0.5:
            header.jde_id = bytes(ident)
        else:
            header.model_id = bytes(ident)
        return "identifier"
    header.num_frames = max(1, header.num_frames + rng.choice([-1, 1]))
    if header.per_frame_range:
        header.ranges = (header.ranges + header.ranges)[: header.num_frames]
    return "frame count"


def mutate_header(stream: bytes, header: bitstream.StreamHeader, rng: random.Random) -> tuple[bytes, str]:
    """A forged header: a random byte of the fields, or one field's value, with the CRC re-signed."""
    size = header.header_size
    payload = stream[size:]
    if rng.random() < 0.5:
        data = bytearray(stream[:size])
        at = rng.randrange(4, size - CRC_BYTES - LENGTH_BYTES)
        data[at] ^= rng.randint(1, 255)
        return re_sign(data, size) + payload, "header byte"
    forged, _ = bitstream.parse(stream)
    what = _header_value_change(forged, rng)
    try:
        out = bitstream.serialize(forged, payload)
    except FcmError:  # serialize validates: a value no header may hold; forge the bytes instead
        data = bytearray(stream[:size])
        at = rng.randrange(4, size - CRC_BYTES - LENGTH_BYTES)
        data[at] ^= 0xFF
        return re_sign(data, size) + payload, "header byte"
    return out, what


def decode_once(stream: bytes, model, device, method, timeout: float) -> tuple[str, str | None, str]:
    """(outcome, tracks text or None, detail) of decoding one stream in-process."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            header, payload = bitstream.parse(stream)
            report = decode_stream(header, payload, len(stream), model, device, method=method)
        return "accepted", format_rows(report.tracker.rows), ""
    except Hang:
        return "hang", None, f"over {timeout:g} s"
    except FcmError as exc:
        return "clean error", None, str(exc).splitlines()[0][:120]
    except Exception as exc:  # noqa: BLE001 - what the harness is looking for
        return "crash", None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=SAMPLE)
    ap.add_argument("--frames", type=int, default=2, help="frames of the fuzzed streams")
    ap.add_argument("--payload", type=int, default=300, help="payload mutations per codec and method")
    ap.add_argument("--header", type=int, default=100, help="header mutations per codec and method")
    ap.add_argument("--codecs", default="vvenc,lossless")
    ap.add_argument("--methods", default="anchor,advmsfc")
    ap.add_argument("--split", default="backbone")
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per decode before it counts as a hang")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--details", type=Path, help="CSV with one row per mutation")
    args = ap.parse_args()

    signal.signal(signal.SIGALRM, _alarm)
    device = torch.device("cpu")
    model = load_network(choose_network(None), device)
    split = SPLITS[args.split]
    rng = random.Random(args.seed)
    started = time.time()
    table, details = [], []
    failed = False
    jobs = [(c, m) for c in args.codecs.split(",") for m in args.methods.split(",")]
    with progress() as bar:
        task = bar.add_task("fuzzing", total=len(jobs) * (args.payload + args.header))
        for codec, method_name in jobs:
            method = method_for_encoding(method_name, split, args.qp, model.weights_id, device)
            settings = EncodeSettings(split=split, qp=args.qp, codec=codec, preset="faster",
                                      range_spec=method.range_spec(None, split, split.is_reference(model.split_shapes(split.name))))
            stream, _ = encode_sequence(open_source(args.input, max_frames=args.frames), model, method, settings, device)
            header, _ = bitstream.parse(stream)
            outcome, reference, detail = decode_once(stream, model, device, method, args.timeout)
            if outcome != "accepted":
                raise SystemExit(f"error: the unmutated {codec}/{method_name} stream does not decode: {detail}")
            counts = {"payload": Counter(), "header": Counter()}
            for part, n in (("payload", args.payload), ("header", args.header)):
                for i in range(n):
                    if part == "payload":
                        kind = PAYLOAD_KINDS[i % len(PAYLOAD_KINDS)]
                        mutated = mutate_payload(stream, header.header_size, rng, kind)
                    else:
                        mutated, kind = mutate_header(stream, header, rng)
                    outcome, tracks, detail = decode_once(mutated, model, device, method, args.timeout)
                    if outcome == "accepted":
                        outcome = "identical output" if tracks == reference else "different output"
                    counts[part][outcome] += 1
                    details.append([codec, method_name, part, kind, outcome, detail])
                    bar.advance(task)
                row = counts[part]
                table.append([f"{codec} / {method_name}", part, n, *(row[o] for o in OUTCOMES)])
                if part == "payload" and (row["different output"] or row["crash"] or row["hang"]):
                    failed = True
                if part == "header" and (row["crash"] or row["hang"]):
                    failed = True

    print_table(f"fcm fuzz: {args.frames}-frame streams of {args.input.name}, {split.name} split, QP {args.qp}, seed {args.seed} "
                f"({(time.time() - started) / 60:.1f} min)",
                ["codec / method", "mutated", "streams", *OUTCOMES], table)
    bad = [d for d in details if d[4] in ("crash", "hang", "different output")]
    for d in bad[:20]:
        print(" ".join(map(str, d)))
    if args.details:
        args.details.parent.mkdir(parents=True, exist_ok=True)
        with open(args.details, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["codec", "method", "part", "mutation", "outcome", "detail"])
            writer.writerows(details)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
