"""``fcm-encode``: JDE part 1 on a video or sequence, feature coding, one bitstream file."""

from __future__ import annotations

from pathlib import Path

import click

from fcm_common.cli.options import codec_options, method_options, range_help, split_option
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    progress,
    stage_progress,
    stdout_console,
    weights_option,
)
from fcm_common.coding.methods import check_method, method_for_encoding
from fcm_common.core.atomic import check_writable, refuse_overwriting_inputs, write_bytes_atomic
from fcm_common.core.device import resolve_device
from fcm_common.data.sources import open_source
from fcm_encoder.encoder import EncodeSettings, encode_sequence


@click.command(name="fcm-encode", cls=FcmCommand)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--qp", type=click.IntRange(-12, 63), default=32, show_default=True, help="Inner codec QP.")
@split_option(default="backbone", show_default=True, help="JDE split point.")
@method_options(default="advmsfc")
@codec_options(default="vvenc", help="Inner codec.")
@weights_option
@jde_cfg_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Bitstream file (default: <name>_<method>_<split>_qp<QP>.bin).")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate (overrides the source's).")
@click.option("--intra-period", type=click.IntRange(min=1), default=32, show_default=True,
              help="Intra period in frames (CTC: 64 for TVD at 50 fps, 32 for HiEve at 30 fps).")
@click.option("--range", "range_text", metavar="tvd|hieve|sequence|frame|model|LO,HI",
              help="Quantisation range: the MPEG dataset ranges, measured over the sequence (NN part 1 runs "
              f"twice), per frame, the advmsfc model's code range, or given. Default: {range_help()}.")
@click.option("--bit-depth", type=click.Choice(["10", "32"]), default="10", show_default=True,
              help="10: quantised samples; 32: float32 samples, unquantised (lossless codec only).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Frames per network batch (more: faster on a GPU, same stream).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Inner encoder threads (0: automatic).")
@device_option
def main(input_path, qp, split, method, method_options, codec, weights, jde_cfg, output, max_frames, fps, intra_period,
         range_text, bit_depth, batch_size, threads, device):
    """Encode the JDE features of INPUT (video, MOTChallenge sequence folder or image folder)."""
    source = open_source(input_path, fps=fps, max_frames=max_frames)
    check_method(method, **method_options)
    inner = codec.codec  # a missing VTM fails here, before time is spent on JDE
    inner.check_qp(qp)
    dev = resolve_device(device)
    model = open_network(weights, jde_cfg, dev)
    feature_method = method_for_encoding(method, split, qp, model.weights_id, dev, **method_options)
    settings = EncodeSettings(
        split=split, qp=qp, codec=inner, intra_period=intra_period, range_spec=feature_method.range_spec(range_text, split, split.is_reference(model.split_shapes(split.name))),
        sample_bits=int(bit_depth), batch_size=batch_size, threads=threads, **codec.params,
    )
    output = output or Path(f"{source.name}_{method}_{split.name}_qp{qp}.bin")
    refuse_overwriting_inputs(output, input_path)
    check_writable(output)

    with progress() as bar:
        data, report = encode_sequence(source, model, feature_method, settings, dev, stage_progress(bar))
    write_bytes_atomic(output, data)

    per_frame = {k: v / report.frames for k, v in report.seconds.items()}
    print_table(
        f"fcm-encode {source.name}: {method}/{split.name}, {inner.name} QP {qp}\nnetwork: {model.network_name}"
        + feature_method.describe_model(),
        ["frames", "bytes", "header", "kbps", "coded frame", "channels", "output"],
        [[report.frames, report.total_bytes, report.header_bytes, report.kbps,
          f"{report.coded_width}x{report.coded_height}", "+".join(map(str, report.coded_channels)), str(output)]],
    )
    print_table("time per frame (s)", list(per_frame), [[v for v in per_frame.values()]])
    if report.chunked:
        stdout_console.print("VTM encoded in parallel intra-period chunks joined with parcat (flagged in the header)")
