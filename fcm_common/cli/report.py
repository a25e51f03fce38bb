"""Evaluate tracks against ground truth and print the metrics table (shared by the commands)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
import pandas as pd

from fcm_common.cli.support import option, print_table
from fcm_common.core.errors import FcmError
from fcm_common.data.ground_truth import LAYOUT_CHOICES
from fcm_common.evaluation.mot_metrics import MODE_CHOICES, SequenceResult, Target, evaluate, prepare

PRINTED = ("MOTA", "IDF1", "MOTP", "IDs", "FP", "FN", "GT")
COUNTS = {"IDs", "FP", "FN", "GT"}

MODE_HELP = ("Evaluation rules: mot (MOTChallenge devkit), tvd or hieve (MPEG framework); auto picks tvd/hieve "
             "for TVD/HiEve sequences, mot otherwise.")
LAYOUT_HELP = "Ground-truth layout: mot15 (2DMOT2015, HiEve: 10 fields), mot16 (MOT16/17/20, TVD: 9 fields); auto by field count."


def eval_options(aliases: tuple[str, ...] = ()):
    """``--eval-mode`` and ``--gt-layout``, passed as ``eval_mode`` and ``gt_layout`` (``aliases``: former
    names of ``--eval-mode`` that still work, hidden from the help)."""

    def decorate(f):
        f = click.option("--gt-layout", type=click.Choice(LAYOUT_CHOICES), default="auto", show_default=True,
                         help=LAYOUT_HELP)(f)
        return option("--eval-mode", "eval_mode", aliases=aliases, type=click.Choice(MODE_CHOICES), default="auto",
                      show_default=True, help=MODE_HELP)(f)

    return decorate


def ground_truth_files(path: Path) -> tuple[str, Path, Path | None]:
    """(sequence name, gt.txt, seqinfo.ini or None) of a gt.txt or a MOTChallenge sequence folder."""
    if path.is_dir():
        gt = path / "gt" / "gt.txt"
        if not gt.is_file():
            raise FcmError(f"{path}: no gt/gt.txt in this sequence folder")
        seqinfo = path / "seqinfo.ini"
        return path.name, gt, seqinfo if seqinfo.is_file() else None
    if not path.is_file():
        raise FcmError(f"ground truth not found: {path}")
    folder = path.parent.parent if path.parent.name == "gt" else path.parent  # <seq>/gt/gt.txt or <seq>/gt.txt
    seqinfo = folder / "seqinfo.ini"
    name = folder.name if path.parent.name == "gt" or path.stem == "gt" else path.stem
    return name, path, seqinfo if seqinfo.is_file() else None


def prepare_ground_truth(path: Path, mode: str, layout: str, seqinfo: Path | None = None) -> Target:
    """Read and check the ground truth (a gt.txt or a sequence folder) before anything is computed."""
    _, gt, found = ground_truth_files(path)
    return prepare(gt, mode, seqinfo or found, layout)


def evaluate_and_print(items: Sequence[SequenceResult], tracks_file: Path | None = None, console=None) -> pd.DataFrame:
    """Score ``items`` and print the table; a failure says that ``tracks_file`` is complete."""
    try:
        summary = evaluate(items)
    except FcmError as exc:
        if tracks_file is None:
            raise
        raise FcmError(f"{exc} (scoring failed; the tracks are complete in {tracks_file})") from None
    modes = sorted({prepare(i.gt, i.mode).mode for i in items})
    print_table(
        f"MOT metrics ({'/'.join(modes)} rules, motmetrics)",
        ["sequence", *PRINTED],
        [[name, *(_cell(summary.loc[name, col], col) for col in PRINTED)] for name in summary.index],
        console=console,
    )
    return summary


def _cell(value, column: str):
    return int(value) if column in COUNTS else float(value)
