"""advMSFC end to end: fcm-train -> fcm-encode --method advmsfc -> fcm-decode (random JDE, 320x192)."""

from pathlib import Path

import pytest
import numpy as np
import torch
from conftest import assert_one_line_error, run_cli, run_in_process

from fcm_common.coding import bitstream
from fcm_common.coding.methods.advmsfc import AdvMSFCMethod
from fcm_common.coding.quantization import RangeSpec, dequantize, quantize
from fcm_common.data.sources import open_source
from fcm_common.model.preprocess import network_inputs
from fcm_common.msfc.checkpoint import load_checkpoint
from fcm_common.tracking.sequence import SequenceTracker
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

# every test here needs the module's trained model (20 s on 2 cores): make test runs them, make test-fast not
pytestmark = pytest.mark.slow

TINY_ARCH = """
[dn53]
fused_channels = 1024
msff_widths = [16, 32]
msfr_widths = [8, 16, 32]
[alt1]
fused_channels = 512
msff_widths = [16, 32]
msfr_widths = [8, 16, 32]
[backbone]
fused_channels = 536
msff_widths = [16, 32]
msfr_widths = [8, 16, 32]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_sequence, small_cfg):
    folder = tmp_path_factory.mktemp("train")
    arch = folder / "tiny.toml"
    arch.write_text(TINY_ARCH)
    model = folder / "advmsfc_backbone.pt"
    common = [small_sequence, "--split", "backbone", "--weights", "random", "--jde-cfg", small_cfg, "-o", model,
              "--batch-size", "2", "--stats-frames", "4", "--device", "cpu"]
    first = run_cli("fcm-train", *common, "--steps", "6", "--checkpoint-every", "3", "--arch", arch)
    assert first.returncode == 0, first.stderr
    assert load_checkpoint(model).step == 6
    resumed = run_cli("fcm-train", *common, "--steps", "8", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    return model, first, resumed


def test_training_writes_a_complete_checkpoint(trained, small_jde):
    model, first, resumed = trained
    assert "standardised reconstruction MSE by kept channels" in first.stdout
    assert "resuming" in resumed.stderr
    ckpt = load_checkpoint(model, split="backbone", jde_weights_id=small_jde.weights_id)
    assert ckpt.step == 8 and ckpt.code_range is not None and ckpt.code_range[0] < ckpt.code_range[1]
    assert ckpt.model.fused_channels == 536 and ckpt.qact.channels == (536, 256, 192, 128, 96, 64)
    assert ckpt.training["split"] == "backbone" and ckpt.training["sls"] is True
    assert ckpt.optimizer_state is not None


def test_training_refuses_to_overwrite_or_mismatch(trained, small_sequence, small_cfg):
    model, *_ = trained
    base = [small_sequence, "--weights", "random", "--jde-cfg", small_cfg, "-o", model, "--device", "cpu", "--steps", "20"]
    assert_one_line_error(run_cli("fcm-train", *base, "--split", "backbone"), "exists: pass --resume")
    assert_one_line_error(run_cli("fcm-train", *base, "--split", "dn53", "--resume"), "trained for split 'backbone', not 'dn53'")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--codec-qp", "7", "--codec-qp must be MIN-MAX, got '7'"),
    ("--codec-qp", "30-7", "--codec-qp must be within 0-63 with MIN <= MAX, got '30-7'"),
    ("--crop", "9by16", "--crop: '9by16' is not HxW of positive integers"),
    ("--crop", "0x16", "--crop: '0x16' is not HxW of positive integers"),
    ("--crop", "9x16", "--crop needs --cache-features and the backbone split"),
])
def test_training_option_errors_are_one_line(tmp_path, small_sequence, small_cfg, option, value, message):
    model = tmp_path / "model.pt"
    base = [small_sequence, "--split", "backbone", "--weights", "random", "--jde-cfg", small_cfg, "-o", model,
            "--device", "cpu", "--steps", "1"]
    assert_one_line_error(run_cli("fcm-train", *base, option, value), message)
    assert not model.exists()


def _reference(jde, method: AdvMSFCMethod, seq, lo, hi) -> tuple[SequenceTracker, list]:
    """MSFF -> keep k -> quantise/dequantise -> zero-fill -> MSFR -> part 2, in-process; the tracker and
    the reconstructed features of every frame (the random network finds nobody on this sequence, so the
    features are what the comparison rests on)."""
    source = open_source(seq)
    ref, features = SequenceTracker(source.fps), []
    with torch.inference_mode():
        for batch, boxes in network_inputs(source, jde.input_width, jde.input_height):
            code = method.model.encode(jde.forward_part1(batch, "backbone"))[:, : method.keep]
            back = dequantize(quantize(code, lo, hi), lo, hi)
            feats = method.model.decode(method.model.zero_fill(back, 536))
            features.append([f[0].float().numpy() for f in feats])
            ref.push(jde.forward_part2(feats, "backbone")[0], boxes[0])
    return ref, features


def test_lossless_advmsfc_stream_reproduces_the_in_process_pipeline(trained, small_jde, small_sequence):
    model, *_ = trained
    method = AdvMSFCMethod(load_checkpoint(model), keep=96)
    settings = EncodeSettings(split="backbone", codec="lossless", range_spec=RangeSpec("fixed", *method.checkpoint.code_range))
    data, report = encode_sequence(open_source(small_sequence), small_jde, method, settings, torch.device("cpu"))
    header, payload = bitstream.parse(data)
    assert header.method == "advmsfc" and header.coded_channels == [96] and header.fused_channels == (536,)
    assert header.model_id == method.model_id and report.header_bytes == header.header_size < 200  # one segment
    out = decode_stream(header, payload, len(data), small_jde, torch.device("cpu"), model_path=str(model),
                        keep_features=True)
    lo, hi = header.ranges[0]
    ref, features = _reference(small_jde, method, small_sequence, lo, hi)
    assert list(out.features) == ["layer_84", "layer_99", "layer_114"] and len(features) == report.frames > 0
    for i, got in enumerate(out.features.values()):  # bit-exact: lossless coding of the same quantised code
        want = np.stack([f[i] for f in features])
        assert got.shape == want.shape and (got == want).all()
    assert out.tracker.rows == ref.rows
    assert all((a == b).all() for a, b in zip(out.tracker.frame_detections, ref.frame_detections))


def test_encode_decode_with_qact(trained, small_sequence, small_cfg, tmp_path):
    model, *_ = trained
    out, tracks = tmp_path / "a.bin", tmp_path / "a.txt"
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    enc = run_cli("fcm-encode", small_sequence, "--split", "backbone", "--model", model, "--qp", "42",
                  "--preset", "faster", "-o", out, *common)
    assert enc.returncode == 0, enc.stderr
    header, _ = bitstream.parse(out.read_bytes())
    assert header.coded_channels == [96]  # QACT: QP 42 -> 96 channels for backbone
    assert header.layout.grids[0].channels == 96 and (header.coded_width, header.coded_height) == (80, 72)
    dec = run_cli("fcm-decode", out, "--model", model, "-o", tracks, "--gt", small_sequence, *common)
    assert dec.returncode == 0, dec.stderr
    assert tracks.exists() and "MOTA" in dec.stdout
    # --channels overrides the table
    enc2 = run_cli("fcm-encode", small_sequence, "--split", "backbone", "--model", model, "--qp", "42",
                   "--channels", "7", "--preset", "faster", "-o", tmp_path / "b.bin", *common)
    assert enc2.returncode == 0, enc2.stderr
    assert bitstream.parse((tmp_path / "b.bin").read_bytes())[0].coded_channels == [7]


def test_advmsfc_errors(trained, small_sequence, small_cfg, tmp_path):
    model, *_ = trained
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu", "-o", tmp_path / "x.bin"]
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--split", "backbone", *common), "needs --model")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--split", "alt1", "--model", model, *common),
                          "trained for split 'backbone', not 'alt1'")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--split", "backbone", "--model", model,
                                  "--channels", "600", *common), "must be within 1..536")
    other = tmp_path / "other_jde.pt"
    from fcm_common.model.jde import load_jde

    torch.save({"model": load_jde(None, seed=3, cfg=small_cfg).state_dict()}, other)
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--split", "backbone", "--model", model, "--weights",
                                  other, "--jde-cfg", small_cfg, "-o", tmp_path / "y.bin"), "trained against JDE weights")
    out = tmp_path / "ok.bin"
    assert run_in_process("fcm-encode", small_sequence, "--split", "backbone", "--model", model, "--preset", "faster",
                   "--weights", "random", "--jde-cfg", small_cfg, "-o", out).returncode == 0
    assert_one_line_error(run_in_process("fcm-decode", out, "--weights", "random", "--jde-cfg", small_cfg), "which is not bundled: pass --model PATH")
    assert not (tmp_path / "x.bin").exists()


def test_calibration_writes_a_usable_qact_table(trained, small_sequence, small_cfg, tmp_path):
    from fcm_common.msfc.qact import load_qact

    model, *_ = trained
    copy = tmp_path / "model.pt"
    copy.write_bytes(Path(model).read_bytes())
    out = tmp_path / "qact_cal.toml"
    result = run_cli("fcm-calibrate", small_sequence, "--split", "backbone", "--model", copy, "--weights", "random",
                     "--jde-cfg", small_cfg, "--qps", "32,42", "--channels", "16,64", "--preset", "faster",
                     "-o", out, "--record-in-model", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    table = load_qact("backbone", out)
    assert table.qps == (32, 42) and set(table.channels) <= {16, 64}
    # --record-in-model: the model file now carries the table, its weights and identifier unchanged
    recorded, original = load_checkpoint(copy), load_checkpoint(model)
    assert recorded.qact == table and recorded.model_id == original.model_id
    lines = out.with_suffix(".csv").read_text().splitlines()
    assert lines[0] == "qp,channels,kbps,mota,chosen" and len(lines) == 5
    # more channels cost more at the same QP
    rates = {(int(q), int(k)): float(r) for q, k, r, *_ in (line.split(",") for line in lines[1:])}
    assert rates[(32, 64)] > rates[(32, 16)] and rates[(42, 64)] > rates[(42, 16)]


def test_zero_steps_keeps_the_fitted_start_and_refuses_a_conv_code(tmp_path, small_sequence, small_cfg):
    """--steps 0 (how the bundled backbone model is made): the bundled JDE, the bundled backbone
    architecture (the detections code, issue 28) fitted on the frames (its embedding components are
    principal components), measured and saved; a conv architecture (random start) is refused."""
    common = [small_sequence, "--split", "backbone", "--batch-size", "2", "--stats-frames", "4", "--pca-frames", "8",
              "--device", "cpu", "--steps", "0"]
    model = tmp_path / "pca.pt"
    done = run_cli("fcm-train", *common, "-o", model)
    assert done.returncode == 0, done.stderr
    assert "0 steps" in done.stdout and "principal components" in done.stderr + done.stdout
    ckpt = load_checkpoint(model, split="backbone")
    assert ckpt.step == 0 and ckpt.model.arch.fusion == "detections" and ckpt.code_range[0] < ckpt.code_range[1]
    conv = tmp_path / "conv.toml"
    conv.write_text(TINY_ARCH)
    refused = run_cli("fcm-train", *common, "--weights", "random", "--jde-cfg", small_cfg, "--arch", conv,
                      "-o", tmp_path / "conv.pt")
    assert_one_line_error(refused, "--steps 0 keeps a linear code's PCA start")
    assert not (tmp_path / "conv.pt").exists()
