"""``fcm-track``: the uncompressed reference run (JDE + tracker on a sequence, no feature coding)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fcm_common.cli.report import eval_options, evaluate_and_print, prepare_ground_truth
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    progress,
    weights_option,
)
from fcm_common.core.atomic import check_writable, refuse_overwriting_inputs
from fcm_common.core.device import resolve_device
from fcm_common.data.mot_format import write_rows
from fcm_common.data.sources import open_source
from fcm_common.evaluation.mot_metrics import SequenceResult
from fcm_common.tracking.sequence import track_source
from fcm_common.tracking.tracker import BUFFER_HELP, BUFFER_MODES


@click.command(name="fcm-track", cls=FcmCommand)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@weights_option
@jde_cfg_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="MOTChallenge tracks file (default: <name>.txt).")
@click.option("--gt", "gt_path", type=click.Path(path_type=Path), help="Ground truth to evaluate against (default: the sequence's gt/gt.txt, if any).")
@eval_options()
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Frame rate (overrides the source's).")
@click.option("--buffer-mode", type=click.Choice(BUFFER_MODES), default="framework", show_default=True, help=BUFFER_HELP)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames per network batch (more: faster on a GPU, same tracks).")
@device_option
def main(input_path, weights, jde_cfg, output, gt_path, eval_mode, gt_layout, max_frames, fps, buffer_mode, batch_size,
         device):
    """Track pedestrians in INPUT (video, MOTChallenge sequence folder or image folder) with JDE."""
    source = open_source(input_path, fps=fps, max_frames=max_frames)
    gt = gt_path or source.gt_path
    target = None if gt is None else prepare_ground_truth(gt, eval_mode, gt_layout, source.seqinfo_path)
    dev = resolve_device(device)
    model = open_network(weights, jde_cfg, dev)
    output = output or Path(f"{source.name}.txt")
    refuse_overwriting_inputs(output, input_path)
    check_writable(output)
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("JDE + tracker", total=source.length)
        seq = track_source(model, source, dev, batch_size, buffer_mode, on_frame=lambda n: bar.advance(task, n))
    elapsed = time.perf_counter() - start
    write_rows(output, seq.rows)
    print_table(
        f"fcm-track {source.name} (network: {model.network_name})",
        ["frames", "detections", "track boxes", "tracks", "s/frame", "output"],
        [[seq.frames_done, seq.detections, len(seq.rows), len({r.track_id for r in seq.rows}),
          elapsed / max(seq.frames_done, 1), str(output)]],
    )
    if target is not None:
        cut = source.length if max_frames is not None else None  # scored over the frames tracked
        return evaluate_and_print([SequenceResult(source.name, target, seq.rows, max_frame=cut)], tracks_file=output)
    return None
