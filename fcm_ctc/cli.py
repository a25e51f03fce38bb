"""``fcm-ctc``: common-test-condition runs (every sequence at every rate point) on a Dask cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from fcm_common.cli.options import codec_options, method_options, split_option
from fcm_common.cli.support import (
    FcmCommand,
    FcmGroup,
    device_option,
    jde_cfg_option,
    option,
    print_table,
    progress,
    stderr_console,
    weights_option,
)
from fcm_common.coding.methods import check_method
from fcm_common.core.errors import FcmError
from fcm_common.model.bundled import bundled_weights
from fcm_common.model.jde import load_jde
from fcm_common.model.splits import SPLITS
from fcm_ctc.config import load_dataset
from fcm_ctc.report import write_reports
from fcm_ctc.runner import Pair, RunSpec, check_run_folder, execute, finished, plan


def _qp_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(q) for q in text.split(",") if q.strip()]
    except ValueError:
        raise FcmError(f"--qps expects comma-separated integers, got '{text}'") from None


def _report(dataset, spec: RunSpec, pairs: list[Pair]) -> None:
    results = [r for r in (finished(spec, p) for p in pairs) if r is not None]
    failed = [p for p in pairs if finished(spec, p) is None]
    run_dir = Path(spec.run_dir)
    pair_rows, class_rows, problems = write_reports(dataset, results, run_dir, Path(spec.data_root), spec.max_frames)
    print_table(
        f"{dataset.name}: {spec.method}/{spec.split}, {spec.codec} -> {run_dir}",
        ["sequence", "QP", "k", "kbps", "MOTA %", "IDF1 %", "IDs", "FP", "FN"],
        [[r["sequence"], r["qp"], r["channels"], r["kbps"], r["MOTA"], r["IDF1"], int(r["IDs"]), int(r["FP"]), int(r["FN"])]
         for r in pair_rows],
    )
    if class_rows:
        print_table("classes (pooled MOTA, duration-weighted kbps)", ["class", "rate index", "kbps", "MOTA %"],
                    [[r["class"], r["rate_index"], r["kbps"], r["MOTA"]] for r in class_rows])
    for problem in problems:
        stderr_console.print(f"[yellow]warning:[/] {problem}")
    if failed:
        raise FcmError(f"{len(failed)} of {len(pairs)} pairs have no result ({', '.join(p.key for p in failed[:5])}"
                       f"{', ...' if len(failed) > 5 else ''}); see error.txt in their folders, re-run to retry")


@click.group(name="fcm-ctc", cls=FcmGroup)
def main():
    """Common-test-condition runs: encode, decode and evaluate every (sequence, QP) pair."""


def _text(options: dict) -> dict:
    """Option values as run.json records them (paths as text)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}


@main.command(name="run", cls=FcmCommand)
@click.option("--dataset", required=True, metavar="tvd|hieve|FILE.toml", help="Dataset definition (cfg/ctc/*.toml or your own).")
@click.option("--data", "data_root", required=True, envvar="DATA", type=click.Path(path_type=Path),
              help="Folder holding the dataset's sequences (default $DATA).")
@method_options(default="advmsfc", exclude=("channels",))  # k follows the QACT table across the rate points
@split_option(help="Default: backbone for advmsfc, the dataset's anchor split for the anchor.")
@codec_options(default="vtm", help="Inner codec (the MPEG framework codes with VTM).")
@option("-o", "--output", "out", aliases=("--out",), type=click.Path(path_type=Path), default=Path("runs"),
        show_default=True, help="Folder of the runs: each goes to OUTPUT/<dataset>_<method>_<split>_<codec>/.")
@weights_option
@jde_cfg_option
@click.option("--qps", help="Rate points for every sequence (default: the dataset definition's).")
@click.option("--range", "range_text", help="Quantisation range (default: as fcm-encode).")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames of each sequence (quick runs).")
@click.option("--workers", type=click.IntRange(min=1), default=max((os.cpu_count() or 2) // 2, 1), show_default=True,
              help="Local Dask workers (ignored with --scheduler).")
@click.option("--scheduler", help="Existing Dask scheduler, e.g. tcp://host:8786 (its workers need fcm installed).")
@device_option
def run(dataset, data_root, method, method_options, split, codec, out, weights, jde_cfg, qps, range_text, max_frames,
        workers, scheduler, device):
    """Run every (sequence, QP) pair of a dataset; finished pairs are skipped, so re-running resumes."""
    ds = load_dataset(dataset)
    weights = weights or str(bundled_weights())  # no --weights: the bundled JDE
    method_class = check_method(method, **method_options)
    split = split or SPLITS[method_class.default_split or ds.anchor_split]
    if not data_root.is_dir():
        raise FcmError(f"data folder not found: {data_root}")
    for seq in ds.sequences:
        if not (data_root / seq.folder).is_dir():
            raise FcmError(f"{seq.name}: {data_root / seq.folder} not found (is --data right?)")
    # the defaults that depend on the network are settled here, once, for every worker
    jde = load_jde(None if weights == "random" else weights, cfg=jde_cfg)
    method_options = method_class.default_options(split, jde.weights_id, **method_options)
    reference = split.is_reference(jde.split_shapes(split.name))  # the network the fixed ranges were measured on
    if range_text is None and method_class.dataset_range and split.name == ds.anchor_split and reference:
        range_text = ds.anchor_range
    n_workers = 1 if scheduler else workers
    qp_override = _qp_list(qps)
    spec = RunSpec(
        dataset=ds.name, dataset_file=str(ds.source.resolve()), eval_mode=ds.eval_mode, intra_period=ds.intra_period,
        method=method, split=split.name, codec=codec.name, range_text=range_text, weights=str(weights),
        jde_cfg=str(jde_cfg) if jde_cfg else None, device=device, max_frames=max_frames,
        data_root=str(data_root.resolve()), run_dir=str((out / f"{ds.name}_{method}_{split.name}_{codec.name}").resolve()),
        torch_threads=max((os.cpu_count() or 1) // n_workers, 1), qps=tuple(qp_override) if qp_override else None,
        method_options=_text(method_options), codec_options=_text(codec.build_options), **codec.params,
    )
    pairs = plan(ds, spec)
    check_run_folder(spec)
    done = sum(finished(spec, p) is not None for p in pairs)
    if done:
        stderr_console.print(f"{done} of {len(pairs)} pairs already finished in {spec.run_dir}: skipped")
    with progress() as bar:
        task = bar.add_task("pairs", total=len(pairs), completed=done)

        def on_result(row: dict) -> None:
            bar.advance(task)
            if row["status"] != "ok":
                stderr_console.print(f"[red]failed:[/] {row['sequence']} QP {row['qp']}: {row['error']}")

        execute(spec, pairs, scheduler, workers, on_result)
    _report(ds, spec, pairs)


@main.command(name="report", cls=FcmCommand)
@click.argument("run_dir", type=click.Path(path_type=Path))
def report(run_dir):
    """Rebuild the tables of a run folder from its finished pairs."""
    record = run_dir / "run.json"
    if not record.is_file():
        raise FcmError(f"{run_dir} is not a run folder (no run.json)")
    spec = RunSpec.from_record(json.loads(record.read_text())["spec"])
    ds = load_dataset(spec.dataset_file)
    _report(ds, spec, plan(ds, spec))
