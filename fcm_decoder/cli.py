"""``fcm-decode``: an fcm bitstream -> JDE part 2 and the tracker -> MOTChallenge tracks."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from fcm_common.cli.options import decoder_options, method_decode_options
from fcm_common.cli.report import eval_options, evaluate_and_print, ground_truth_files, prepare_ground_truth
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    progress,
    weights_option,
)
from fcm_common.core.atomic import atomic_path, check_writable, refuse_overwriting_inputs
from fcm_common.core.device import resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import write_rows
from fcm_common.evaluation.mot_metrics import SequenceResult
from fcm_common.tracking.tracker import BUFFER_HELP, BUFFER_MODES
from fcm_decoder.decoder import decode_stream, read_stream


@click.command(name="fcm-decode", cls=FcmCommand)
@click.argument("bitstream_path", metavar="IN.bin", type=click.Path(path_type=Path))
@weights_option
@jde_cfg_option
@method_decode_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="MOTChallenge tracks (default: IN.txt).")
@click.option("--gt", "gt_path", type=click.Path(path_type=Path), help="Ground truth (gt.txt or sequence folder): print MOTA and friends.")
@eval_options()
@click.option("--save-features", type=click.Path(path_type=Path), help="Write the reconstructed split tensors to an .npz file.")
@decoder_options
@click.option("--buffer-mode", type=click.Choice(BUFFER_MODES), default="framework", show_default=True, help=BUFFER_HELP)
@device_option
def main(bitstream_path, weights, jde_cfg, method_options, output, gt_path, eval_mode, gt_layout, save_features, decoder,
         codec_options, buffer_mode, device):
    """Decode IN.bin, run JDE part 2 and the tracker, and write MOTChallenge tracks."""
    header, payload, size = read_stream(bitstream_path)
    target = None if gt_path is None else prepare_ground_truth(gt_path, eval_mode, gt_layout)
    dev = resolve_device(device)
    model = open_network(weights, jde_cfg, dev, header, str(bitstream_path))
    output = output or bitstream_path.with_suffix(".txt")
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
