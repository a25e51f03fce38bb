"""``fcm-bdrate``: BD-rate of a test run against an anchor run, per sequence and per class, and RD curves.

Reads the ``summary.csv`` of two ``fcm-ctc`` runs, or any CSV with the columns ``name``, ``kbps``
and ``mota`` (one row per rate point; an optional ``kind`` column, ``sequence`` or ``class``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import click

from fcm_common.cli.support import FcmCommand, option, print_table
from fcm_common.core.errors import FcmError
from fcm_common.evaluation.bdrate import METHODS, BDRateError, bd_rate_range, plot_curves


def read_points(path: Path) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """{(kind, name): (kbps list, mota list)}."""
    if not path.is_file():
        raise FcmError(f"file not found: {path}")
    points: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "kbps", "mota"} - set(reader.fieldnames or [])
        if missing:
            raise FcmError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need name, kbps, mota)")
        for lineno, row in enumerate(reader, start=2):
            try:
                rate, acc = float(row["kbps"]), float(row["mota"])
            except ValueError:
                raise FcmError(f"{path}:{lineno}: kbps and mota must be numbers") from None
            key = (row.get("kind") or "sequence", row["name"])
            points.setdefault(key, ([], []))
            points[key][0].append(rate)
            points[key][1].append(acc)
    if not points:
        raise FcmError(f"{path}: no rate points")
    return points


@click.command(name="fcm-bdrate", cls=FcmCommand)
@click.argument("anchor_csv", metavar="ANCHOR.csv", type=click.Path(path_type=Path))
@click.argument("test_csv", metavar="TEST.csv", type=click.Path(path_type=Path))
@option("--interpolation", "method", aliases=("--method",), type=click.Choice(METHODS), default="pchip", show_default=True,
              help="pchip: piecewise cubic Hermite (JVET/MPEG practice); cubic: VCEG-M33 polynomial fit.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=Path("rd_curves.png"), show_default=True,
              help="RD-curve PNG (MOTA vs kbps, both runs).")
@click.option("--no-plot", is_flag=True, help="Draw no RD curves.")
def main(anchor_csv, test_csv, method, plot_path, no_plot):
    """BD-rate (log-rate as a function of MOTA, over the overlapping MOTA range) of TEST against ANCHOR."""
    anchor, test = read_points(anchor_csv), read_points(test_csv)
    common = [key for key in test if key in anchor]
    if not common:
        raise FcmError("the two files share no sequence or class name")
    rows, curves = [], {}
    for kind, name in sorted(common, key=lambda k: (k[0] != "class", k[1])):
        (ra, ma), (rt, mt) = anchor[(kind, name)], test[(kind, name)]
        try:
            result = bd_rate_range(ra, ma, rt, mt, method)
            value, span = f"{100 * result.value:+.2f}%", f"{result.lo:.4g}..{result.hi:.4g}"
        except BDRateError as exc:
            value, span = f"n/a ({exc})", "-"
        rows.append([name, kind, len(ra), len(rt), value, span])
        curves[f"{name} ({kind})"] = {anchor_csv.stem if anchor_csv.stem != test_csv.stem else "anchor": (ra, ma),
                                      test_csv.stem if anchor_csv.stem != test_csv.stem else "test": (rt, mt)}
    print_table(f"BD-rate of {test_csv} vs {anchor_csv} ({method})", ["name", "kind", "anchor points", "test points", "BD-rate", "over MOTA"], rows)
    if not no_plot:
        plot_curves(curves, plot_path, title=f"{test_csv.parent.name or test_csv.stem} vs {anchor_csv.parent.name or anchor_csv.stem}")
        click.echo(f"RD curves: {plot_path}")
