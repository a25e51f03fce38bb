"""``fcm-calibrate``: choose the QACT channel count for each QP from measured rate-accuracy points.

For every QP and every candidate channel count, the validation sequences are encoded, decoded and
tracked (exactly as fcm-encode / fcm-decode do), giving points (kbps, pooled MOTA). The efficient
frontier is the upper convex hull of the points in the (log10 kbps, MOTA) plane. For each QP the
chosen k is that QP's point on the frontier with the highest MOTA; if none of its points is on the
frontier, the one closest below it. The table is written in ``cfg/qact.toml``'s format, the points
as CSV. Use sequences that are not in your test set.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import click

from fcm_common.cli.support import FcmCommand, jde_cfg_option, print_table, progress, resolve_weights, weights_option
from fcm_common.coding.codecs import CODEC_NAMES
from fcm_common.coding.codecs.base import GOP_STRUCTURES
from fcm_common.coding.codecs.vvenc import PRESETS
from fcm_common.core.device import DEVICE_CHOICES, resolve_device
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_source
from fcm_common.evaluation.mot_metrics import EVAL_MODES, accumulate, summarize
from fcm_common.model.splits import SPLIT_NAMES
from fcm_common.msfc.qact import QACTTable, write_qact
from fcm_ctc.experiment import code_and_track


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{text}'") from None
    if not values:
        raise click.BadParameter("empty list")
    return values


def upper_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper convex hull (x ascending) of (x, y) points: the efficient rate-accuracy frontier."""
    pts = sorted(set(points))
    hull: list[tuple[float, float]] = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:  # hull[-1] not above the chord
                hull.pop()
            else:
                break
        hull.append(p)
    # keep only the rising part: beyond the best accuracy, more rate is never efficient
    best = max(range(len(hull)), key=lambda i: hull[i][1])
    return hull[: best + 1]


def hull_gap(point: tuple[float, float], hull: list[tuple[float, float]]) -> float:
    """How far (in accuracy) a point lies below the frontier; 0 on it."""
    x, y = point
    if x <= hull[0][0]:
        frontier = hull[0][1]
    elif x >= hull[-1][0]:
        frontier = hull[-1][1]
    else:
        frontier = hull[-1][1]
        for (x1, y1), (x2, y2) in zip(hull, hull[1:]):
            if x1 <= x <= x2:
                frontier = y1 + (y2 - y1) * (x - x1) / (x2 - x1)
                break
    return max(frontier - y, 0.0)


def choose_channels(points: dict[tuple[int, int], tuple[float, float]], qps: list[int]) -> dict[int, int]:
    """QP -> k from {(qp, k): (kbps, mota)}."""
    xy = {key: (math.log10(max(r, 1e-9)), m) for key, (r, m) in points.items()}
    hull = upper_hull(list(xy.values()))
    choice = {}
    for qp in qps:
        candidates = [(key, v) for key, v in xy.items() if key[0] == qp]
        gaps = [(hull_gap(v, hull), -v[1], key[1]) for key, v in candidates]
        choice[qp] = min(gaps)[2]
    return choice


@click.command(name="fcm-calibrate", cls=FcmCommand)
@click.argument("sequences", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="SEQUENCE...")
@click.option("--split", type=click.Choice(SPLIT_NAMES), required=True)
@click.option("--model", "model_path", envvar="FCM_ADVMSFC_MODEL", required=True, type=click.Path(path_type=Path))
@weights_option
@jde_cfg_option
@click.option("--qps", default="22,27,32,37,42,47", show_default=True, help="QPs of the table (comma-separated).")
@click.option("--channels", "channel_text", help="Candidate channel counts (default: those of the model's QACT table).")
@click.option("--codec", type=click.Choice(CODEC_NAMES), default="vvenc", show_default=True)
@click.option("--preset", type=click.Choice(PRESETS), default="medium", show_default=True)
@click.option("--gop", type=click.Choice(GOP_STRUCTURES), default="ld", show_default=True)
@click.option("--intra-period", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames of each sequence.")
@click.option("--eval-mode", type=click.Choice(EVAL_MODES), default="tvd", show_default=True)
@click.option("--vtm-dir", envvar="FCM_VTM_DIR", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("qact_calibrated.toml"), show_default=True)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
def main(sequences, split, model_path, weights, jde_cfg, qps, channel_text, codec, preset, gop, intra_period,
         max_frames, eval_mode, vtm_dir, output, device):
    """Measure rate and MOTA of every (QP, channels) pair on SEQUENCE folders and write a QACT table."""
    from fcm_common.coding.methods.advmsfc import load_advmsfc_method
    from fcm_common.model.jde import load_jde
    from fcm_encoder.encoder import EncodeSettings, range_spec

    sources = [open_source(p, max_frames=max_frames) for p in sequences]
    for s in sources:
        if s.gt_path is None:
            raise FcmError(f"{s.path}: calibration needs ground truth (gt/gt.txt)")
    qp_list = _ints(qps)
    dev = resolve_device(device)
    jde = load_jde(resolve_weights(weights), device=dev, cfg=jde_cfg)
    method = load_advmsfc_method(model_path, dev, split, jde.weights_id)
    ks = _ints(channel_text) if channel_text else sorted(set(method.checkpoint.qact.channels))
    if max(ks) > method.model.fused_channels:
        raise FcmError(f"channel counts must not exceed {method.model.fused_channels}")
    quant_range = range_spec(None, method, split)

    points: dict[tuple[int, int], tuple[float, float]] = {}
    with progress() as bar:
        task = bar.add_task("calibrating", total=len(qp_list) * len(ks) * len(sources))
        for qp in qp_list:
            for k in ks:
                method.keep = k
                settings = EncodeSettings(split=split, qp=qp, codec=codec, intra_period=intra_period, preset=preset,
                                          gop=gop, range_spec=quant_range, vtm_dir=str(vtm_dir) if vtm_dir else None)
                accs, names, total_bits, total_seconds = [], [], 0.0, 0.0
                for source in sources:
                    result = code_and_track(source, jde, method, settings, dev)
                    accs.append(accumulate(source.gt_path, result.rows, eval_mode, source.seqinfo_path))
                    names.append(source.name)
                    total_bits += result.bytes * 8
                    total_seconds += result.frames / result.fps
                    bar.advance(task)
                mota = float(summarize(accs, names).loc["OVERALL", "MOTA"])
                points[(qp, k)] = (total_bits / total_seconds / 1000, mota)

    choice = choose_channels(points, qp_list)
    table = QACTTable(tuple(qp_list), tuple(choice[q] for q in qp_list))
    write_qact(output, {split: table}, comment=(
        f"QACT table calibrated by fcm-calibrate for {split} with {model_path.name} ({codec}, {preset}, {gop}, "
        f"intra period {intra_period}) on {', '.join(s.name for s in sources)}."))
    with open(output.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["qp", "channels", "kbps", "mota", "chosen"])
        for (qp, k), (rate, mota) in sorted(points.items()):
            writer.writerow([qp, k, f"{rate:.4f}", f"{mota:.6f}", int(choice[qp] == k)])
    print_table(f"QACT for {split} -> {output}", ["QP", "channels", "kbps", "MOTA"],
                [[qp, choice[qp], *points[(qp, choice[qp])]] for qp in qp_list])
