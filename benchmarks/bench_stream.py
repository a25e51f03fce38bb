"""make bench-stream: live streaming on this machine, paced sources, capture-to-tracks latency.

For each source (the shipped sample and the CC-BY clip), frame rate (7 and 10 fps) and transport
(a pipe, TCP on loopback), ``fcm-encode SOURCE --realtime --fps F -o -|tcp://...`` runs as a
process with its default method (advMSFC, backbone, QP 32, VVenC; a live output codes with the
low-latency GOP) and one torch thread (the two processes share the machine), and this process decodes
and tracks what arrives (the library's decoder, so that
every frame's latency is at hand): latency from capture (the encoder reading the frame, at its paced
time) to the frame's tracks, p50 / p95 / max; the first and last quarter's medians (a backlog that
grows shows as a last quarter far above the first); frames lost or dropped; and the two halves of the
median: capture to the picture unit leaving the encoder (arriving here), and from there to tracks.

    python benchmarks/bench_stream.py [--frames 100] [--fps 7 10] [--transports pipe tcp]
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
        self.chunks, self.reader, self.header = chunks, segments.UnitReader(), None
        self.arrivals: list[tuple[float, float]] = []

    def __iter__(self):
        for chunk in self.chunks:
            if chunk is not BREAK:
                now = time.time()
                for unit in self.reader.feed(chunk):
                    if isinstance(unit, segments.Damage):
                        continue
                    if unit.kind == segments.SEGMENT:
                        self.header = segments.parse_segment(unit.body)
                    elif unit.kind == segments.PICTURE and self.header is not None:
                        picture = segments.parse_picture(unit.body, self.header)
                        self.arrivals += [(record.capture_time, now) for record in picture.records]
            yield chunk

    def stop(self) -> None:
        stop = getattr(self.chunks, "stop", None)
        if stop is not None:
            stop()


def run(model, source: Path, fps: float, transport: str, frames: int, extra: list[str]) -> dict:
    exe = Path(sys.executable).parent / "fcm-encode"
    args = [str(exe), str(source), "--realtime", "--fps", str(fps), "--frames", str(frames), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread each: encoder and decoder share the cores
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
                          on_frame=lambda rows, number, latency: tracked.append(time.time()))
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
        "source": source.name[:24], "fps": fps, "transport": transport, "frames": report.frames,
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
    parser.add_argument("--fps", type=float, nargs="+", default=[7.0, 10.0])
    parser.add_argument("--transports", nargs="+", default=["pipe", "tcp"], choices=["pipe", "tcp"])
    parser.add_argument("--sources", nargs="+", type=Path, default=[SAMPLE, CLIP])
    parser.add_argument("--encode-args", default="", help="extra fcm-encode options, e.g. '--preset faster'")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the decoder's share; the encoder process gets one thread too (OMP_NUM_THREADS)
    model = load_network(choose_network(None), torch.device("cpu"))
    rows = []
    for source in args.sources:
        if not source.exists():
            print(f"skipped (not found): {source}", file=sys.stderr)
            continue
        for fps in args.fps:
            for transport in args.transports:
                r = run(model, source, fps, transport, args.frames, args.encode_args.split())
                if r["status"]:
                    print(f"fcm-encode failed ({source.name}, {fps} fps, {transport}): {r['stderr'].strip()}",
                          file=sys.stderr)
                rows.append(r)
                pace = "kept" if r["last_q"] <= r["first_q"] + 1000 / fps else "behind"
                print(f"{source.name} {fps:g} fps {transport}: {r['frames']} frames, p50 {r['p50']:.0f} ms, "
                      f"p95 {r['p95']:.0f} ms, max {r['max']:.0f} ms, quarters {r['first_q']:.0f} -> "
                      f"{r['last_q']:.0f} ms ({pace})", file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_table(
        f"make bench-stream, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load average {load:.1f} at the end; latency = capture -> tracks (ms)",
        ["source", "fps", "transport", "frames", "lost", "dropped", "p50", "p95", "max", "1st quarter", "last quarter",
         "pace", "to unit out p50", "unit to tracks p50"],
        [[r["source"], f"{r['fps']:g}", r["transport"], r["frames"], r["lost"], r["dropped"], f"{r['p50']:.0f}",
          f"{r['p95']:.0f}", f"{r['max']:.0f}", f"{r['first_q']:.0f}", f"{r['last_q']:.0f}",
          "kept" if r["last_q"] <= r["first_q"] + 1000 / r["fps"] else "behind", f"{r['encoder_p50']:.0f}",
          f"{r['decoder_p50']:.0f}"] for r in rows],
    )
    return 0 if all(r["status"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
