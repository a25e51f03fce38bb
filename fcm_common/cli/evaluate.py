"""``fcm-eval``: MOT metrics of result files against ground truth, pooled over sequences."""

from __future__ import annotations

from pathlib import Path

import click

from fcm_common.cli.report import evaluate_and_print
from fcm_common.cli.support import FcmCommand
from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import read_rows
from fcm_common.evaluation.mot_metrics import EVAL_MODES


def _ground_truth(path: Path) -> tuple[str, Path, Path | None]:
    if path.is_dir():
        gt = path / "gt" / "gt.txt"
        if not gt.is_file():
            raise FcmError(f"{path}: no gt/gt.txt in this sequence folder")
        seqinfo = path / "seqinfo.ini"
        return path.name, gt, seqinfo if seqinfo.is_file() else None
    if not path.is_file():
        raise FcmError(f"ground truth not found: {path}")
    seqinfo = path.parent.parent / "seqinfo.ini"
    name = path.parent.parent.name if path.parent.name == "gt" else path.stem
    return name, path, seqinfo if seqinfo.is_file() else None


@click.command(name="fcm-eval", cls=FcmCommand)
@click.argument("pairs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="GT TRACKS [GT TRACKS ...]")
@click.option("--mode", type=click.Choice(EVAL_MODES), default="tvd", show_default=True, help="MPEG evaluation rules.")
def main(pairs, mode):
    """Evaluate TRACKS files against GT (a gt.txt or a MOTChallenge sequence folder).

    Several pairs are pooled into one OVERALL row (summed events, not averaged metrics).
    """
    if len(pairs) % 2:
        raise FcmError("give GT and TRACKS in pairs")
    items = []
    for gt_arg, tracks in zip(pairs[::2], pairs[1::2]):
        name, gt, seqinfo = _ground_truth(gt_arg)
        items.append((name, gt, read_rows(tracks), seqinfo))
    names = [i[0] for i in items]
    if len(set(names)) != len(names):
        items = [(f"{n}#{k}", *rest) for k, (n, *rest) in enumerate(items, start=1)]
    evaluate_and_print(items, mode)
