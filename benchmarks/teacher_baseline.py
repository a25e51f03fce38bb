#!/usr/bin/env python3
"""What the teachers are worth as a tracker: YOLOX-Nano boxes + OSNet embeddings -> the fcm tracker.

The bundled JDE is compared against this in docs/models.md: the same JDE tracker and the same MOT
evaluation, fed by the real pretrained teachers instead of JDE's heads. Needs onnxruntime (the
``[train]`` extra) and the teacher ONNX files.

    .venv/bin/python benchmarks/teacher_baseline.py samples/PETS09-S2L1-551-650 ../shared/data/MOT17-mini/*
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcm_common.cli.support import print_table
from fcm_common.data.mot_format import MotRow
from fcm_common.data.sources import open_source
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_common.jde_training.teachers import AppearanceEncoder, PersonDetector
from fcm_common.tracking.detections import Detections
from fcm_common.tracking.tracker import JDETracker

TEACHERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "teachers"


def track_with_teachers(folder: Path, detector: PersonDetector, encoder: AppearanceEncoder) -> tuple[list[MotRow], object]:
    source = open_source(folder)
    tracker = JDETracker(frame_rate=source.fps)
    rows = []
    for index, frame in enumerate(source.frames(), start=1):
        boxes, scores = detector.detect(frame)
        dets = Detections(boxes, scores, encoder.embed(frame, boxes).astype("float32"))
        for t in tracker.update(dets):
            rows.append(MotRow(index, t.track_id, *t.tlwh, t.score))
    return rows, source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sequences", nargs="+", type=Path)
    ap.add_argument("--detector", type=Path, default=TEACHERS / "yolox_nano_coco.onnx")
    ap.add_argument("--embedder", type=Path, default=TEACHERS / "osnet_x0_25_msmt17.onnx")
    ap.add_argument("--score", type=float, default=0.5, help="YOLOX person score threshold (JDE's is 0.5 too)")
    args = ap.parse_args()
    detector = PersonDetector(args.detector, args.score)
    encoder = AppearanceEncoder(args.embedder)
    items = []
    for folder in args.sequences:
        rows, source = track_with_teachers(folder, detector, encoder)
        items.append(SequenceResult(source.name, source.gt_path, rows, source.seqinfo_path))
    summary = evaluate(items)
    cols = ["MOTA", "IDF1", "FP", "FN", "IDs"]
    print_table(f"YOLOX-Nano (score >= {args.score}) + OSNet -> fcm tracker", ["sequence", *cols],
                [[name, *(summary.loc[name, c] for c in cols)] for name in summary.index])


if __name__ == "__main__":
    main()
