"""``fcm-encode``: JDE part 1 on a video or sequence, feature coding, one bitstream file."""

from __future__ import annotations

import math
from pathlib import Path

import click
from click.core import ParameterSource

from fcm_common.cli.options import codec_options, key_file_option, method_options, range_help, split_option
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    SkipStatus,
    progress,
    size_type,
    stage_progress,
    stderr_console,
    stdout_console,
    warn,
    weights_option,
)
from fcm_common.coding.methods import check_method, method_for_encoding
from fcm_common.coding.quantization import RangeSpec
from fcm_common.core.atomic import check_writable, refuse_overwriting_inputs
from fcm_common.core.device import resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.core.threads import torch_threads as threads_for
from fcm_common.data.sources import is_live_input, open_live_source, open_source
from fcm_common.streaming.transport import is_live_target, open_sink, parse_tcp
from fcm_encoder.encoder import EncodeSettings, encode_stream
from fcm_encoder.live import DEFAULT_MAX_LATENCY


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", param_hint=f"'{name}'")
    return value


@click.command(name="fcm-encode", cls=FcmCommand)
@click.argument("input_path", metavar="INPUT", type=str)  # a URL is not a path (no // folding)
@click.option("--qp", type=click.IntRange(-12, 63), default=32, show_default=True, help="Inner codec QP.")
@split_option(default="backbone", show_default=True, help="JDE split point.")
@method_options(default="advmsfc")
@codec_options(default="vvenc", help="Inner codec.")
@weights_option
@jde_cfg_option
@click.option("-o", "--output", type=str, metavar="FILE|-|tcp://HOST:PORT",
              help="Bitstream file (default: <name>_<method>_<split>_qp<QP>.bin), - for stdout (a live stream, flushed "
                   "picture by picture) or tcp://HOST:PORT (a listening fcm-decode --listen; reconnects when it is lost).")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate (overrides the source's).")
@click.option("--size", type=size_type, metavar="WxH", help="Frame size of raw rgb24 frames on stdin (INPUT -), or the size a camera is asked for.")
@click.option("--realtime", is_flag=True, help="Read a file or folder at its frame rate, as a camera would deliver it.")
@click.option("--intra-period", type=click.IntRange(min=1), default=32, show_default=True,
              help="Intra period in frames (CTC: 64 for TVD at 50 fps, 32 for HiEve at 30 fps).")
@click.option("--segment", type=click.IntRange(min=1), help="Frames per segment of the stream (default and at most: "
              "the intra period; each segment starts with an intra picture and decodes on its own).")
@click.option("--range", "range_text", metavar="tvd|hieve|sequence|frame|model|LO,HI",
              help="Quantisation range: the MPEG dataset ranges, measured over the sequence (NN part 1 runs "
              f"twice; not with a live source, whose default is then frame), per frame, the advmsfc model's code range, "
              f"or given. Default: {range_help()}.")
@click.option("--bit-depth", type=click.Choice(["10", "32"]), default="10", show_default=True,
              help="10: quantised samples; 32: float32 samples, unquantised (lossless codec only).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Frames per network batch (more: faster on a GPU, same stream).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Inner encoder threads (0: automatic: up to 8; none beside the coding one for a live or paced source).")
@key_file_option("A keyed stream: every unit carries a MAC (HMAC-SHA256) over its bytes and its place, made "
                 "with this shared secret; a decoder takes it only with the same key file (fcm-decode --key-file).")
@click.option("--torch-threads", type=click.IntRange(min=1), help="Threads of NN part 1 (default: torch's, a thread per "
              "core; for a live or paced source half the cores, 1 to 4, as the decoder beside it may need the rest; "
              "OMP_NUM_THREADS, when set, is kept).")
@click.option("--max-latency", type=click.FloatRange(min=0, max=3600), default=DEFAULT_MAX_LATENCY, show_default=True,
              metavar="SECONDS", callback=lambda ctx, param, value: _finite(value, "--max-latency"), help="A live or paced source: when the encoder falls behind, whole frames are skipped "
              "before NN part 1 so that a frame leaves the encoder within SECONDS of its capture (and none waits when "
              "the encoder is slower than the source); skipped frames keep their numbers. 0: never skip. A file "
              "that is not paced never skips.")
@click.option("--engine", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="What runs NN part 1: auto is onnxruntime for a live or paced source on the CPU (about 2.4 times "
              "faster at one thread, features within 1.2e-5 of torch's), torch otherwise.")
@device_option
def main(input_path, qp, split, method, method_options, codec, weights, jde_cfg, output, max_frames, fps, size, realtime,
         intra_period, segment, range_text, bit_depth, batch_size, threads, stream_key, torch_threads, max_latency, engine,
         device):
    """Encode the JDE features of INPUT: a video, a MOTChallenge sequence folder, an image folder, a camera
    (/dev/videoN), a URL (rtsp://, http://, udp://, ...) or - (raw rgb24 frames on stdin, with --size and --fps)."""
    if output is not None and output.startswith("tcp://"):
        parse_tcp(output)  # a malformed address is refused before any work
    live_input = is_live_input(input_path)
    if live_input:
        source = open_live_source(input_path, size=size, fps=fps, max_frames=max_frames)
    else:
        input_path = Path(input_path)
        if size is not None:
            raise FcmError("--size is for raw frames on stdin (INPUT -) and cameras")
        source = open_source(input_path, fps=fps, max_frames=max_frames)
    source.realtime = realtime
    timed = source.live or realtime  # frames at the source's pace: threads for sharing the machine, skipping
    # torch's threads for this command (restored when it ends)
    torch_threads = click.get_current_context().with_resource(threads_for(timed, torch_threads))
    live_output = is_live_target(output)
    check_method(method, **method_options)
    inner = codec.codec  # a missing VTM fails here, before time is spent on JDE
    inner.check_qp(qp)
    params = codec.params
    given = click.get_current_context().get_parameter_source
    if live_output and inner.name == "vvenc" and given("gop") in (None, ParameterSource.DEFAULT):
        params["gop"] = "ll"  # a live stream: no picture waits for its GOP (--gop ld to have the GOP of 8)
    dev = resolve_device(device)
    model = open_network(weights, jde_cfg, dev)
    feature_method = method_for_encoding(method, split, qp, model.weights_id, dev, **method_options)
    spec = feature_method.range_spec(range_text, split, split.is_reference(model.split_shapes(split.name)))
    if spec.mode == "sequence" and (source.live or realtime):
        if range_text is not None:
            raise FcmError("--range sequence measures the whole sequence before coding it: not with a live or "
                           "--realtime source (use frame, model or LO,HI)")
        spec = RangeSpec.parse("frame")
    settings = EncodeSettings(
        split=split, qp=qp, codec=inner, intra_period=intra_period, range_spec=spec, segment=segment,
        sample_bits=int(bit_depth), batch_size=batch_size, threads=threads, stream_key=stream_key,
        max_latency=max_latency, engine=engine, **params,
    )
    output = output or f"{source.name}_{method}_{split.name}_qp{qp}.bin"
    if not live_output:
        if not live_input:
            refuse_overwriting_inputs(output, input_path)
        check_writable(output)
    tables = stderr_console if output == "-" else None  # stdout carries the stream

    sink = open_sink(output, on_event=warn)
    try:
        with progress() as bar:
            status = SkipStatus("encoding", bar, source.fps, max_latency)
            report = encode_stream(source, model, feature_method, settings, dev, sink, stage_progress(bar),
                                   on_status=lambda live: status.update(live.taken, live.skipped))
        sink.close()
    except BaseException:
        sink.abort()
        raise

    per_frame = {k: v / report.frames for k, v in report.seconds.items()}
    print_table(
        f"fcm-encode {source.name}: {method}/{split.name}, {inner.name} QP {qp} ({settings.gop}"
        + (f", preset {settings.preset})" if inner.name == "vvenc" else ")") + f"\nnetwork: {model.network_name}"
        + f" (NN part 1: {report.engine}, {torch_threads} thread{'s' if torch_threads > 1 else ''})"
        + feature_method.describe_model(),
        ["frames", "bytes", "header", "kbps", "segments", "coded frame", "channels", "output"],
        [[report.frames, report.total_bytes, report.header_bytes, report.kbps, report.segments,
          f"{report.coded_width}x{report.coded_height}", "+".join(map(str, report.coded_channels)), str(output)]],
        console=tables,
    )
    print_table("time per frame (s)", list(per_frame), [[v for v in per_frame.values()]], console=tables)
    if timed:
        bound = f"under {max_latency:g} s" if max_latency else "unbounded: --max-latency 0, none skipped"
        print_table(f"paced source: frames skipped to keep the latency {bound}",
                    ["source frames", "coded", "skipped", "source fps", "effective fps"],
                    [[report.source_frames, report.frames, report.skipped, f"{report.fps:g}",
                      f"{report.effective_fps:.2f}"]], console=tables)
    if sink.dropped_frames or sink.dropped_segments:
        warn(f"the output could not keep up: {sink.dropped_frames} frames in {sink.dropped_segments} segments were "
             "dropped (whole segments, from the point the queue was full)")
    if report.chunked:
        stdout_console.print("VTM encoded in parallel intra-period chunks joined with parcat (flagged in the header)")

