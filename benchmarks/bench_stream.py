"""make bench-stream: live streaming on this machine, paced sources, capture-to-tracks latency.

For each source (the shipped sample and the CC-BY clip), QP (``--qps``: the rate points where
advMSFC keeps >= 90 % of the uncompressed MOTA), frame rate (7 and 10 fps) and transport (a pipe,
TCP on loopback), ``fcm-encode SOURCE --realtime --fps F --qp QP -o -|tcp://...`` runs as a
process with its defaults (advMSFC, backbone, VVenC; a live output codes with the low-latency GOP;
its torch threads, NN part 1 engine and frame skipping as it picks them: nothing is set by hand), and
this process decodes and tracks what arrives (the library's decoder, with the threads fcm-decode
picks for a live stream, so that every frame's latency is at hand). Then an overload row per QP: the
sample paced at ``--overload-fps`` (25), more than a small machine codes, through a pipe.

Per run: latency from capture (the encoder reading the frame, at its paced time) to the frame's
tracks, p50 / p95 / max; the first and last quarter's medians (a backlog that grows shows as a last
quarter far above the first); frames decoded, skipped by the encoder (it was behind:
``--max-latency``), the effective frame rate, frames lost or dropped; the two halves of the median
(capture to the picture unit leaving the encoder, and from there to tracks); the rate; and, for a
source with ground truth, the live run's MOTA and the MOTA of the same encoding from the file (no
pacing: every frame, NN part 1 on torch).

    python benchmarks/bench_stream.py [--frames 100] [--qps 32] [--fps 7 10] [--transports pipe tcp]
                                      [--overload-fps 25] [--sources ...] [--encode-args '--preset faster']
                                      [--key-file KEY]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcm_common.cli.support import print_table  # noqa: E402
from fcm_common.coding import segments  # noqa: E402
from fcm_common.coding.stream_key import read_key_file  # noqa: E402
from fcm_common.core.errors import FcmError  # noqa: E402
from fcm_common.core.threads import choose_threads  # noqa: E402
from fcm_common.data.sources import open_source  # noqa: E402
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate  # noqa: E402
from fcm_common.model.bundled import choose_network, load_network  # noqa: E402
from fcm_common.streaming.transport import BREAK, TcpListener, read_stdin  # noqa: E402
from fcm_decoder.stream_decoder import decode_units  # noqa: E402

SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"
CLIP = ROOT.parent / "shared" / "data" / "clips" / "one-by-one-person-detection.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ArrivalTimes:
    """The byte pieces, passed on, and when each picture unit arrived: (capture time, arrival time)."""

    def __init__(self, chunks):
        self.chunks, self.reader, self.header, self.keyed = chunks, segments.UnitReader(), None, False
        self.arrivals: list[tuple[float, float]] = []

    def __iter__(self):
        for chunk in self.chunks:
            if chunk is not BREAK:
                now = time.time()
                for unit in self.reader.feed(chunk):
                    if isinstance(unit, segments.Damage):
                        continue
                    # a keyed stream's units end in their MAC: cut here to read the times (the decoder checks it)
                    if unit.kind == segments.SEGMENT:
                        self.keyed = segments.is_keyed_segment(unit.body)
                        self.header = segments.parse_segment(self._body(unit))
                    elif unit.kind == segments.PICTURE and self.header is not None:
                        picture = segments.parse_picture(self._body(unit), self.header)
                        self.arrivals += [(record.capture_time, now) for record in picture.records]
            yield chunk

    def _body(self, unit) -> bytes:
        return unit.body[: -segments.TAG_BYTES] if self.keyed else unit.body

    def stop(self) -> None:
        stop = getattr(self.chunks, "stop", None)
        if stop is not None:
            stop()


def _mota(source: Path, rows, frames: int) -> float:
    """MOTA (%) of ``rows`` on the source's first ``frames`` frames; NaN without ground truth."""
    seq = open_source(source)
    if seq.gt_path is None:
        return float("nan")
    result = evaluate([SequenceResult(seq.name, seq.gt_path, rows, seq.seqinfo_path, max_frame=frames)])
    return 100 * float(result.iloc[0]["MOTA"])


def file_mota(model, source: Path, qp: int, frames: int, extra: list[str]) -> float:
    """MOTA (%) of the same encoding from the file: every frame, NN part 1 on torch, decoded whole."""
    if open_source(source).gt_path is None:
        return float("nan")
    exe = Path(sys.executable).parent / "fcm-encode"
    enc = subprocess.run([str(exe), str(source), "--qp", str(qp), "--frames", str(frames), *extra, "-o", "-"],
                         capture_output=True, env=dict(os.environ))
    if enc.returncode:
        print(f"fcm-encode (file) failed: {enc.stderr.decode().strip()}", file=sys.stderr)
        return float("nan")
    report = decode_units([enc.stdout], model, torch.device("cpu"))
    return _mota(source, report.tracker.rows, frames)


def run(model, source: Path, qp: int, fps: float, transport: str, frames: int, extra: list[str],
        key_file: Path | None = None) -> dict:
    exe = Path(sys.executable).parent / "fcm-encode"
    args = [str(exe), str(source), "--realtime", "--fps", str(fps), "--qp", str(qp), "--frames", str(frames), *extra]
    if key_file is not None:  # a keyed stream: every unit sealed by the encoder and checked here
        args += ["--key-file", str(key_file)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the threads the encoder picks
    if transport == "tcp":
        listener = TcpListener(f"tcp://127.0.0.1:{_free_port()}")
        host, port = listener.address
        enc = subprocess.Popen(args + ["-o", f"tcp://{host}:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
        chunks = listener
    else:
        enc = subprocess.Popen(args + ["-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        chunks = read_stdin(enc.stdout)
    warnings: list[str] = []
    timed = _ArrivalTimes(chunks)
    tracked: list[float] = []
    start = time.time()
    report = decode_units(timed, model, torch.device("cpu"), on_warning=warnings.append,
                          on_frame=lambda rows, number, latency: tracked.append(time.time()),
                          stream_key=read_key_file(key_file) if key_file is not None else None)
    wall = time.time() - start
    err = enc.stderr.read()
    err = err.decode() if isinstance(err, bytes) else err
    status = enc.wait()
    lat = np.asarray(report.latencies) * 1000
    quarter = max(len(lat) // 4, 1)
    # the two halves of each frame's latency (when every frame arrived: pictures and frames pair up)
    if len(timed.arrivals) == len(tracked) == len(lat):
        out = np.asarray([arrived - captured for captured, arrived in timed.arrivals]) * 1000
        decode = np.asarray([done - arrived for (_, arrived), done in zip(timed.arrivals, tracked)]) * 1000
    else:
        out = decode = np.asarray([float("nan")])
    return {
        "source": source.name[:24], "qp": qp, "fps": fps, "transport": transport, "frames": report.frames,
        "skipped": report.skipped, "effective_fps": report.effective_fps, "kbps": report.kbps,
        "mota": _mota(source, report.tracker.rows, frames) if report.tracker else float("nan"),
        "lost": report.lost_frames, "dropped": "yes" if "dropped" in err else "no",
        "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "max": float(lat.max()) if len(lat) else float("nan"),
        "first_q": float(np.median(lat[:quarter])) if len(lat) else float("nan"),
        "last_q": float(np.median(lat[-quarter:])) if len(lat) else float("nan"),
        "encoder_p50": float(np.median(out)), "decoder_p50": float(np.median(decode)),
        "status": status, "wall": wall, "warnings": warnings, "stderr": err if status else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--qps", type=int, nargs="+", default=[32],
                        help="the rate points: where advMSFC backbone keeps >= 90 %% of the uncompressed MOTA")
    parser.add_argument("--fps", type=float, nargs="+", default=[7.0, 10.0])
    parser.add_argument("--transports", nargs="+", default=["pipe", "tcp"], choices=["pipe", "tcp"])
    parser.add_argument("--sources", nargs="+", type=Path, default=[SAMPLE, CLIP])
    parser.add_argument("--overload-fps", type=float, nargs="*", default=[25.0],
                        help="the sample paced faster than the machine codes, through a pipe (none: no overload row)")
    parser.add_argument("--no-mota", action="store_true", help="skip the MOTA columns (the file encodings)")
    parser.add_argument("--encode-args", default="", help="extra fcm-encode options, e.g. '--preset faster'")
    parser.add_argument("--key-file", type=Path, help="keyed live streams (fcm-encode --key-file; the decoder checks "
                        "every unit's MAC); the file encodings for the MOTA column stay unkeyed")
    args = parser.parse_args()
    if args.key_file is not None:
        try:
            read_key_file(args.key_file)  # a bad key file is one error line before any run
        except FcmError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    threads = choose_threads(live=True)  # the decoder's share, as fcm-decode picks it for a live stream
    if threads:
        torch.set_num_threads(threads)
    model = load_network(choose_network(None), torch.device("cpu"))
    extra = args.encode_args.split()
    runs = [(source, qp, fps, transport) for source in args.sources for qp in args.qps for fps in args.fps
            for transport in args.transports]
    runs += [(SAMPLE, qp, fps, "pipe") for qp in args.qps for fps in args.overload_fps]
    rows, reference = [], {}
    for source, qp, fps, transport in runs:
        if not source.exists():
            print(f"skipped (not found): {source}", file=sys.stderr)
            continue
        r = run(model, source, qp, fps, transport, args.frames, extra, args.key_file)
        if r["status"]:
            print(f"fcm-encode failed ({source.name}, QP {qp}, {fps} fps, {transport}): {r['stderr'].strip()}",
                  file=sys.stderr)
        if not args.no_mota and (source, qp) not in reference:
            reference[source, qp] = file_mota(model, source, qp, args.frames, extra)
        r["file_mota"] = reference.get((source, qp), float("nan"))
        rows.append(r)
        pace = "kept" if r["last_q"] <= r["first_q"] + 1000 / fps else "behind"
        print(f"{source.name} QP {qp} {fps:g} fps {transport}: {r['frames']} frames, {r['skipped']} skipped, p50 "
              f"{r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, max {r['max']:.0f} ms, quarters {r['first_q']:.0f} -> "
              f"{r['last_q']:.0f} ms ({pace}), MOTA {r['mota']:.1f} (file {r['file_mota']:.1f})",
              file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_table(
        f"make bench-stream, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load average {load:.1f} at the end; latency = capture -> tracks (ms); "
        f"{args.frames} source frames a run; encoder args: {args.encode_args or 'none'}"
        f"{'; keyed' if args.key_file else ''}",
        ["source", "QP", "fps", "transport", "frames", "skipped", "effective fps", "lost", "dropped", "p50", "p95",
         "max", "1st quarter", "last quarter", "pace", "to unit out p50", "unit to tracks p50", "kbps", "MOTA",
         "MOTA file"],
        [[r["source"], r["qp"], f"{r['fps']:g}", r["transport"], r["frames"], r["skipped"], f"{r['effective_fps']:.1f}",
          r["lost"], r["dropped"], f"{r['p50']:.0f}", f"{r['p95']:.0f}", f"{r['max']:.0f}", f"{r['first_q']:.0f}",
          f"{r['last_q']:.0f}", "kept" if r["last_q"] <= r["first_q"] + 1000 / r["fps"] else "behind",
          f"{r['encoder_p50']:.0f}", f"{r['decoder_p50']:.0f}", f"{r['kbps']:.1f}", f"{r['mota']:.1f}",
          f"{r['file_mota']:.1f}"] for r in rows],
    )
    return 0 if all(r["status"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
