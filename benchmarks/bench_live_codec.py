"""VVenC presets for live sources: rate at equal MOTA and what each costs in time (issue 29).

The sample coded as a live output codes it (advMSFC backbone with its QACT channels, VVenC with the
low-latency GOP ``ll``, intra period 32, no worker threads), from the file so that every frame is
coded, at each QP of ``--qps`` with each preset of ``--presets``; then decoded and tracked. Per point:
the rate, MOTA, and the inner encoder's time per picture fed at the source's pace (``--fps``), the
first picture of a segment (process start-up and the intra picture) and the others (median). Per
preset against the first: BD-rate on MOTA (over the efficient points of each curve; negative: less
rate for the same MOTA).

    python benchmarks/bench_live_codec.py [--qps 12 17 22 27] [--presets medium faster] [--frames 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcm_common.cli.support import print_table  # noqa: E402
from fcm_common.coding.codecs import NO_WORKER_THREADS, make_codec  # noqa: E402
from fcm_common.coding.methods import method_for_encoding  # noqa: E402
from fcm_common.data.sources import open_source  # noqa: E402
from fcm_common.evaluation.bdrate import BDRateError, bd_rate, efficient_points  # noqa: E402
from fcm_common.model.bundled import choose_network, load_network  # noqa: E402
from fcm_common.model.splits import get_split  # noqa: E402
from fcm_ctc.experiment import code_and_track, evaluate_point  # noqa: E402
from fcm_encoder.encoder import EncodeSettings, sequence_frames  # noqa: E402

SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"


def paced_codec_times(frames, settings: EncodeSettings, fps: float) -> tuple[float, float]:
    """(first picture, median of the others) seconds from writing a picture to VVenC until it is given
    out less the frame interval it holds it, frames written at ``fps`` (one segment's session)."""
    h, w = frames[0].shape
    out: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fcm-bench-live-") as tmp:
        encoder = settings.codec.open_encoder(w, h, settings.codec_params(fps), Path(tmp))
        time.sleep(0.5)  # the session is started ahead, as the encoder does
        reader = threading.Thread(target=lambda: out.extend(time.perf_counter() for _ in encoder.pictures()))
        reader.start()
        written = []
        for frame in frames[: settings.segment_length]:
            written.append(time.perf_counter())
            encoder.write(frame)
            time.sleep(max(0.0, written[-1] + 1 / fps - time.perf_counter()))
        encoder.close()
        reader.join()
    # a picture comes out when the next one is written (VVenC holds one): its time is from that write
    delays = [o - (written[i + 1] if i + 1 < len(written) else written[i]) for i, o in enumerate(out)]
    return delays[0], statistics.median(delays[1:-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qps", type=int, nargs="+", default=[12, 17, 22, 27])
    parser.add_argument("--presets", nargs="+", default=["medium", "faster"])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--fps", type=float, default=7.0, help="pace of the codec timing")
    parser.add_argument("--model", default=None, help="advMSFC model (default: the bundled backbone model)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    jde = load_network(choose_network(None), device)
    source = open_source(SAMPLE, max_frames=args.frames)
    split = get_split("backbone")
    points: dict[str, list[dict]] = {p: [] for p in args.presets}
    rows = []
    for qp in args.qps:
        options = {"model_path": args.model} if args.model else {}
        method = method_for_encoding("advmsfc", split, qp, jde.weights_id, device, **options)
        spec = method.range_spec(None, split, split.is_reference(jde.split_shapes(split.name)))
        frames = None
        for preset in args.presets:
            settings = EncodeSettings(split=split, qp=qp, codec=make_codec("vvenc"), intra_period=32, preset=preset,
                                      gop="ll", range_spec=spec, threads=NO_WORKER_THREADS)
            result = code_and_track(source, jde, method, settings, device)
            mota = 100 * evaluate_point(result, source.gt_path, "mot", source.seqinfo_path, max_frame=args.frames)["MOTA"]
            if frames is None:
                _, packed = sequence_frames(source, jde, method, settings, device)
                frames = [f for f, _ in packed][:32]
            first, other = paced_codec_times(frames, settings, args.fps)
            points[preset].append({"kbps": result.kbps, "mota": mota})
            rows.append([qp, preset, result.channels, f"{result.kbps:.2f}", f"{mota:.1f}", f"{1000 * first:.0f}",
                         f"{1000 * other:.0f}"])
            print(f"QP {qp} {preset}: {result.kbps:.2f} kbps, MOTA {mota:.1f}, first picture {1000 * first:.0f} ms, "
                  f"others {1000 * other:.0f} ms", file=sys.stderr, flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    print_table(
        f"VVenC presets for live sources: advMSFC backbone, --gop ll, intra period 32, {args.frames} frames of "
        f"{source.name}; codec time per picture fed at {args.fps:g} fps, less the interval it holds it; {cpu}, "
        f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}",
        ["QP", "preset", "channels", "kbps", "MOTA %", "first picture ms", "other pictures ms p50"], rows)
    reference = args.presets[0]
    out = []
    for preset in args.presets[1:]:
        curves = []
        for name in (reference, preset):
            rates, motas = [p["kbps"] for p in points[name]], [p["mota"] for p in points[name]]
            keep = efficient_points(rates, motas)
            curves += [[rates[i] for i in keep], [motas[i] for i in keep]]
        try:
            out.append([preset, f"{100 * bd_rate(*curves):+.1f}%"])
        except BDRateError as exc:
            out.append([preset, f"- ({exc})"])
    if out:
        print_table(f"BD-rate on MOTA against {reference} (rate for the same MOTA)", ["preset", "BD-rate"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
