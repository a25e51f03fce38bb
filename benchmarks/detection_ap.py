#!/usr/bin/env python3
"""Person detection of JDE checkpoints and of the teacher (YOLOX-Nano): AP50 on labelled pictures,
people found on unlabelled footage.

- YOLO-format folders (``images/``, ``labels/``; every class a person): detection AP at IoU 0.5
  (``fcm_common.evaluation.detection_ap``, all-point interpolation), detections scored from
  ``--min-score`` on; precision and recall at the tracker's threshold (0.5). JDE sees each picture
  letterboxed to its input as tracking does (JDE's NMS at 0.4); YOLOX-Nano its own 416x416 input.
- ``--clip VIDEO:FIRST-LAST``: every ``--clip-step``-th of those frames (no ground truth): people
  found per frame at score >= 0.5 by each detector, and how many of the teacher's it also finds
  (IoU >= 0.5).

    .venv/bin/python benchmarks/detection_ap.py ../shared/data/cctv-clinic/valid --jde bundled --jde run.pt --teacher
    .venv/bin/python benchmarks/detection_ap.py --clip ../shared/data/clips/market-street-1906.mp4:1501-1799 --jde bundled --teacher
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fcm_common.cli.support import print_table
from fcm_common.cli.train_jde import AP_MIN_SCORE
from fcm_common.data.sources import open_source
from fcm_common.data.yolo_labels import read_yolo_folder
from fcm_common.evaluation.detection_ap import average_precision, match_picture
from fcm_common.jde_training.samples import SequenceSpec
from fcm_common.jde_training.teachers import PersonDetector
from fcm_common.model.bundled import bundled_weights
from fcm_common.model.jde import load_jde
from fcm_common.tracking.detections import CONF_THRESHOLD
from fcm_common.tracking.sequence import detect_picture

TEACHERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "teachers"


def detectors(args) -> dict[str, object]:
    """name -> function(rgb, min_score) -> (boxes x1y1x2y2, scores)."""
    out = {}
    for weights in args.jde:
        path = bundled_weights() if weights == "bundled" else Path(weights)
        model = load_jde(path, "cpu")
        name = f"JDE {weights} ({model.weights_id[:8]})"
        out[name] = lambda rgb, s, m=model: (lambda d: (d.tlbr, d.scores))(detect_picture(m, rgb, torch.device("cpu"), s))
    if args.teacher:
        teacher = PersonDetector(args.detector, 0.0)

        def run_teacher(rgb, s, t=teacher):
            t.score_threshold = s
            return t.detect(rgb)

        out["YOLOX-Nano (teacher)"] = run_teacher
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path, help="YOLO-format folders with labels")
    ap.add_argument("--jde", action="append", default=[], help="JDE weights ('bundled' = the shipped network; repeatable)")
    ap.add_argument("--teacher", action="store_true", help="also the teacher detector (YOLOX-Nano)")
    ap.add_argument("--detector", type=Path, default=TEACHERS / "yolox_nano_coco.onnx")
    ap.add_argument("--min-score", type=float, default=AP_MIN_SCORE, help="lowest detection score on the AP curve")
    ap.add_argument("--clip", action="append", default=[], help="VIDEO[:FIRST-LAST]: count people found (repeatable)")
    ap.add_argument("--clip-step", type=int, default=10, help="every N-th frame of a --clip")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dets = detectors(args)
    report = {"ap": {}, "clips": {}}
    for folder in args.folders:
        pictures = list(read_yolo_folder(folder))
        rows = []
        for name, detect in dets.items():
            found = [detect(image, args.min_score) for _, _, image, _ in pictures]
            result = average_precision(found, [boxes for *_, boxes in pictures])
            p, r = result.at_score(CONF_THRESHOLD)
            report["ap"].setdefault(str(folder), {})[name] = {"AP50": result.ap, "P@0.5": p, "R@0.5": r,
                                                              "gt": result.num_gt}
            rows.append([name, f"{result.ap:.4f}", f"{p:.3f}", f"{r:.3f}", result.num_gt])
        print_table(f"{folder}: {len(pictures)} pictures", ["detector", "AP50", "P@0.5", "R@0.5", "GT boxes"], rows)
    for clip in args.clip:
        spec = SequenceSpec.parse(clip)
        source = open_source(spec.path)
        frames = [(i, f) for i, f in enumerate(source.frames(), start=1)
                  if spec.keeps(i) and (i - (spec.first or 1)) % args.clip_step == 0]
        found = {name: [detect(f, CONF_THRESHOLD) for _, f in frames] for name, detect in dets.items()}
        teacher = found.get("YOLOX-Nano (teacher)")
        rows = []
        for name, boxes in found.items():
            count = sum(len(b) for b, _ in boxes)
            agree = (sum(int((match_picture(b, s, t) == 1).sum()) for (b, s), (t, _) in zip(boxes, teacher))
                     if teacher is not None else None)
            report["clips"].setdefault(clip, {})[name] = {"frames": len(frames), "people": count, "of_teacher": agree}
            rows.append([name, len(frames), f"{count / len(frames):.2f}", "-" if agree is None else agree])
        print_table(f"{clip}, every {args.clip_step}th frame (score >= {CONF_THRESHOLD})",
                    ["detector", "frames", "people per frame", "of the teacher's found (IoU >= 0.5)"], rows)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
