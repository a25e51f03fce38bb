"""The networks fcm ships, on the real footage it ships: accuracy floors, budgets, the default commands.

The floors are set a few points under what the shipped weights measured on the shipped sample
(PETS09-S2L1 551..650, frames neither network was trained on; docs/models.md and docs/results.md),
so a change that breaks the network, the tracker, the coding or the evaluation fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, run_cli

from fcm_common.coding import bitstream
from fcm_common.core.resources import DEFAULT_JDE_CFG, cfg_file
from fcm_common.model.bundled import BUNDLED_JDE_NAME, bundled_weights, choose_network, load_network
from fcm_common.model.darknet_cfg import parse_cfg
from fcm_common.model.splits import SPLITS
from fcm_common.msfc.bundled import bundled_model_path
from fcm_common.msfc.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"

# measured on the sample with the shipped weights (see the module docstring), minus a margin; a new
# bundled JDE or advMSFC model is measured again (the commands are in the tests below) and these updated
TRACK_MOTA_FLOOR = 0.81    # fcm-track, 100 frames: measured 0.8149 (deterministic on a CPU)
ANCHOR_MOTA_FLOOR = 0.70   # anchor, dn53, QP 12, VVenC faster, first 50 frames: measured 0.7517
ADVMSFC_MOTA_FLOOR = 0.73  # advmsfc (bundled detections code; its QACT keeps 21 of 37 at QP 12), backbone, QP 12, same:
# measured 0.7649 (fcm-track on these 50 frames: 0.7748)
# advmsfc at QP 12 as above: its rate; measured 58.5 kbps (the detections code of 2026-12-07; the linear code before
# it: 523.45 kbps with every channel)
ADVMSFC_QP12_KBPS_CEILING = 80.0
# the anchor's design command line: backbone, QP 32, VVenC faster, first 12 frames; measured MOTA -0.875 (QP 32 is
# far down its rate-accuracy curve: docs/results.md); a floor a margin below, to catch a broken pipeline (garbage
# tracks score far lower), not to grade the point. advMSFC's is held to issue 28's target (DESIGN_SHARE below).
DESIGN_MOTA_FLOORS = {"anchor": -1.1}
# advMSFC without coding (every channel, float32, lossless), first 30 frames: fcm-track there scores 0.7582; the
# backbone detections code gives exactly its tracks (None: the same MOTA, IDF1, FP and FN as fcm-track)
NO_CODING_FLOORS = {"dn53": (384, 0.72), "alt1": (192, 0.71), "backbone": (37, None)}  # measured 0.7527, 0.7473, 0.7582


def test_bundled_jde_budget_and_layer_graph():
    path = bundled_weights()
    assert path.stat().st_size <= 16 * 2**20
    model = load_network(choose_network(None))
    assert model.network_name == f"{BUNDLED_JDE_NAME} (bundled)"
    assert sum(p.numel() for p in model.parameters()) <= 8_000_000
    assert (model.input_width, model.input_height) == (576, 320)
    # the same layer graph as JDE-1088x608, so the split points name the same layers
    big = parse_cfg(cfg_file(DEFAULT_JDE_CFG))
    assert [layer.type for layer in model.cfg.layers] == [layer.type for layer in big.layers]
    for split in SPLITS.values():
        shapes = model.split_shapes(split.name)
        assert [(h, w) for _, h, w in shapes] == split.grids(576, 320)


@pytest.mark.slow
def test_bundled_jde_tracks_the_shipped_sample(tmp_path):
    result = run_cli("fcm-track", SAMPLE, "-o", tmp_path / "tracks.txt", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert BUNDLED_JDE_NAME in result.stdout
    mota = float(re.search(r"PETS09-S2L1-551-650\s*│\s*([-\d.]+)", result.stdout.split("MOT metrics")[1]).group(1))
    assert mota >= TRACK_MOTA_FLOOR, result.stdout


@pytest.mark.parametrize("split", list(SPLITS))
def test_bundled_advmsfc_models_match_their_split_and_the_bundled_jde(split):
    path = bundled_model_path(split)
    assert path is not None, f"no bundled advMSFC model for {split}"
    model = load_network(choose_network(None))
    ckpt = load_checkpoint(path, split=split, jde_weights_id=model.weights_id)
    # its QACT table: calibrated at the study's QPs (cfg/ctc/fcm-val.toml; dn53 and alt1 before QP 37 joined
    # them), counts within the code
    assert ckpt.qact.qps in ((7, 12, 17, 22, 27, 32), (7, 12, 17, 22, 27, 32, 37))
    assert all(1 <= k <= ckpt.model.fused_channels for k in ckpt.qact.channels)
    with torch.no_grad():
        feats = model.forward_part1(torch.rand(1, 3, 320, 576), split)
        rebuilt = ckpt.model.decode(ckpt.model.encode(feats))
    assert [tuple(f.shape) for f in rebuilt] == [tuple(f.shape) for f in feats]


def test_bundled_advmsfc_budget():
    total = sum(bundled_model_path(s).stat().st_size for s in SPLITS)
    assert total <= 24 * 2**20  # the budget of the bundled advMSFC models


def _coded_mota(stdout: str, name: str) -> float:
    return float(re.search(rf"{name}\s*│\s*([-\d.]+)", stdout.split("MOT metrics")[1]).group(1))


def _metrics_row(stdout: str) -> list[str]:
    """MOTA, IDF1, MOTP, IDs, FP, FN, GT of the OVERALL row a command printed."""
    line = next(line for line in stdout.split("MOT metrics")[1].splitlines() if "OVERALL" in line)
    return [v.strip() for v in line.split("│")[2:-1]]


def _kbps(path: Path) -> float:
    header, _ = bitstream.parse(path.read_bytes())
    return path.stat().st_size * 8 * float(header.fps) / header.num_frames / 1000


def _bundled_qact(split: str):
    model = load_network(choose_network(None))
    return load_checkpoint(bundled_model_path(split), split=split, jde_weights_id=model.weights_id)


DESIGN_QP, DESIGN_FRAMES = 32, 12  # the anchor's design run: first 12 frames, VVenC faster
UNCOMPRESSED_MOTA = 0.8149  # fcm-track on the whole sample (TRACK_MOTA_FLOOR's measurement)
DESIGN_SHARE = 0.90  # issue 28: the design command keeps at least 90 % of the uncompressed MOTA


@pytest.fixture(scope="module")
def design_runs(tmp_path_factory):
    """`fcm-encode <sample> --qp 32 --split backbone [--method anchor]` and `fcm-decode out.bin --gt <sample>`:
    advMSFC exactly as the design command line is written (every frame, the default preset), the anchor on
    12 frames with VVenC faster: {method: (encode, stream path, decode)}."""
    runs = {}
    for method in ("anchor", "advmsfc"):
        folder = tmp_path_factory.mktemp(method)
        out = folder / "out.bin"
        extra = ["--method", "anchor", "--frames", DESIGN_FRAMES, "--preset", "faster"] if method == "anchor" else []
        enc = run_cli("fcm-encode", SAMPLE, "--qp", DESIGN_QP, "--split", "backbone", *extra, "-o", out, cwd=folder)
        dec = run_cli("fcm-decode", out, "--gt", SAMPLE, cwd=folder) if enc.returncode == 0 else None
        runs[method] = (enc, out, dec)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("method", ["anchor", "advmsfc"])
def test_the_design_command_lines_work_with_no_model_flags(design_runs, method):
    """The bundled networks and models, with no flag naming them: the anchor gives a real score of its 12
    frames; advMSFC keeps at least 90 % of the uncompressed tracking on the whole sample (issue 28)."""
    enc, out, dec = design_runs[method]
    assert enc.returncode == 0, enc.stderr
    assert BUNDLED_JDE_NAME in enc.stdout
    if method == "advmsfc":
        assert "advMSFC-576x320-backbone" in enc.stdout
    header, _ = bitstream.parse(out.read_bytes())
    assert header.method == method and (header.input_width, header.input_height) == (576, 320)
    assert header.num_frames == (DESIGN_FRAMES if method == "anchor" else 100) and header.qp == DESIGN_QP
    assert dec.returncode == 0, dec.stderr
    assert BUNDLED_JDE_NAME in dec.stdout
    floor = DESIGN_MOTA_FLOORS["anchor"] if method == "anchor" else DESIGN_SHARE * UNCOMPRESSED_MOTA
    assert _coded_mota(dec.stdout, SAMPLE.name) >= floor, dec.stdout


@pytest.mark.slow
def test_advmsfc_codes_the_qact_channels_for_less_than_every_channel_and_the_anchor(design_runs, tmp_path):
    """At the design QP the bundled model's QACT table keeps fewer channels than the fusion makes: the
    stream carries that count (read from the model at test time), and costs less than the same frames
    with every channel, and less than the anchor at the same QP and split."""
    ckpt = _bundled_qact("backbone")
    keep = ckpt.qact.channels_for(DESIGN_QP)
    assert keep < ckpt.model.fused_channels, "this test needs a QP at which QACT drops channels"
    _, out, _ = design_runs["advmsfc"]
    header, _ = bitstream.parse(out.read_bytes())
    assert header.coded_channels == [keep] and header.fused_channels == (ckpt.model.fused_channels,)
    every = tmp_path / "every.bin"
    enc = run_cli("fcm-encode", SAMPLE, "--qp", DESIGN_QP, "--split", "backbone", "--channels",
                  ckpt.model.fused_channels, "-o", every)
    assert enc.returncode == 0, enc.stderr
    assert bitstream.parse(every.read_bytes())[0].coded_channels == [ckpt.model.fused_channels]
    assert _kbps(out) < _kbps(every)
    assert _kbps(out) < _kbps(design_runs["anchor"][1])


@pytest.mark.slow
@pytest.mark.parametrize("method, split, floor", [("anchor", "dn53", ANCHOR_MOTA_FLOOR), ("advmsfc", "backbone", ADVMSFC_MOTA_FLOOR)])
def test_accuracy_after_coding_stays_above_the_measured_floor(method, split, floor, tmp_path):
    out = tmp_path / "out.bin"
    enc = run_cli("fcm-encode", SAMPLE, "--method", method, "--split", split, "--qp", "12", "--frames", "50",
                  "--preset", "faster", "-o", out)
    assert enc.returncode == 0, enc.stderr
    if method == "advmsfc":  # the channels QACT chooses at QP 12 (read from the bundled model), at their rate
        keep = _bundled_qact(split).qact.channels_for(12)
        assert bitstream.parse(out.read_bytes())[0].coded_channels == [keep]
        assert _kbps(out) <= ADVMSFC_QP12_KBPS_CEILING
    dec = run_cli("fcm-decode", out, "--gt", SAMPLE)
    assert dec.returncode == 0, dec.stderr
    assert _coded_mota(dec.stdout, SAMPLE.name) >= floor, dec.stdout


@pytest.mark.slow
def test_a_stream_of_another_network_needs_its_weights(small_sequence, small_cfg, tmp_path):
    out = tmp_path / "random.bin"
    enc = run_cli("fcm-encode", small_sequence, "--weights", "random", "--jde-cfg", small_cfg, "--method", "anchor",
                  "--split", "alt1", "--frames", "2", "--preset", "faster", "-o", out)
    assert enc.returncode == 0, enc.stderr
    assert_one_line_error(run_cli("fcm-decode", out), f"not the bundled {BUNDLED_JDE_NAME}")


@pytest.mark.slow
@pytest.mark.parametrize("split", list(SPLITS))
def test_advmsfc_without_coding_keeps_the_tracking(split, tmp_path):
    """MSFF -> every channel -> MSFR with no quantisation: what the fusion model alone costs (issue 22)."""
    channels, floor = NO_CODING_FLOORS[split]
    out = tmp_path / "out.bin"
    enc = run_cli("fcm-encode", SAMPLE, "--split", split, "--codec", "lossless", "--bit-depth", "32",
                  "--channels", str(channels), "--frames", "30", "-o", out)
    assert enc.returncode == 0, enc.stderr
    dec = run_cli("fcm-decode", out, "--gt", SAMPLE)
    assert dec.returncode == 0, dec.stderr
    if floor is not None:
        assert _coded_mota(dec.stdout, SAMPLE.name) >= floor, dec.stdout
        return
    # the detections code keeps what JDE keeps: the uncompressed run's scores, to the last box
    track = run_cli("fcm-track", SAMPLE, "--frames", "30", "-o", tmp_path / "t.txt")
    assert track.returncode == 0, track.stderr
    assert _metrics_row(dec.stdout) == _metrics_row(track.stdout), (dec.stdout, track.stdout)
