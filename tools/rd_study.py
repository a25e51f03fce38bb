#!/usr/bin/env python3
"""The rate-accuracy study behind ``make rd`` and docs/results.md.

Runs, on the sequences of a dataset definition (default ``cfg/ctc/fcm-val.toml``: the shipped
PETS09-S2L1 551..650 sample, the bundled JDE's validation frames):

1. the uncompressed pipeline (``fcm-track``): the reference MOTA;
2. ``fcm-ctc run`` for the feature anchor and advMSFC at the three split points (the dataset's rate
   points; VVenC, or VTM when ``FCM_VTM_DIR`` is set), with the bundled JDE and advMSFC models;
3. ``fcm-bdrate``-style BD-rates per class: advMSFC vs the anchor at each split, advMSFC Backbone vs
   advMSFC DN53 and ALT1;
4. one RD-curve PNG and ``docs/results.md`` (tables, picture, command, machine, wall time).

Every number in the page comes from this run. Re-running resumes finished (sequence, QP) pairs.

    python tools/rd_study.py --data samples --out runs/rd
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("dn53", "alt1", "backbone")
METHODS = ("anchor", "advmsfc")


def run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def read_summary(path: Path, kind: str = "class") -> dict[str, tuple[list[float], list[float]]]:
    """{name: (kbps, MOTA %)} of the class (or sequence) points of an fcm-ctc summary.csv."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] == kind:
                rates, motas = out.setdefault(row["name"], ([], []))
                rates.append(float(row["kbps"]))
                motas.append(float(row["mota"]))
    return out


def read_pairs(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def reference_mota(data: Path, sequences, out: Path, frames: int | None) -> dict[str, float]:
    """MOTA (%) of the uncompressed pipeline per sequence and pooled per class."""
    from fcm_common.data.mot_format import read_rows
    from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate

    results = {}
    for seq in sequences:
        folder = data / seq.folder
        tracks = out / "reference" / f"{seq.name}.txt"
        if not tracks.is_file():
            run([bin_path("fcm-track"), str(folder), "-o", str(tracks), *(["--frames", str(frames)] if frames else [])])
        results[seq.name] = (seq, folder, read_rows(tracks))
    motas = {}
    for name, (_seq, folder, rows) in results.items():
        item = SequenceResult(name, folder / "gt" / "gt.txt", rows, folder / "seqinfo.ini", frames)
        motas[name] = 100 * float(evaluate([item]).loc[name, "MOTA"])
    classes: dict[str, list] = {}
    for name, (seq, folder, rows) in results.items():
        classes.setdefault(seq.cls, []).append(SequenceResult(name, folder / "gt" / "gt.txt", rows, folder / "seqinfo.ini", frames))
    for cls, items in classes.items():
        summary = evaluate(items)
        motas[cls] = 100 * float(summary.loc["OVERALL" if len(items) > 1 else items[0].name, "MOTA"])
    return motas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fcm-val", help="fcm-ctc dataset definition (name or TOML path)")
    ap.add_argument("--data", type=Path, default=ROOT / "samples", help="folder that holds the dataset's sequences")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "rd")
    ap.add_argument("--frames", type=int, help="only the first N frames of each sequence (quick runs)")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "results.md", help="page to regenerate ('' = none)")
    ap.add_argument("--splits", default=",".join(SPLITS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--preset", default="medium",
                    help="VVenC preset (default: fcm-encode's default, medium; docs/results.md is made with it)")
    args = ap.parse_args()

    from fcm_common.cli.support import print_table
    from fcm_common.evaluation.bdrate import BDRateError, bd_rate_range, efficient_points
    from fcm_ctc.config import load_dataset

    started = time.time()
    ds = load_dataset(args.dataset)
    codec = "vtm" if os.environ.get("FCM_VTM_DIR") else "vvenc"
    splits = args.splits.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    reference = reference_mota(args.data, ds.sequences, args.out, args.frames)

    curves: dict[tuple[str, str], dict] = {}
    pairs: dict[tuple[str, str], list[dict]] = {}
    computed = 0
    for split in splits:
        for method in args.methods.split(","):
            cmd = [bin_path("fcm-ctc"), "run", "--dataset", args.dataset, "--data", str(args.data), "--out", str(args.out),
                   "--method", method, "--split", split, "--codec", codec, "--workers", "1"]
            if codec == "vvenc":
                cmd += ["--preset", args.preset]
            if args.frames:
                cmd += ["--frames", str(args.frames)]
            if codec == "vtm":
                cmd += ["--vtm-dir", os.environ["FCM_VTM_DIR"]]
            run_dir = args.out / f"{ds.name}_{method}_{split}_{codec}"
            before = len(read_pairs(run_dir / "results.csv")) if (run_dir / "results.csv").is_file() else 0
            run(cmd)
            curves[(method, split)] = read_summary(run_dir / "summary.csv")
            pairs[(method, split)] = read_pairs(run_dir / "results.csv")
            computed += len(pairs[(method, split)]) - before

    if set(args.methods.split(",")) != set(METHODS):
        print("runs done; BD-rates, the picture and the page need both methods")
        return

    # BD-rates integrate the efficient points only; the picture and the tables show every point
    efficient: dict[tuple[str, str], dict[str, tuple[list[float], list[float]]]] = {}
    dropped: list[str] = []
    for (method, split), points in curves.items():
        for cls, (rates, motas) in points.items():
            kept = efficient_points(rates, motas)
            dropped += [f"{method} {split} {cls}: {rates[i]:.1f} kbps, MOTA {motas[i]:.2f}"
                        for i in range(len(rates)) if i not in kept]
            efficient.setdefault((method, split), {})[cls] = ([rates[i] for i in kept], [motas[i] for i in kept])

    def bd(test: tuple[str, str], anchor: tuple[str, str], cls: str) -> str:
        (ra, ma), (rt, mt) = efficient[anchor][cls], efficient[test][cls]
        try:
            return bd_rate_range(ra, ma, rt, mt, "pchip").describe(mota_scale=1)  # MOTA here is in %
        except BDRateError as exc:
            return f"n/a ({exc})"

    classes = sorted(ds.classes)
    bd_rows = []
    for cls in classes:
        for split in splits:
            bd_rows.append([cls, f"advMSFC {split} vs anchor {split}", bd(("advmsfc", split), ("anchor", split), cls)])
        if "backbone" in splits and "dn53" in splits:
            bd_rows.append([cls, "advMSFC backbone vs anchor dn53", bd(("advmsfc", "backbone"), ("anchor", "dn53"), cls)])
        for other in (s for s in splits if s != "backbone"):
            if "backbone" in splits:
                bd_rows.append([cls, f"advMSFC backbone vs advMSFC {other}", bd(("advmsfc", "backbone"), ("advmsfc", other), cls)])
    print_table("BD-rate (pchip, MOTA vs log kbps)", ["class", "comparison", "BD-rate"], bd_rows)

    if dropped:
        print("dominated rate points left out of the BD-rates: " + "; ".join(dropped))
    png = args.out / "rd_curves.png"
    plot(curves, reference, classes, splits, png)
    invocations = log_invocation(args.out, started, time.time() - started, computed)
    print(f"RD curves: {png}; wall time {(time.time() - started) / 60:.1f} min ({computed} rate points computed)")
    if args.docs.name:  # --docs "" (Path(".")): no page
        write_page(args, ds, codec, reference, curves, pairs, bd_rows, dropped, png, invocations)


def log_invocation(out: Path, started: float, seconds: float, computed: int) -> list[dict]:
    """Append this invocation to ``out/invocations.csv`` (a resumed study reports every run's time)."""
    path = out / "invocations.csv"
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["started_utc", "wall_seconds", "rate_points_computed"])
        writer.writerow([datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M"), f"{seconds:.0f}", computed])
    return read_pairs(path)


def plot(curves, reference, classes, splits, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(classes), figsize=(7 * len(classes), 5), squeeze=False)
    colours = {"dn53": "tab:blue", "alt1": "tab:green", "backbone": "tab:red"}
    for ax, cls in zip(axes.flat, classes):
        for (method, split), points in curves.items():
            if cls not in points:
                continue
            rates, motas = points[cls]
            order = sorted(range(len(rates)), key=rates.__getitem__)
            ax.plot([rates[i] for i in order], [motas[i] for i in order], marker="o" if method == "advmsfc" else "s",
                    linestyle="-" if method == "advmsfc" else "--", color=colours.get(split),
                    label=f"{'advMSFC' if method == 'advmsfc' else 'anchor'} {split}")
        ax.axhline(reference[cls], color="black", linewidth=1, label=f"uncompressed ({reference[cls]:.1f})")
        ax.set_xscale("log")
        ax.set_xlabel("kbps")
        ax.set_ylabel("MOTA (%)")
        ax.set_title(f"{cls}: bundled JDE-576x320-fcm")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def write_page(args, ds, codec, reference, curves, pairs, bd_rows, dropped, png: Path, invocations: list[dict]) -> None:
    import shutil

    docs = args.docs
    docs.parent.mkdir(parents=True, exist_ok=True)
    picture = docs.parent / "images" / f"{docs.stem}_rd_curves.png"  # one picture per page
    picture.parent.mkdir(exist_ok=True)
    shutil.copyfile(png, picture)
    command = "make rd" if args.dataset == "fcm-val" and not args.frames else "python tools/rd_study.py " + shlex.join(sys.argv[1:])
    total = sum(float(r["wall_seconds"]) for r in invocations)
    timing = f"{total / 60:.1f} min" + ("" if len(invocations) == 1 else " over " + ", ".join(
        f"{float(r['wall_seconds']) / 60:.1f} min ({r['rate_points_computed']} sequence-QP runs coded, {r['started_utc']} UTC)"
        for r in invocations))
    lines = [
        "# Rate-accuracy study: advMSFC vs the feature anchor on the bundled JDE",
        "",
        f"*Generated by `{command}` (tools/rd_study.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"machine: {_machine()}; wall time {timing}. Do not edit by hand: re-run it.*",
        "",
        f"Network: the bundled JDE-576x320-fcm and the bundled advMSFC models (docs/models.md). Sequences: "
        f"{', '.join(s.name for s in ds.sequences)} (dataset `{ds.name}`, evaluation rules `{ds.eval_mode}`), "
        "which neither network was trained on. Inner codec: "
        f"{'VTM' if codec == 'vtm' else f'VVenC ({args.preset} preset, low delay)'}; rate = whole bitstream (header included) over the sequence duration. "
        "Anchor quantisation range: measured over each sequence (the framework's fixed TVD/HiEve ranges belong to "
        "JDE-1088x608); advMSFC: the model's recorded code range.",
        "",
        f"![RD curves](images/{picture.name})",
        "",
        "## BD-rate (pchip over the common MOTA range; negative = fewer bits for the same MOTA)",
        "",
        "| class | comparison | BD-rate |",
        "|---|---|---|",
        *(f"| {c} | {what} | {value} |" for c, what, value in bd_rows),
        "",
        *(["Dominated rate points (more rate, no more MOTA than a cheaper point of the same curve) are left "
           "out of the BD-rates, not out of the picture or the table below: " + "; ".join(dropped) + ".", ""]
          if dropped else []),
        "## Rate points",
        "",
        "Uncompressed pipeline (fcm-track, same network): "
        + ", ".join(f"{name} MOTA {value:.2f}%" for name, value in reference.items()) + ".",
        "",
        "| method | split | sequence | QP | channels | kbps | MOTA % | drop vs uncompressed | IDF1 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, split), rows in pairs.items():
        for r in rows:
            mota = float(r["MOTA"])
            lines.append(f"| {method} | {split} | {r['sequence']} | {r['qp']} | {r['channels']} | {float(r['kbps']):.2f} | "
                         f"{mota:.2f} | {mota - reference[r['sequence']]:+.2f} | {float(r['IDF1']):.2f} |")
    lines += ["", f"Run folders: `{args.out}/<dataset>_<method>_<split>_<codec>/` (results.csv, summary.csv, streams, tracks).", ""]
    notes = docs.with_name(f"{docs.stem}_notes.md")  # hand-written findings kept beside the page
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    docs.write_text("\n".join(lines))
    print(f"wrote {docs}")


if __name__ == "__main__":
    main()
