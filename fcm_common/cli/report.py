"""Evaluate tracks against ground truth and print the metrics table (shared by the commands)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fcm_common.cli.support import print_table
from fcm_common.data.mot_format import MotRow
from fcm_common.evaluation.mot_metrics import accumulate, summarize

PRINTED = ("MOTA", "IDF1", "MOTP", "IDs", "FP", "FN", "GT")
COUNTS = {"IDs", "FP", "FN", "GT"}


def evaluate(items: Sequence[tuple[str, Path, Sequence[MotRow], Path | None]], mode: str) -> pd.DataFrame:
    """``items`` = (name, ground truth, tracks, seqinfo or None) per sequence; pooled summary."""
    accs = [accumulate(gt, rows, mode, seqinfo) for _, gt, rows, seqinfo in items]
    return summarize(accs, [name for name, *_ in items])


def evaluate_and_print(items, mode: str) -> pd.DataFrame:
    summary = evaluate(items, mode)
    print_table(
        f"MOT metrics ({mode} rules, motmetrics)",
        ["sequence", *PRINTED],
        [[name, *(_cell(summary.loc[name, col], col) for col in PRINTED)] for name in summary.index],
    )
    return summary


def _cell(value, column: str):
    return int(value) if column in COUNTS else float(value)
