"""``fcm-calibrate``: choose the QACT channel count for each QP from measured rate-accuracy points
(see :mod:`fcm_ctc.calibration`)."""

from __future__ import annotations

from pathlib import Path

import click

from fcm_common.cli.options import click_option, codec_options, split_option
from fcm_common.cli.report import MODE_HELP
from fcm_common.cli.support import (
    FcmCommand,
    device_option,
    jde_cfg_option,
    open_network,
    print_table,
    progress,
    weights_option,
)
from fcm_common.coding.methods.advmsfc import MODEL_OPTION, AdvMSFCMethod
from fcm_common.core.device import resolve_device
from fcm_common.data.sources import open_source
from fcm_common.evaluation.mot_metrics import MODE_CHOICES
from fcm_common.msfc.checkpoint import record_qact
from fcm_ctc.calibration import calibrate, require_ground_truth, write_calibration


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{text}'") from None
    if not values:
        raise click.BadParameter("empty list")
    return values


@click.command(name="fcm-calibrate", cls=FcmCommand)
@click.argument("sequences", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="SEQUENCE...")
@split_option(required=True, help="JDE split point of the model.")
@click_option(MODEL_OPTION, required=True)
@weights_option
@jde_cfg_option
@click.option("--qps", default="22,27,32,37,42,47", show_default=True, help="QPs of the table (comma-separated).")
@click.option("--channels", "channel_text", help="Candidate channel counts (default: those of the model's QACT table).")
@codec_options(default="vvenc", help="Inner codec.")
@click.option("--intra-period", type=click.IntRange(min=1), default=32, show_default=True, help="Intra period in frames.")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Only the first N frames of each sequence.")
@click.option("--eval-mode", type=click.Choice(MODE_CHOICES), default="auto", show_default=True,
              help=MODE_HELP)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("qact_calibrated.toml"), show_default=True,
              help="QACT table to write (pass it to fcm-encode --qact).")
@click.option("--record-in-model", is_flag=True,
              help="Also write the calibrated table into the --model file (what fcm-encode uses by default).")
@device_option
def main(sequences, split, model_path, weights, jde_cfg, qps, channel_text, codec, intra_period, max_frames, eval_mode,
         output, record_in_model, device):
    """Measure rate and MOTA of every (QP, channels) pair on SEQUENCE folders and write a QACT table."""
    sources = [open_source(p, max_frames=max_frames) for p in sequences]
    require_ground_truth(sources)
    qp_list = _ints(qps)
    dev = resolve_device(device)
    jde = open_network(weights, jde_cfg, dev)
    method = AdvMSFCMethod.prepare(split, jde.weights_id, dev, model_path=model_path)
    ks = _ints(channel_text) if channel_text else sorted(set(method.checkpoint.qact.channels))
    params = codec.params

    with progress() as bar:
        task = bar.add_task("calibrating", total=len(qp_list) * len(ks) * len(sources))
        result = calibrate(sources, jde, method, split, qp_list, ks, codec.codec, dev, eval_mode,
                           on_point=lambda: bar.advance(task), intra_period=intra_period, **params)
    write_calibration(output, split, result, comment=(
        f"QACT table calibrated by fcm-calibrate for {split.name} with {model_path.name} ({codec.name}, "
        f"{params['preset']}, {params['gop']}, intra period {intra_period}) on {', '.join(s.name for s in sources)}."))
    if record_in_model:
        record_qact(model_path, result.table)
    print_table(f"QACT for {split.name} -> {output}" + (f" and {model_path}" if record_in_model else ""),
                ["QP", "channels", "kbps", "MOTA"],
                [[qp, result.choice[qp], *result.points[(qp, result.choice[qp])]] for qp in qp_list])
