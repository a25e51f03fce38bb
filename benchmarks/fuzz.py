"""Hostile bitstreams through the decoder (``make fuzz``): what happens to a damaged or forged stream.

The network is loaded once; for each inner codec and method a short stream of the shipped sample is
encoded, decoded once for the reference tracks, then decoded again N times, each time mutated:

* payload: bit flips, bursts of random bytes, truncation, insertion and deletion of bytes inside the
  inner codec's payload of one picture unit, the unit re-signed (a valid CRC), so that the damage
  reaches the inner decoder instead of being caught by the unit's CRC;
* header: one field of a segment header changed (a random byte of its body, or a value: ranges, fill
  level, sizes, frame rate, QP, identifiers, the reconstruction hash of its end unit) with the unit
  re-signed, as a forger would;
* keyed: a keyed stream (``--key-file``: a MAC on every unit) with one unit's body damaged as above
  (its MAC included) and its CRC made valid again, or a picture unit replayed, or two units of a
  segment swapped: what someone without the key can do. Every one must be refused (the MAC, checked
  before the unit reaches a parser or the codec), none decoded.

Streams are version 3 (segments, docs/bitstream.md); the library's decoder (``decode_stream``)
accepts a stream only when every segment decoded and matched its hash.

Each decode runs in-process under a time limit and with warnings turned into errors, and ends as one
of: refused (keyed streams: the decoder refused a unit), a clean error (an ``FcmError``: what the command line prints as one ``error:`` line), accepted with
output identical to the reference, accepted with a different output, a crash (any other exception or
a warning), or a hang. A payload mutation accepted with a different output, a crash or a hang fails
the run (exit status 1), and so does a keyed mutation that is not refused.

    python benchmarks/fuzz.py [--payload 300] [--header 100] [--keyed 100] [--codecs vvenc,lossless] [--methods anchor,advmsfc]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import random
import signal
import struct
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from fcm_common.cli.support import print_table, progress
from fcm_common.coding import bitstream, segments
from fcm_common.coding.methods import method_for_encoding
from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import format_rows
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import SPLITS
from fcm_decoder.decoder import decode_stream
from fcm_decoder.stream_decoder import StreamRefused, decode_units
from fcm_encoder.encoder import EncodeSettings, encode_sequence

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "PETS09-S2L1-551-650"
OUTCOMES = ("refused", "clean error", "identical output", "different output", "crash", "hang")
PAYLOAD_KINDS = ("bit flips", "burst", "truncation", "insertion", "deletion")
KEYED_KINDS = (*PAYLOAD_KINDS, "replayed", "reordered")
FUZZ_KEY = bytes(range(32))
CRC_BYTES = 4
LENGTH_BYTES = 8


class Hang(BaseException):
    """Raised by the alarm when one decode runs past its time limit."""


def _alarm(_signum, _frame):
    raise Hang


def _units(stream: bytes):
    units = segments.UnitReader().feed(stream)
    header = segments.parse_segment(next(u for u in units if u.kind == segments.SEGMENT).body)
    return units, header


def _join(units) -> bytes:
    return b"".join(segments.unit(k, b) if k in (segments.SEGMENT, segments.STREAM_END) else segments.inner_unit(k, b)
                    for k, b in units)


def mutate_payload(stream: bytes, rng: random.Random, kind: str) -> bytes:
    """One picture unit's payload damaged, the unit re-signed."""
    units, header = _units(stream)
    pictures = [i for i, u in enumerate(units) if u.kind == segments.PICTURE]
    target = rng.choice(pictures)
    current = header
    out = []
    for i, u in enumerate(units):
        if u.kind == segments.SEGMENT:
            current = segments.parse_segment(u.body)
        if i != target:
            out.append((u.kind, u.body))
            continue
        picture = segments.parse_picture(u.body, current)
        payload = _damaged(picture.payload, rng, kind)
        out.append(("raw", segments.picture_unit(current, picture.records, payload)))
    return b"".join(body if k == "raw" else (segments.unit(k, body) if k in (segments.SEGMENT, segments.STREAM_END)
                                               else segments.inner_unit(k, body)) for k, body in out)


def _damaged(data: bytes, rng: random.Random, kind: str) -> bytes:
    """``data`` with one of the ``PAYLOAD_KINDS`` of damage."""
    payload = bytearray(data)
    n = max(len(payload), 1)
    if kind == "bit flips":
        for _ in range(rng.randint(1, 8)):
            j = rng.randrange(n)
            if j < len(payload):
                payload[j] ^= 1 << rng.randrange(8)
    elif kind == "burst":
        start = rng.randrange(n)
        length = min(rng.randint(2, 64), len(payload) - start)
        payload[start:start + length] = bytes(rng.randrange(256) for _ in range(max(length, 0)))
    elif kind == "truncation":
        payload = payload[: rng.randrange(n)]
    elif kind == "insertion":
        at = rng.randrange(len(payload) + 1)
        payload[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:  # deletion
        at = rng.randrange(n)
        del payload[at:at + rng.randint(1, 32)]
    return bytes(payload)


def mutate_keyed(stream: bytes, rng: random.Random, kind: str) -> bytes:
    """A keyed stream changed by someone without its key: one unit's body damaged (its MAC too, perhaps)
    with a valid CRC, a picture unit sent twice, or two units of a segment swapped."""
    units = [(u.kind, u.body) for u in segments.UnitReader().feed(stream)]
    while True:
        out = list(units)
        if kind in PAYLOAD_KINDS:
            i = rng.randrange(len(out))
            out[i] = (out[i][0], _damaged(out[i][1], rng, kind))
        elif kind == "replayed":
            i = rng.choice([i for i, u in enumerate(out) if u[0] == segments.PICTURE])
            out.insert(i + 1, out[i])
        else:  # reordered: a picture unit and the unit after it (a picture or the segment end)
            i = rng.choice([i for i, u in enumerate(out) if u[0] == segments.PICTURE])
            out[i], out[i + 1] = out[i + 1], out[i]
        mutated = _join(out)
        if mutated != stream:
            return mutated


def _header_value_change(header: bitstream.StreamHeader, rng: random.Random) -> str:
    """Change one field of a segment's parameters in place; returns what was changed."""
    choice = rng.randrange(8)
    if choice == 0 and header.ranges:
        scale = rng.choice([0.5, 0.9, 1.1, 2.0, 1e3, 1e30])
        header.ranges = [(a * scale, b * scale) for a, b in header.ranges]
        return f"range x{scale:g}"
    if choice == 1 and header.ranges:
        lo, hi = header.ranges[0]
        shift = (hi - lo) * rng.uniform(-2, 2)
        header.ranges = [(a + shift, b + shift) for a, b in header.ranges]
        return "range shifted"
    if choice == 2:
        header.fill_level = rng.randrange(1024)
        return "fill level"
    if choice == 3:
        header.orig_width, header.orig_height = rng.randint(1, 4000), rng.randint(1, 4000)
        return "original size"
    if choice == 4:
        header.fps = header.fps * rng.choice([2, 3]) / rng.choice([1, 5])
        return "frame rate"
    if choice == 5:
        header.qp = rng.randint(0, 63)
        return "QP"
    if choice == 6:
        ident = bytearray(header.jde_id if rng.random() < 0.5 else header.model_id)
        ident[rng.randrange(len(ident))] ^= 0x01
        if rng.random() < 0.5:
            header.jde_id = bytes(ident)
        else:
            header.model_id = bytes(ident)
        return "identifier"
    return "reconstruction hash"


def mutate_header(stream: bytes, header: bitstream.StreamHeader, rng: random.Random) -> tuple[bytes, str]:
    """A forged segment: a random byte of a segment header's body, or one field's value, or its end
    unit's reconstruction hash, with the unit re-signed."""
    units, _ = _units(stream)
    starts = [i for i, u in enumerate(units) if u.kind == segments.SEGMENT]
    target = rng.choice(starts)
    out = [(u.kind, u.body) for u in units]
    body = bytearray(units[target].body)
    if rng.random() < 0.5:
        body[rng.randrange(len(body))] ^= rng.randint(1, 255)
        out[target] = (segments.SEGMENT, bytes(body))
        return _join(out), "header byte"
    seg = segments.parse_segment(bytes(body))
    what = _header_value_change(seg.params, rng)
    if what == "reconstruction hash":
        end = next(i for i in range(target, len(units)) if units[i].kind == segments.SEGMENT_END)
        e = bytearray(units[end].body)
        e[-1 - rng.randrange(bitstream.ID_BYTES)] ^= 0x01
        out[end] = (segments.SEGMENT_END, bytes(e))
        return _join(out), what
    try:
        segments.segment_unit(seg)
    except (FcmError, struct.error, OverflowError):  # a value no header may hold: forge the bytes instead
        body[rng.randrange(len(body))] ^= 0xFF
        out[target] = (segments.SEGMENT, bytes(body))
        return _join(out), "header byte"
    out[target] = (segments.SEGMENT, seg.body)
    return _join(out), what


def _outcome(decode, timeout: float) -> tuple[str, str | None, str]:
    """(outcome, tracks text or None, detail) of ``decode()`` (which returns one of them itself, or raises)."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return decode()
    except Hang:
        return "hang", None, f"over {timeout:g} s"
    except FcmError as exc:
        return "clean error", None, str(exc).splitlines()[0][:120]
    except Exception as exc:  # noqa: BLE001 - what the harness is looking for
        return "crash", None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def decode_once(stream: bytes, model, device, method, timeout: float) -> tuple[str, str | None, str]:
    """(outcome, tracks text or None, detail) of decoding one stream in-process."""
    def decode():
        header, payload = bitstream.parse(stream)
        report = decode_stream(header, payload, len(stream), model, device, method=method)
        return "accepted", format_rows(report.tracker.rows), ""
    return _outcome(decode, timeout)


def decode_keyed_once(stream: bytes, model, device, method, timeout: float) -> tuple[str, str | None, str]:
    """(outcome, tracks text or None, detail) of decoding a keyed stream with its key, as a live input is."""
    def decode():
        try:
            report = decode_units([stream], model, device, method=method, stream_key=FUZZ_KEY)
        except StreamRefused as exc:
            return "refused", None, str(exc)[:120]
        if report.refusals:
            return "refused", None, report.refusals[0][:120]
        if not report.ok:
            return "clean error", None, report.summary()[:120]
        return "accepted", format_rows(report.tracker.rows), ""
    return _outcome(decode, timeout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=SAMPLE)
    ap.add_argument("--frames", type=int, default=2, help="frames of the fuzzed streams")
    ap.add_argument("--payload", type=int, default=300, help="payload mutations per codec and method")
    ap.add_argument("--header", type=int, default=100, help="header mutations per codec and method")
    ap.add_argument("--keyed", type=int, default=100, help="mutations of a keyed stream per codec and method")
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
        task = bar.add_task("fuzzing", total=len(jobs) * (args.payload + args.header + args.keyed))
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
                        mutated = mutate_payload(stream, rng, kind)
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
            if args.keyed:
                keyed_settings = dataclasses.replace(settings, stream_key=FUZZ_KEY)
                keyed, _ = encode_sequence(open_source(args.input, max_frames=args.frames), model, method, keyed_settings,
                                           device)
                outcome, tracks, detail = decode_keyed_once(keyed, model, device, method, args.timeout)
                if outcome != "accepted" or tracks != reference:
                    raise SystemExit(f"error: the unmutated keyed {codec}/{method_name} stream does not decode as the "
                                     f"unkeyed one: {outcome} {detail}")
                row = Counter()
                for i in range(args.keyed):
                    kind = KEYED_KINDS[i % len(KEYED_KINDS)]
                    outcome, tracks, detail = decode_keyed_once(mutate_keyed(keyed, rng, kind), model, device, method,
                                                                args.timeout)
                    if outcome == "accepted":
                        outcome = "identical output" if tracks == reference else "different output"
                    row[outcome] += 1
                    details.append([codec, method_name, "keyed", kind, outcome, detail])
                    bar.advance(task)
                table.append([f"{codec} / {method_name}", "keyed", args.keyed, *(row[o] for o in OUTCOMES)])
                failed = failed or row["refused"] != args.keyed  # all refused, none decoded

    print_table(f"fcm fuzz: {args.frames}-frame streams of {args.input.name}, {split.name} split, QP {args.qp}, seed {args.seed} "
                f"({(time.time() - started) / 60:.1f} min)",
                ["codec / method", "mutated", "streams", *OUTCOMES], table)
    bad = [d for d in details if d[4] in ("crash", "hang", "different output") or (d[2] == "keyed" and d[4] != "refused")]
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
