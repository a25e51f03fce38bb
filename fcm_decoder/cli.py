"""``fcm-decode``: an fcm bitstream -> JDE part 2 and the tracker -> MOTChallenge tracks."""

from __future__ import annotations

from pathlib import Path

import click

from fcm_common.cli.report import evaluate_and_print
from fcm_common.cli.support import FcmCommand, jde_cfg_option, print_table, progress, resolve_weights, weights_option
from fcm_common.core.atomic import atomic_path
from fcm_common.core.device import DEVICE_CHOICES, resolve_device
from fcm_common.data.mot_format import write_rows
from fcm_common.evaluation.mot_metrics import EVAL_MODES
from fcm_common.tracking.tracker import BUFFER_MODES
from fcm_decoder.decoder import DECODERS, decode_stream, read_stream


@click.command(name="fcm-decode", cls=FcmCommand)
@click.argument("bitstream_path", metavar="IN.bin", type=click.Path(path_type=Path))
@weights_option
@jde_cfg_option
@click.option("--model", "model_path", envvar="FCM_ADVMSFC_MODEL", type=click.Path(path_type=Path),
              help="advMSFC checkpoint named by an advmsfc stream (default $FCM_ADVMSFC_MODEL).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="MOTChallenge tracks (default: IN.txt).")
@click.option("--gt", "gt_path", type=click.Path(path_type=Path), help="Ground truth (gt.txt or sequence folder): print MOTA and friends.")
@click.option("--eval-mode", type=click.Choice(EVAL_MODES), default="tvd", show_default=True, help="MPEG evaluation rules.")
@click.option("--save-features", type=click.Path(path_type=Path), help="Write the reconstructed split tensors to an .npz file.")
@click.option("--decoder", type=click.Choice(DECODERS), default="auto", show_default=True,
              help="VVC decoder: auto (ffmpeg for vvenc streams, VTM's DecoderApp for vtm streams), ffmpeg or vtm.")
@click.option("--vtm-dir", envvar="FCM_VTM_DIR", type=click.Path(path_type=Path), help="VTM tree or bin folder.")
@click.option("--buffer-mode", type=click.Choice(BUFFER_MODES), default="framework", show_default=True)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
def main(bitstream_path, weights, jde_cfg, model_path, output, gt_path, eval_mode, save_features, decoder, vtm_dir, buffer_mode, device):
    """Decode IN.bin, run JDE part 2 and the tracker, and write MOTChallenge tracks."""
    from fcm_common.model.jde import load_jde

    header, payload, size = read_stream(bitstream_path)
    dev = resolve_device(device)
    model = load_jde(resolve_weights(weights), device=dev, cfg=jde_cfg)
    output = output or bitstream_path.with_suffix(".txt")
    with progress() as bar:
        task = bar.add_task("decoding", total=header.num_frames)
        report = decode_stream(
            header, payload, size, model, dev, model_path=str(model_path) if model_path else None, decoder=decoder, vtm_dir=str(vtm_dir) if vtm_dir else None,
            buffer_mode=buffer_mode, keep_features=save_features is not None,
            progress=lambda n: bar.advance(task, n),
        )
    write_rows(output, report.tracker.rows)
    if save_features is not None:
        import numpy as np

        with atomic_path(save_features) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **report.features)

    seq = report.tracker
    print_table(
        f"fcm-decode {bitstream_path.name}: {header.method}/{header.split}, {header.codec} QP {header.qp}",
        ["frames", "bytes", "kbps", "detections", "tracks", "output"],
        [[header.num_frames, size, report.kbps, seq.detections, len({r.track_id for r in seq.rows}), str(output)]],
    )
    per_frame = {k: v / header.num_frames for k, v in report.seconds.items()}
    print_table("time per frame (s)", list(per_frame), [[v for v in per_frame.values()]])
    if gt_path is not None:
        gt = gt_path / "gt" / "gt.txt" if gt_path.is_dir() else gt_path
        seqinfo = (gt_path if gt_path.is_dir() else gt.parent.parent) / "seqinfo.ini"
        evaluate_and_print(
            [(bitstream_path.stem, gt, seq.rows, seqinfo if seqinfo.is_file() else None)], eval_mode
        )
