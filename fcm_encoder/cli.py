"""``fcm-encode``: JDE part 1 on a video or sequence, feature coding, one bitstream file."""

from __future__ import annotations

from pathlib import Path

import click

from fcm_common.cli.support import (
    FcmCommand,
    jde_cfg_option,
    print_table,
    progress,
    resolve_weights,
    stdout_console,
    weights_option,
)
from fcm_common.coding.codecs import CODEC_NAMES
from fcm_common.coding.codecs.base import GOP_STRUCTURES
from fcm_common.coding.codecs.vvenc import PRESETS
from fcm_common.core.atomic import write_bytes_atomic
from fcm_common.core.device import DEVICE_CHOICES, resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_source
from fcm_common.model.splits import SPLIT_NAMES
from fcm_encoder.encoder import EncodeSettings, build_method, encode_sequence, range_spec

METHODS = ("advmsfc", "anchor")


@click.command(name="fcm-encode", cls=FcmCommand)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--qp", type=click.IntRange(-12, 63), default=32, show_default=True, help="Inner codec QP.")
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="backbone", show_default=True, help="JDE split point.")
@click.option("--method", type=click.Choice(METHODS), default="advmsfc", show_default=True,
              help="advmsfc (needs --model) or the MPEG feature anchor.")
@click.option("--model", "model_path", envvar="FCM_ADVMSFC_MODEL", type=click.Path(path_type=Path),
              help="advMSFC checkpoint for this split (fcm-train); default $FCM_ADVMSFC_MODEL.")
@click.option("--channels", type=click.IntRange(min=1), help="advmsfc: keep K channels (overrides the QACT table).")
@click.option("--qact", "qact_path", type=click.Path(path_type=Path), help="advmsfc: QACT table (default: the model's).")
@click.option("--codec", type=click.Choice(CODEC_NAMES), default="vvenc", show_default=True, help="Inner codec.")
@weights_option
@jde_cfg_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Bitstream file (default: <name>_<method>_<split>_qp<QP>.bin).")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate (overrides the source's).")
@click.option("--intra-period", type=click.IntRange(min=1), default=32, show_default=True,
              help="Intra period in frames (CTC: 64 for TVD at 50 fps, 32 for HiEve at 30 fps).")
@click.option("--gop", type=click.Choice(GOP_STRUCTURES), default="ld", show_default=True, help="Low delay or random access.")
@click.option("--preset", type=click.Choice(PRESETS), default="medium", show_default=True, help="VVenC preset.")
@click.option("--range", "range_text", metavar="tvd|hieve|sequence|frame|model|LO,HI",
              help="Quantisation range: the MPEG dataset ranges, measured over the sequence (NN part 1 runs "
              "twice), per frame, the advmsfc model's code range, or given. Default: anchor tvd (dn53), "
              "hieve (alt1), frame (backbone); advmsfc model.")
@click.option("--bit-depth", type=click.Choice(["10", "32"]), default="10", show_default=True,
              help="10: quantised samples; 32: float32 samples, unquantised (lossless codec only).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Frames per NN batch.")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Inner encoder threads (0: automatic).")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--vtm-dir", envvar="FCM_VTM_DIR", type=click.Path(path_type=Path), help="VTM tree or bin folder (default $FCM_VTM_DIR, then PATH).")
@click.option("--vtm-cfg", type=click.Path(path_type=Path), help="VTM encoder cfg (default: the tree's low-delay or random-access cfg).")
@click.option("--vtm-jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Encode intra-period chunks in parallel and join them with parcat (as the MPEG framework does).")
def main(input_path, qp, split, method, model_path, channels, qact_path, codec, weights, jde_cfg, output, max_frames, fps, intra_period, gop, preset,
         range_text, bit_depth, batch_size, threads, device, vtm_dir, vtm_cfg, vtm_jobs):
    """Encode the JDE features of INPUT (video, MOTChallenge sequence folder or image folder)."""
    from fcm_common.model.jde import load_jde

    source = open_source(input_path, fps=fps, max_frames=max_frames)
    if method == "advmsfc" and model_path is None:
        raise FcmError("--method advmsfc needs --model PATH (train one with fcm-train), or use --method anchor")
    if codec == "vtm":  # fail on a missing VTM before spending time on JDE
        from fcm_common.coding.codecs import make_codec

        make_codec("vtm", str(vtm_dir) if vtm_dir else None, str(vtm_cfg) if vtm_cfg else None, vtm_jobs)
    dev = resolve_device(device)
    model = load_jde(resolve_weights(weights), device=dev, cfg=jde_cfg)
    feature_method = build_method(method, split, qp, model.weights_id, dev, model_path, channels, qact_path)
    settings = EncodeSettings(
        split=split, qp=qp, codec=codec, intra_period=intra_period, preset=preset, gop=gop,
        range_spec=range_spec(range_text, feature_method, split), sample_bits=int(bit_depth),
        batch_size=batch_size, threads=threads, vtm_dir=str(vtm_dir) if vtm_dir else None,
        vtm_cfg=str(vtm_cfg) if vtm_cfg else None, vtm_jobs=vtm_jobs,
    )
    output = output or Path(f"{source.name}_{method}_{split}_qp{qp}.bin")

    with progress() as bar:
        tasks = {}

        def advance(stage: str, n: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.advance(tasks[stage], n)

        data, report = encode_sequence(source, model, feature_method, settings, dev, advance)
    write_bytes_atomic(output, data)

    per_frame = {k: v / report.frames for k, v in report.seconds.items()}
    print_table(
        f"fcm-encode {source.name}: {method}/{split}, {codec} QP {qp}",
        ["frames", "bytes", "header", "kbps", "coded frame", "channels", "output"],
        [[report.frames, report.total_bytes, report.header_bytes, report.kbps,
          f"{report.coded_width}x{report.coded_height}", "+".join(map(str, report.coded_channels)), str(output)]],
    )
    print_table("time per frame (s)", list(per_frame), [[v for v in per_frame.values()]])
    if report.chunked:
        stdout_console.print("VTM encoded in parallel intra-period chunks joined with parcat (flagged in the header)")
