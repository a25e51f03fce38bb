"""``fcm-decode``: an fcm bitstream -> JDE part 2 and the tracker -> MOTChallenge tracks."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import click
import numpy as np

from fcm_common.cli.options import decoder_options, key_file_option, method_decode_options
from fcm_common.cli.report import eval_options, evaluate_and_print, ground_truth_files, prepare_ground_truth
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    SkipStatus,
    progress,
    require_network,
    stderr_console,
    warn,
    weights_option,
)
from fcm_common.coding import segments
from fcm_common.core.atomic import atomic_path, check_writable, refuse_overwriting_inputs
from fcm_common.core.device import resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.core.threads import torch_threads as threads_for
from fcm_common.data.mot_format import FILE_ORIGIN, format_rows, write_rows
from fcm_common.evaluation.mot_metrics import SequenceResult
from fcm_common.model.splits import SPLITS
from fcm_common.streaming.transport import open_input, parse_tcp
from fcm_common.tracking.tracker import BUFFER_HELP, BUFFER_MODES
from fcm_decoder.decoder import decode_stream, read_stream
from fcm_decoder.stream_decoder import decode_units, percentiles


@click.command(name="fcm-decode", cls=FcmCommand)
@click.argument("bitstream_path", metavar="IN", required=False, type=click.Path(path_type=Path))
@click.option("--listen", metavar="tcp://HOST:PORT",
              help="Receive the stream from fcm-encode -o tcp://HOST:PORT instead of reading IN (encoders may "
                   "connect, drop and reconnect; decoding ends with the stream's end).")
@weights_option
@jde_cfg_option
@method_decode_options
@click.option("-o", "--output", type=str, metavar="FILE|-",
              help="MOTChallenge tracks: a file, written complete at the end (default: IN.txt), or - for rows on "
                   "stdout as each frame is tracked (the default for stdin and --listen).")
@click.option("--gt", "gt_path", type=click.Path(path_type=Path), help="Ground truth (gt.txt or sequence folder): print MOTA and friends.")
@eval_options()
@click.option("--save-features", type=click.Path(path_type=Path), help="Write the reconstructed split tensors to an .npz file.")
@decoder_options
@click.option("--buffer-mode", type=click.Choice(BUFFER_MODES), default="framework", show_default=True, help=BUFFER_HELP)
@key_file_option("Take only a keyed stream made with this shared secret (fcm-encode --key-file): a unit whose MAC "
                 "it does not make, a replayed or moved one, or a stream without MACs is refused.")
@click.option("--torch-threads", type=click.IntRange(min=1), help="Threads of NN part 2 (default: torch's, a thread per "
              "core; for a stream on stdin or --listen half the cores, 1 to 4, as the encoder beside it may need the "
              "rest; OMP_NUM_THREADS, when set, is kept).")
@device_option
def main(bitstream_path, listen, weights, jde_cfg, method_options, output, gt_path, eval_mode, gt_layout, save_features,
         decoder, codec_options, buffer_mode, stream_key, torch_threads, device):
    """Decode IN (an fcm bitstream file, or - for stdin), run JDE part 2 and the tracker, and write
    MOTChallenge tracks."""
    if (bitstream_path is None) == (listen is None):
        raise click.UsageError("give IN (a file or -) or --listen tcp://HOST:PORT")
    if listen is not None:
        host, port = parse_tcp(listen)  # a malformed address is refused before any work
        if stream_key is None and not _is_loopback(host):
            warn(f"listening on tcp://{listen[len('tcp://'):]} without --key-file: anyone who can reach the port can "
                 "send this decoder a stream (docs/live.md, keyed streams)")
    elif str(bitstream_path) != "-" and not bitstream_path.exists():
        raise FcmError(f"bitstream not found: {bitstream_path}")
    elif bitstream_path.is_dir():
        raise FcmError(f"{bitstream_path} is a folder, not a bitstream")
    target = None if gt_path is None else prepare_ground_truth(gt_path, eval_mode, gt_layout)
    # torch's threads for this command (restored when it ends)
    click.get_current_context().with_resource(threads_for(listen is not None or str(bitstream_path) == "-", torch_threads))
    if listen is None and str(bitstream_path) != "-" and not bitstream_path.is_dir() and bitstream_path.is_file() \
            and not _segmented_file(bitstream_path):
        return _decode_file(bitstream_path, weights, jde_cfg, method_options, output, gt_path, target, save_features,
                            decoder, codec_options, buffer_mode, device, stream_key)
    return _decode_live(bitstream_path, listen, weights, jde_cfg, method_options, output, gt_path, target,
                        save_features, decoder, codec_options, buffer_mode, device, stream_key)


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach a listener on ``host``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may name any interface
        return False


def _segmented_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        return segments.is_segmented(fh.read(len(segments.SYNC)))


def _decode_live(bitstream_path, listen, weights, jde_cfg, method_options, output, gt_path, target, save_features,
                 decoder, codec_options, buffer_mode, device, stream_key=None):
    """A version-3 stream (a file, stdin or a TCP listener), tracked as it arrives."""
    streaming_in = listen is not None or str(bitstream_path) == "-"
    if output is None:
        output = "-" if streaming_in else str(Path(bitstream_path).with_suffix(".txt"))
    rows_out = output == "-"
    if not streaming_in:
        for path in (None if rows_out else output, save_features):
            if path is not None:
                refuse_overwriting_inputs(path, bitstream_path)
    check_writable(None if rows_out else output, save_features)
    if save_features is not None and not rows_out and Path(save_features).resolve() == Path(output).resolve():
        raise FcmError(f"--save-features and -o are the same file {output}")
    chunks = open_input(bitstream_path, listen)
    dev = resolve_device(device)
    model = open_network(weights, jde_cfg, dev, what=str(bitstream_path or listen))
    tables = stderr_console if rows_out else None
    out = sys.stdout

    def on_frame(rows, number, latency):
        if rows_out and rows:
            out.write(format_rows(rows, FILE_ORIGIN))
        if rows_out:
            out.flush()
        bar.advance(task, 1)

    skips: list[SkipStatus] = []  # made at the first frame skipped by the encoder (the frame rate is known then)

    def on_status(report):
        if report.skipped and not skips:
            skips.append(SkipStatus("decoding", bar, float(report.params.fps), who="decoder"))
        if skips:
            skips[0].update(report.frames, report.skipped)

    with progress() as bar:
        task = bar.add_task("decoding", total=None)
        report = decode_units(
            chunks, model, dev, decoder=decoder, buffer_mode=buffer_mode, keep_features=save_features is not None,
            on_frame=on_frame, on_warning=warn, on_status=on_status, stream_key=stream_key,
            check_params=lambda params: require_network(model, params, str(bitstream_path or listen)),
            **method_options, **codec_options,
        )
    seq = report.tracker
    if report.frames == 0:
        raise FcmError(f"no frame could be decoded: {report.summary() or 'the stream holds none'} (see the warnings above)")
    if save_features is not None and report.features:
        layers = SPLITS[report.params.split].layers
        with atomic_path(save_features) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"layer_{layer}": np.stack([f[i] for f in report.features]) for i, layer in enumerate(layers)})
    if not rows_out:
        write_rows(output, seq.rows)
    p = report.params
    print_table(
        f"fcm-decode {bitstream_path or listen}: {p.method}/{p.split}, {p.codec} QP {p.qp} ({p.gop})\n"
        f"network: {model.network_name}" + report.method.describe_model(),
        ["frames", "first", "segments", "bytes", "kbps", "lost", "detections", "tracks", "output"],
        [[report.frames, report.first_frame, report.segments, report.total_bytes, report.kbps, report.lost_frames,
          seq.detections, len({r.track_id for r in seq.rows}), str(output)]],
        console=tables,
    )
    per_frame = {k: v / max(report.frames, 1) for k, v in report.seconds.items()}
    print_table("time per frame (s)", list(per_frame), [[v for v in per_frame.values()]], console=tables)
    if report.latencies:
        p50, p95, worst = percentiles(report.latencies)
        print_table("latency, capture to tracks (ms; the encoder's and this clock); frames the encoder skipped",
                    ["frames", "p50", "p95", "max", "skipped", "source fps", "effective fps"],
                    [[len(report.latencies), f"{p50 * 1000:.0f}", f"{p95 * 1000:.0f}", f"{worst * 1000:.0f}",
                      report.skipped, f"{float(p.fps):g}", f"{report.effective_fps:.2f}"]],
                    console=tables)
    if target is not None:
        sequence = ground_truth_files(gt_path)[0]
        last = seq.frame_number - 1
        evaluate_and_print([SequenceResult(sequence, target, seq.rows, max_frame=last)],
                           tracks_file=None if rows_out else Path(output), console=tables)
    if not report.ok:
        raise FcmError(f"the stream was damaged or incomplete: {report.summary()} (see the warnings above; the "
                       f"tracks of the frames received are in {'the rows printed' if rows_out else output})")
    return None


def _decode_file(bitstream_path, weights, jde_cfg, method_options, output, gt_path, target, save_features, decoder,
                 codec_options, buffer_mode, device, stream_key=None):
    """A version-2 file (fcm before segmented streams): decoded whole, released only when its hash matched."""
    header, payload, size = read_stream(bitstream_path)
    if stream_key is not None:
        raise FcmError(f"{bitstream_path} is a version-2 stream, which carries no MAC: refused with --key-file")
    dev = resolve_device(device)
    model = open_network(weights, jde_cfg, dev, header, str(bitstream_path))
    output = Path(output) if output else bitstream_path.with_suffix(".txt")
    if str(output) == "-":
        raise FcmError("-o - (rows as frames are tracked) needs a version-3 stream; this file is version 2")
    for path in (output, save_features):
        if path is not None:
            refuse_overwriting_inputs(path, bitstream_path)
    if save_features is not None and Path(save_features).resolve() == Path(output).resolve():
        raise FcmError(f"--save-features and -o are the same file {output}")
    check_writable(output, save_features)
    with progress() as bar:
        task = bar.add_task("decoding", total=header.num_frames)
        report = decode_stream(
            header, payload, size, model, dev, decoder=decoder, buffer_mode=buffer_mode,
            keep_features=save_features is not None, progress=lambda n: bar.advance(task, n),
            **method_options, **codec_options,
        )
    if save_features is not None:  # the features first: if the tracks cannot be written, remove them again
        with atomic_path(save_features) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **report.features)
    try:
        write_rows(output, report.tracker.rows)
    except BaseException:
        if save_features is not None:
            Path(save_features).unlink(missing_ok=True)
        raise

    seq = report.tracker
    print_table(
        f"fcm-decode {bitstream_path.name}: {header.method}/{header.split}, {header.codec} QP {header.qp}\n"
        f"network: {model.network_name}" + report.method.describe_model(),
        ["frames", "bytes", "kbps", "detections", "tracks", "output"],
        [[header.num_frames, size, report.kbps, seq.detections, len({r.track_id for r in seq.rows}), str(output)]],
    )
    per_frame = {k: v / header.num_frames for k, v in report.seconds.items()}
    print_table("time per frame (s)", list(per_frame), [[v for v in per_frame.values()]])
    if target is not None:
        sequence = ground_truth_files(gt_path)[0]  # the metrics row names the sequence, not the .bin
        return evaluate_and_print([SequenceResult(sequence, target, seq.rows, max_frame=header.num_frames)],
                                  tracks_file=output)
    return None
