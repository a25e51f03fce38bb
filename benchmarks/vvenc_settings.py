"""Which VVenC settings close the gap to VTM low delay: raw ``-vvenc-params`` on real packed frames.

The exploration behind fcm's VVenC presets (docs/codecs.md). The bundled JDE runs on a sequence
(by default the calibration frames PETS09-S2L1 501..550, not the frames the studies report on),
the anchor packs one split, and the same frames are coded at each QP by VTM (low-delay B cfg) and
by VVenC with each setting given as ``LABEL=PRESET[,KEY=VALUE...]``, where the keys are VVenC's
own parameter names (``GOPSize``, ``NumRefPics``, ``MCTF`` ...) and ``PRESET`` is one of VVenC's
presets. Prints bytes/PSNR per point and BD-rate on PSNR against VTM. Points go to ``--out`` and are
reused (VTM costs minutes per point); times are wall seconds per frame of the run that made them.

    python benchmarks/vvenc_settings.py --setting "ld=medium,GOPSize=8,PicReordering=0,DecodingRefreshType=none"
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_codec import psnr

from fcm_common.cli.support import print_table
from fcm_common.coding.codecs import CodecError, CodecParams, make_codec
from fcm_common.coding.codecs.vvenc import VVencSession, base_settings
from fcm_common.coding.methods import method_for_encoding
from fcm_common.data.sources import open_source
from fcm_common.evaluation.bdrate import bd_rate
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import get_split
from fcm_encoder.encoder import EncodeSettings, sequence_frames


def packed(source_path: str, frames: int, split: str) -> tuple[np.ndarray, float]:
    device = torch.device("cpu")
    source = open_source(source_path, max_frames=frames)
    model = load_network(choose_network(None), device)
    sp = get_split(split)
    method = method_for_encoding("anchor", sp, 32, model.weights_id, device)
    settings = EncodeSettings(split=sp, codec="lossless",
                              range_spec=method.range_spec(None, sp, sp.is_reference(model.split_shapes(split))))
    _, frames_iter = sequence_frames(source, model, method, settings, device)
    return np.stack([f for f, _ in frames_iter]), source.fps


def vvenc_stream(frames: np.ndarray, fps: float, qp: int, preset: str, params: list[str], intra_period: int,
                 threads: int, workdir: Path) -> bytes:
    """The frames coded by VVenC's ``preset`` with the raw ``params`` (the GOP structure among them)."""
    n, h, w = frames.shape
    session = VVencSession(w, h, fps, qp, preset, [*base_settings(intra_period), *params], threads, workdir)
    try:
        for frame in frames:
            session.write(frame)
        return session.finish()
    except CodecError as exc:
        session.abort()
        raise SystemExit(f"error: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="runs/calib/PETS09-S2L1-501-550")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--split", default="alt1")
    parser.add_argument("--qps", default="12,17,22,27")
    parser.add_argument("--setting", action="append", default=[], help="LABEL=PRESET[,KEY=VALUE...] (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="VVenC threads (1: comparable with single-threaded VTM)")
    parser.add_argument("--intra-period", type=int, default=32)
    parser.add_argument("--vtm-dir", default=None)
    parser.add_argument("--out", default="runs/vvenc_settings")
    args = parser.parse_args()

    qps = [int(q) for q in args.qps.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "points.jsonl"
    points = [json.loads(line) for line in store.read_text().splitlines()] if store.is_file() else []
    frames, fps = packed(args.source, args.frames, args.split)
    base = {"source": str(Path(args.source).resolve()), "frames": len(frames), "split": args.split,
            "intra_period": args.intra_period}
    vv = make_codec("vvenc")
    n, h, w = frames.shape
    runs = [("VTM LD-B", None, [])]
    for text in args.setting:
        label, _, spec = text.partition("=")
        preset, *params = spec.split(",")
        runs.append((label, preset, params))
    curves = {}
    for label, preset, params in runs:
        curve = []
        for qp in qps:
            key = {**base, "preset": preset, "params": params, "qp": qp, "threads": args.threads if preset else 1}
            found = next((p for p in points if all(p.get(k) == v for k, v in key.items())), None)
            if found is None:
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    if preset is None:
                        vtm = make_codec("vtm", vtm_dir=args.vtm_dir)
                        encoder = vtm.open_encoder(w, h, CodecParams(qp=qp, fps=fps, intra_period=args.intra_period), Path(tmp))
                        for f in frames:
                            encoder.write(f)
                        payload = encoder.finish()
                    else:
                        payload = vvenc_stream(frames, fps, qp, preset, params, args.intra_period, args.threads, Path(tmp))
                    seconds = (time.perf_counter() - start) / n
                    decoded = list(vv.decode(payload, w, h, n, Path(tmp)))
                found = {**key, "bytes": len(payload), "psnr": float(np.mean([psnr(a, b) for a, b in zip(frames, decoded)])),
                         "s_per_frame": seconds}
                points.append(found)
                with open(store, "a") as fh:
                    fh.write(json.dumps(found) + "\n")
            curve.append(found)
        curves[label] = curve
    ref = curves["VTM LD-B"]
    rows = []
    for label, curve in curves.items():
        bd = bd_rate([p["bytes"] for p in ref], [p["psnr"] for p in ref], [p["bytes"] for p in curve], [p["psnr"] for p in curve])
        speed = sum(p["s_per_frame"] for p in ref) / sum(p["s_per_frame"] for p in curve)
        rows.append([label, f"{100 * bd:+.1f}%", f"{np.mean([p['s_per_frame'] for p in curve]):.2f}", f"{speed:.0f}x",
                     " ".join(f"{p['bytes']}/{p['psnr']:.2f}" for p in curve)])
    print_table(f"anchor {args.split} frames {w}x{h}, {Path(args.source).name} first {n}, QPs {args.qps}, "
                f"VVenC {args.threads} thread(s)", ["setting", "BD-rate PSNR vs VTM", "s/frame", "speed", "bytes/PSNR per QP"], rows)


if __name__ == "__main__":
    main()
