"""Inner codecs on the same real packed features, against VTM low delay (``make bench-codec``).

The bundled JDE runs on real footage (default: the shipped PETS09-S2L1 sample); each *stream*
(method/split, e.g. the anchor's ALT1 frames or advMSFC's backbone frames) is coded at four QPs
by each *codec configuration* (``vtm``: VTM with its low-delay B cfg; ``vvenc:PRESET[:ra][:tN]``:
VVenC through ffmpeg with one of fcm's presets, low delay unless ``ra``, N encoder threads). Every point goes through the whole pipeline, as
fcm-encode + fcm-decode run it: bitstream bytes, the PSNR of the decoded 10-bit frames against the
packed ones (peak 1023), encoder and decoder seconds per frame, and MOTA of the decoded tracks.
Each configuration is then summarised against the reference (VTM): BD-rate on PSNR and on MOTA
(over the efficient points of each MOTA curve), and its encoding speed as a ratio of the inner
encoder's own wall time (fed the packed frames back to back; in fcm-encode VVenC overlaps the
network, which would hide its cost).

Points are kept in ``--out``/points.jsonl and reused by later runs with the same settings (a VTM
point costs minutes), so adding a configuration only codes that configuration. Timings come from
the run that made each point: run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from fcm_common.cli.support import print_table
from fcm_common.coding import bitstream
from fcm_common.coding.codecs import CodecError, decoder_codec, make_codec
from fcm_common.coding.codecs.vvenc import preset_settings
from fcm_common.coding.methods import method_for_encoding
from fcm_common.core.atomic import write_text_atomic
from fcm_common.data.sources import open_source
from fcm_common.evaluation.bdrate import BDRateError, bd_rate, efficient_points
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.splits import get_split
from fcm_ctc.experiment import code_and_track, evaluate_point
from fcm_encoder.encoder import EncodeSettings, sequence_frames

# advMSFC at a fixed k (27: what the bundled backbone table keeps at QP 12 and 17), so that its four
# points are one rate-quality curve; the anchor at the QPs where its MOTA falls from full to little
DEFAULT_STREAMS = ("anchor:alt1:17,22,27,32", "advmsfc:backbone:7,12,17,22:27")
DEFAULT_CONFIGS = ("vtm", "vvenc:vvenc-medium", "vvenc:faster", "vvenc:fast", "vvenc:medium", "vvenc:slow", "vvenc:medium:ra")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1023**2 / mse)


def parse_stream(text: str) -> tuple[str, str, list[int], int | None]:
    """``METHOD:SPLIT:QP,QP,..[:K]`` (K: advMSFC channels kept at every QP instead of its QACT table)."""
    method, split, qps, *k = text.split(":")
    return method, split, [int(q) for q in qps.split(",")], int(k[0]) if k else None


def parse_config(text: str) -> dict:
    """``vtm`` or ``vvenc:PRESET[:ra][:tN]`` -> codec, preset, GOP (ld unless ``ra``), encoder
    threads (``tN``; default 0, the codec's own choice)."""
    parts = text.split(":")
    config = {"label": text, "codec": parts[0], "preset": "medium", "gop": "ld", "threads": 0}
    if parts == ["vtm"]:
        return config
    if parts[0] != "vvenc" or len(parts) < 2:
        raise SystemExit(f"error: configuration '{text}' is not vtm or vvenc:PRESET[:ra][:tN]")
    config["preset"] = parts[1]
    for extra in parts[2:]:
        if extra == "ra":
            config["gop"] = "ra"
        elif extra.startswith("t") and extra[1:].isdigit():
            config["threads"] = int(extra[1:])
        else:
            raise SystemExit(f"error: configuration '{text}': '{extra}' is neither ra nor tN")
    return config


def codec_settings(config: dict) -> str:
    """What the configuration hands the encoder (part of a point's key: a preset whose definition
    changes does not reuse the points of the old one)."""
    if config["codec"] == "vtm":
        return f"VTM {config['gop']} cfg"
    preset, extra = preset_settings(config["preset"], config["gop"])
    return ":".join([f"preset={preset}", f"gop={config['gop']}", *extra])


class Bench:
    def __init__(self, args):
        self.args = args
        torch.set_num_threads(args.torch_threads)
        self.device = torch.device("cpu")
        self.model = load_network(choose_network(None), self.device)
        self.source = open_source(args.source, max_frames=args.frames)
        if self.source.gt_path is None:
            raise SystemExit(f"error: {args.source}: no gt/gt.txt to measure MOTA against")
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.points_file = self.out / "points.jsonl"
        self.points = [json.loads(line) for line in self.points_file.read_text().splitlines()] if self.points_file.is_file() else []
        self._originals: dict = {}

    def key(self, stream: str, config: dict, qp: int) -> dict:
        method, split, _, channels = parse_stream(stream)
        name = f"{method}:{split}" + (f":{channels}" if channels else "")  # not the QP list: points are shared
        return {"source": str(Path(self.args.source).resolve()), "frames": self.source.length, "stream": name,
                "config": config["label"], "codec_settings": codec_settings(config), "qp": qp,
                "intra_period": self.args.intra_period, "jde": self.model.weights_id}

    def cached(self, key: dict) -> dict | None:
        return next((p for p in self.points if all(p.get(k) == v for k, v in key.items())), None)

    def settings(self, method, split: str, qp: int, config: dict) -> EncodeSettings:
        sp = get_split(split)
        codec = make_codec(config["codec"], vtm_dir=self.args.vtm_dir)
        return EncodeSettings(
            split=sp, qp=qp, codec=codec, intra_period=self.args.intra_period, preset=config["preset"], gop=config["gop"],
            threads=config["threads"], range_spec=method.range_spec(None, sp, sp.is_reference(self.model.split_shapes(split))),
        )

    def originals(self, method_name: str, split: str, qp: int, method) -> list[np.ndarray]:
        """The packed frames the codecs are fed (they depend on the QP only through advMSFC's QACT)."""
        key = (method_name, split, tuple(k for k, _, _ in method.coded_shapes(self.model.split_shapes(split))))
        if key not in self._originals:
            settings = self.settings(method, split, qp, {"codec": "lossless", "preset": "medium", "gop": "ld", "threads": 0})
            _, frames = sequence_frames(self.source, self.model, method, settings, self.device)
            self._originals[key] = [f for f, _ in frames]
        return self._originals[key]

    def codec_seconds(self, originals: list[np.ndarray], settings: EncodeSettings) -> float:
        """Wall seconds per frame of the inner encoder alone, fed the packed frames back to back.

        In fcm-encode VVenC works in its own process while the network computes the next frames,
        so the encoder stage of the pipeline shows only the time it was waited for; VTM encodes
        in ``finish``, where the pipeline's stage time is its whole time."""
        h, w = originals[0].shape
        with tempfile.TemporaryDirectory(prefix="fcm-bench-codec-") as tmp:
            start = time.perf_counter()
            encoder = settings.codec.open_encoder(w, h, settings.codec_params(self.source.fps), Path(tmp))
            for frame in originals:
                encoder.write(frame)
            encoder.finish()
            return (time.perf_counter() - start) / len(originals)

    def with_codec_seconds(self, point: dict, stream: str, config: dict, qp: int, method=None) -> dict:
        if "codec_encode_s" in point:
            return point
        if config["codec"] == "vtm":
            point["codec_encode_s"] = point["encode_s"]
        else:
            method_name, split, _, channels = parse_stream(stream)
            if method is None:
                options = {"channels": channels} if channels else {}
                method = method_for_encoding(method_name, get_split(split), qp, self.model.weights_id, self.device, **options)
            originals = self.originals(method_name, split, qp, method)
            point["codec_encode_s"] = self.codec_seconds(originals, self.settings(method, split, qp, config))
        write_text_atomic(self.points_file, "".join(json.dumps(p) + "\n" for p in self.points))
        return point

    def point(self, stream: str, config: dict, qp: int) -> dict:
        key = self.key(stream, config, qp)
        found = self.cached(key)
        if found is not None:
            return self.with_codec_seconds(found, stream, config, qp)
        method_name, split, _, channels = parse_stream(stream)
        options = {"channels": channels} if channels else {}
        method = method_for_encoding(method_name, get_split(split), qp, self.model.weights_id, self.device, **options)
        originals = self.originals(method_name, split, qp, method)
        settings = self.settings(method, split, qp, config)
        with tempfile.TemporaryDirectory(prefix="fcm-bench-codec-") as tmp:
            stream_path = Path(tmp) / "stream.bin"
            result = code_and_track(self.source, self.model, method, settings, self.device, stream_path=stream_path)
            metrics = evaluate_point(result, self.source.gt_path, "mot", self.source.seqinfo_path, max_frame=self.source.length)
            header, payload = bitstream.parse(stream_path.read_bytes())
            codec = decoder_codec(header.codec, "auto", vtm_dir=self.args.vtm_dir)
            start = time.perf_counter()
            decoded = list(codec.decode(payload, header.coded_width, header.coded_height, header.num_frames, Path(tmp)))
            decode_s = time.perf_counter() - start
        frames = len(originals)
        point = {
            **key, "bytes": result.bytes, "kbps": result.kbps, "coded_frame": f"{header.coded_width}x{header.coded_height}",
            "channels": result.channels, "psnr": float(np.mean([psnr(a, b) for a, b in zip(originals, decoded)])),
            "encode_s": result.seconds["encode"] / frames, "decode_s": decode_s / frames, "mota": metrics["MOTA"],
            "machine": f"{platform.node()} {torch.get_num_threads()} torch threads", "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        self.points.append(point)
        return self.with_codec_seconds(point, stream, config, qp, method)


def bd(reference: list[dict], test: list[dict], quality: str) -> str:
    """BD-rate of ``test`` against ``reference`` on ``quality`` (psnr, or mota over efficient points)."""
    def curve(points):
        rates, values = [p["kbps"] for p in points], [p[quality] for p in points]
        if quality == "mota":
            keep = efficient_points(rates, values)
            rates, values = [rates[i] for i in keep], [values[i] for i in keep]
        return rates, values
    try:
        return f"{100 * bd_rate(*curve(reference), *curve(test)):+.1f}%"
    except BDRateError as exc:
        return f"n/a ({exc})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="samples/PETS09-S2L1-551-650", help="MOTChallenge sequence folder (with gt)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--stream", action="append", help=f"METHOD:SPLIT:QP,QP,QP,QP[:K] (default {' and '.join(DEFAULT_STREAMS)})")
    parser.add_argument("--config", action="append", help=f"vtm or vvenc:PRESET[:ra][:tN] (random access, N encoder threads; default {', '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--reference", default="vtm", help="the configuration BD-rates and speed-ups are measured against")
    parser.add_argument("--intra-period", type=int, default=32)
    parser.add_argument("--vtm-dir", default=None, help="VTM tree (default $FCM_VTM_DIR, then PATH)")
    parser.add_argument("--out", default="runs/bench_codec", help="folder of the points (reused by later runs)")
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args()

    streams = args.stream or list(DEFAULT_STREAMS)
    configs = [parse_config(c) for c in (args.config or DEFAULT_CONFIGS)]
    if args.reference not in [c["label"] for c in configs]:
        configs.insert(0, parse_config(args.reference))
    bench = Bench(args)
    try:
        make_codec("vtm", vtm_dir=args.vtm_dir)  # a missing VTM is named before any work
    except CodecError as exc:
        if any(c["codec"] == "vtm" for c in configs):
            print(f"vtm skipped: {exc}")
            configs = [c for c in configs if c["codec"] != "vtm"]
    results: dict = {}
    todo = [(s, c, q) for s in streams for c in configs for q in parse_stream(s)[2]]
    with Progress() as bar:
        task = bar.add_task("coding", total=len(todo))
        for stream, config, qp in todo:
            bar.update(task, description=f"{stream.rsplit(':', 1)[0]} {config['label']} QP {qp}")
            results.setdefault(stream, {}).setdefault(config["label"], []).append(bench.point(stream, config, qp))
            bar.advance(task)

    for stream, by_config in results.items():
        ref = by_config.get(args.reference)
        rows = []
        for label, points in by_config.items():
            encode = sum(p["codec_encode_s"] for p in points)
            row = [label, f"{np.mean([p['codec_encode_s'] for p in points]):.3f}", f"{np.mean([p['decode_s'] for p in points]):.3f}"]
            if ref is not None:
                row += [f"{sum(p['codec_encode_s'] for p in ref) / encode:.1f}x", bd(ref, points, "psnr"), bd(ref, points, "mota")]
            rows.append(row)
        method, split, qps, channels = parse_stream(stream)
        first = next(iter(by_config.values()))[0]
        header = ["configuration", "enc s/frame", "dec s/frame"]
        if ref is not None:
            header += [f"speed vs {args.reference}", "BD-rate PSNR", "BD-rate MOTA"]
        print_table(f"{method} {split} frames ({first['coded_frame']}{f', {channels} channels' if channels else ''}), "
                    f"{bench.source.name} first {bench.source.length} frames, "
                    f"QPs {','.join(map(str, qps))}, intra period {args.intra_period}", header, rows)
        detail = [[label, p["qp"], p["channels"], p["bytes"], f"{p['kbps']:.1f}", f"{p['psnr']:.2f}", f"{100 * p['mota']:.1f}",
                   f"{p['codec_encode_s']:.3f}"] for label, points in by_config.items() for p in points]
        print_table(f"{method} {split}: points", ["configuration", "QP", "channels", "bytes", "kbps", "PSNR dB", "MOTA %", "enc s/frame"], detail)


if __name__ == "__main__":
    main()
