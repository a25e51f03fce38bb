#!/usr/bin/env python3
"""The bundled JDE (or any weights) scene by scene: MOTA, IDF1, FP, FN, IDs per sequence with the
fcm tracker, MOTChallenge devkit rules (the docs/models.md table).

    .venv/bin/python benchmarks/scene_table.py samples/PETS09-S2L1-551-650 ../shared/data/MOT17-mini/* \
        --weights bundled --weights runs/jde_ft/jde.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.data.sources import open_source
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.tracking.sequence import track_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sequences", nargs="+", type=Path, help="MOTChallenge folders with gt/gt.txt")
    ap.add_argument("--weights", action="append", default=None, help="'bundled' or a weights file (repeatable)")
    args = ap.parse_args()
    rows = []
    for weights in args.weights or ["bundled"]:
        model = load_network(choose_network(None if weights == "bundled" else weights), "cpu")
        items = []
        for folder in args.sequences:
            source = open_source(folder)
            seq = track_source(model, source, torch.device("cpu"))
            items.append(SequenceResult(source.name, source.gt_path, seq.rows, source.seqinfo_path, mode="mot"))
        summary = evaluate(items)
        for name, r in summary.iterrows():
            rows.append([weights, name, float(r["MOTA"]), float(r["IDF1"]), int(r["FP"]), int(r["FN"]), int(r["IDs"])])
    print_table("tracking by scene (fcm tracker, MOTChallenge devkit rules)",
                ["weights", "sequence", "MOTA", "IDF1", "FP", "FN", "IDs"], rows)


if __name__ == "__main__":
    main()
