"""``fcm-eval``: MOT metrics of result files against ground truth, pooled over sequences."""

from __future__ import annotations

from pathlib import Path

import click

from fcm_common.cli.report import eval_options, evaluate_and_print, ground_truth_files
from fcm_common.cli.support import FcmCommand
from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import ORIGINS, read_rows
from fcm_common.evaluation.mot_metrics import SequenceResult, prepare


@click.command(name="fcm-eval", cls=FcmCommand)
@click.argument("pairs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="GT TRACKS [GT TRACKS ...]")
@eval_options(aliases=("--mode",))
@click.option("--tracks-origin", type=click.Choice([str(o) for o in ORIGINS]), default="1", show_default=True,
              help="Pixel origin of x, y in TRACKS: 1 = MOTChallenge (fcm's own files, other trackers' results), "
                   "0 = 0-based (e.g. JDE's track.py output).")
def main(pairs, eval_mode, gt_layout, tracks_origin):
    """Evaluate TRACKS files against GT (a gt.txt or a MOTChallenge sequence folder).

    Several pairs are pooled into one OVERALL row (summed events, not averaged metrics).
    """
    if len(pairs) % 2:
        raise FcmError("give GT and TRACKS in pairs")
    items = []
    for gt_arg, tracks in zip(pairs[::2], pairs[1::2]):
        name, gt, seqinfo = ground_truth_files(gt_arg)
        target = prepare(gt, eval_mode, seqinfo, gt_layout)
        items.append(SequenceResult(name, target, read_rows(tracks, int(tracks_origin))))
    names = [i.name for i in items]
    if len(set(names)) != len(names):
        for k, item in enumerate(items, start=1):
            item.name = f"{item.name}#{k}"
    return evaluate_and_print(items)
