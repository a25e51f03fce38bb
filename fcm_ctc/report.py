"""Tables of a common-test-condition run.

- ``results.csv``: one row per (sequence, QP): bytes, kbps, MOTA, IDF1, MOTP, FP, FN, IDs and the
  seconds of NN part 1, encoding, decoding and NN part 2 (MOTA, IDF1 in percent).
  ``framework_kbps`` (anchor runs only): the rate the MPEG framework reports for the same VVC payload,
  which it counts with its own 13 + 8N-byte header (N frames) instead of fcm's, so that anchor points
  can be laid over MPEG's published ones.
- ``classes.csv``: per class and rate index, the combined point as the MPEG framework computes it:
  MOTA pooled over the class's sequences (one accumulator per sequence, summed: the OVERALL row, not
  an average) and duration-weighted kbps (total bits over total duration) and times.
- ``summary.csv``: both kinds of points in the form ``fcm-bdrate`` reads (name, kind, rate_index,
  qp, kbps, mota).
- ``final_<DATASET>.csv``: the framework's reporting layout (pandas-style index column; Dataset, qp,
  bitrate (kbps), end_accuracy (MOTA in percent), nn_part_1, encode, decode, nn_part_2), sequences
  sorted by name and QP, then one row per class and rate index (qp = the rate index).
"""

from __future__ import annotations

import csv
from pathlib import Path

from fcm_common.core.atomic import atomic_path
from fcm_common.data.mot_format import read_rows
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_ctc.config import DatasetDef

PAIR_COLUMNS = ["sequence", "class", "qp", "rate_index", "channels", "frames", "fps", "bytes", "kbps", "framework_kbps", "MOTA",
                "IDF1", "MOTP", "FP", "FN", "IDs", "GT", "nn_part1_s", "encode_s", "decode_s", "nn_part2_s"]
CLASS_COLUMNS = ["class", "rate_index", "sequences", "kbps", "MOTA", "nn_part1_s", "encode_s", "decode_s", "nn_part2_s"]
TIMES = ["nn_part1_s", "encode_s", "decode_s", "nn_part2_s"]


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(row.get(k, "")) for k in columns})


def _fmt(value):
    return f"{value:.6f}" if isinstance(value, float) else value


def pair_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        row = dict(r)
        row["MOTA"] = 100 * r["MOTA"]
        row["IDF1"] = 100 * r["IDF1"]
        row["framework_kbps"] = "" if r.get("framework_kbps") is None else r["framework_kbps"]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["sequence"], r["qp"]))


def class_rows(dataset: DatasetDef, results: list[dict], run_dir: Path, data_root: Path, max_frames: int | None) -> tuple[list[dict], list[str]]:
    """Pooled points per class and rate index; also the reasons a class point is missing."""
    by_key = {(r["sequence"], r["rate_index"]): r for r in results}
    folders = {s.name: s.folder for s in dataset.sequences}
    rows, problems = [], []
    for cls, members in dataset.classes.items():
        indices = sorted({r["rate_index"] for r in results if r["class"] == cls})
        for i in indices:
            points = [by_key.get((name, i)) for name in members]
            missing = [name for name, p in zip(members, points) if p is None]
            if missing:
                problems.append(f"class {cls}, rate index {i}: no result for {', '.join(missing)}")
                continue
            items = []
            for name, p in zip(members, points):
                seq_dir = data_root / folders[name]
                seqinfo = seq_dir / "seqinfo.ini"
                tracks = read_rows(run_dir / name / f"qp{p['qp']}" / "tracks.txt")
                items.append(SequenceResult(name, seq_dir / "gt" / "gt.txt", tracks,
                                            seqinfo if seqinfo.is_file() else None, max_frames, mode=dataset.eval_mode))
            summary = evaluate(items)  # OVERALL with the framework's pooled solver
            seconds = [p["frames"] / p["fps"] for p in points]
            total = sum(seconds)
            row = {
                "class": cls, "rate_index": i, "sequences": len(members),
                "kbps": sum(p["bytes"] * 8 for p in points) / total / 1000,
                "MOTA": 100 * float(summary.loc["OVERALL", "MOTA"]),
            }
            for t in TIMES:
                row[t] = sum(p[t] * d for p, d in zip(points, seconds)) / total
            rows.append(row)
    return rows, problems


def write_reports(dataset: DatasetDef, results: list[dict], run_dir: Path, data_root: Path, max_frames: int | None) -> tuple[list[dict], list[dict], list[str]]:
    pairs = pair_rows(results)
    classes, problems = class_rows(dataset, results, run_dir, data_root, max_frames)
    _write_csv(run_dir / "results.csv", PAIR_COLUMNS, pairs)
    _write_csv(run_dir / "classes.csv", CLASS_COLUMNS, classes)
    summary = [{"name": r["sequence"], "kind": "sequence", "rate_index": r["rate_index"], "qp": r["qp"],
                "kbps": r["kbps"], "mota": r["MOTA"]} for r in pairs]
    summary += [{"name": r["class"], "kind": "class", "rate_index": r["rate_index"], "qp": "",
                 "kbps": r["kbps"], "mota": r["MOTA"]} for r in classes]
    _write_csv(run_dir / "summary.csv", ["name", "kind", "rate_index", "qp", "kbps", "mota"], summary)
    framework = [{"Dataset": r["sequence"], "qp": r["qp"], "bitrate (kbps)": r["kbps"],
                  "framework bitrate (kbps)": r["framework_kbps"], "end_accuracy": r["MOTA"],
                  "nn_part_1": r["nn_part1_s"], "encode": r["encode_s"], "decode": r["decode_s"],
                  "nn_part_2": r["nn_part2_s"]} for r in pairs]
    framework += [{"Dataset": r["class"], "qp": r["rate_index"], "bitrate (kbps)": r["kbps"], "end_accuracy": r["MOTA"],
                   "nn_part_1": r["nn_part1_s"], "encode": r["encode_s"], "decode": r["decode_s"],
                   "nn_part_2": r["nn_part2_s"]} for r in classes]
    for i, row in enumerate(framework):
        row[""] = i
    _write_csv(run_dir / f"final_{dataset.name.upper()}.csv",
               ["", "Dataset", "qp", "bitrate (kbps)", "framework bitrate (kbps)", "end_accuracy", "nn_part_1", "encode",
                "decode", "nn_part_2"], framework)
    return pairs, classes, problems
