"""fcm-encode / fcm-decode as a user runs them."""

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli, run_in_process

from fcm_common.coding import bitstream
from fcm_common.data.mot_format import read_rows
from fcm_common.data.synthetic import write_video
from fcm_decoder.decoder import decode_stream


@pytest.fixture(scope="module")
def small_stream(tmp_path_factory, small_sequence, small_cfg):
    out = tmp_path_factory.mktemp("enc") / "syn.bin"
    result = run_cli("fcm-encode", small_sequence, "--method", "anchor", "--weights", "random", "--jde-cfg", small_cfg, "--split", "dn53",
                     "--codec", "lossless", "--range", "frame", "-o", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return out, result


def test_encode_prints_a_summary(small_stream):
    out, result = small_stream
    assert "fcm-encode SYN-02: anchor/dn53, lossless QP 32" in result.stdout
    for word in ("frames", "bytes", "kbps", "nn_part1", "encode"):
        assert word in result.stdout
    assert out.stat().st_size > 1000


def test_decode_writes_tracks_and_evaluates(small_stream, small_sequence, small_cfg, small_jde, tmp_path):
    out, _ = small_stream
    tracks, feats = tmp_path / "tracks.txt", tmp_path / "f.npz"
    result = run_cli("fcm-decode", out, "--weights", "random", "--jde-cfg", small_cfg, "-o", tracks,
                     "--gt", small_sequence, "--save-features", feats, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "MOTA" in result.stdout and "OVERALL" in result.stdout
    assert "SYN-02" in result.stdout.split("MOT metrics")[1]  # the row names the sequence, not the stream file
    rows = read_rows(tracks)
    assert rows and all(1 < r.frame <= 4 for r in rows)  # the random network tracks this sequence (conftest)
    data = out.read_bytes()  # the tracks of the library's decoder, written whole
    header, payload = bitstream.parse(data)
    reference = decode_stream(header, payload, len(data), small_jde, torch.device("cpu")).tracker.rows
    assert [(r.frame, r.track_id) for r in rows] == [(r.frame, r.track_id) for r in reference]
    with np.load(feats) as npz:
        assert sorted(npz.files) == ["layer_36", "layer_61", "layer_74"]
        assert npz["layer_36"].shape == (4, 256, 24, 40)


def test_decode_errors_are_one_line_and_leave_no_output(small_stream, small_cfg, tmp_path):
    """A stream with nothing decodable is one error line and no output; a stream damaged after some of
    its frames gives their tracks, a warning naming what was lost, and an error (status 1) at the end."""
    out, _ = small_stream
    data = out.read_bytes()
    tracks = tmp_path / "t.txt"
    args = ["--weights", "random", "--jde-cfg", small_cfg, "-o", tracks, "--device", "cpu"]
    assert_one_line_error(run_in_process("fcm-decode", tmp_path / "none.bin", *args), "bitstream not found")
    (tmp_path / "trunc.bin").write_bytes(data[:100])
    assert_one_line_error(run_in_process("fcm-decode", tmp_path / "trunc.bin", *args), "no segment")
    bad = bytearray(data)
    bad[20] ^= 0xFF  # inside the segment header: its CRC fails, the only segment is gone
    (tmp_path / "crc.bin").write_bytes(bytes(bad))
    assert_one_line_error(run_in_process("fcm-decode", tmp_path / "crc.bin", *args), "no segment")
    assert not tracks.exists() and list(tmp_path.glob(".t.txt*")) == []
    for name, damaged, warning in (("short.bin", data[:-10], "cut short"),
                                   ("end.bin", data[:-50] + bytes([data[-50] ^ 0xFF]) + data[-49:], "not verified")):
        (tmp_path / name).write_bytes(damaged)
        result = run_in_process("fcm-decode", tmp_path / name, *args)
        lines = [line for line in result.stderr.splitlines() if line.strip() and "random JDE" not in line]
        assert result.returncode == 1 and len(lines) == 2, result.stderr
        assert lines[0].startswith("warning:") and warning in lines[0], result.stderr
        assert lines[1].startswith("error: the stream was damaged or incomplete"), result.stderr
        assert tracks.exists()  # the frames that arrived were tracked
        tracks.unlink()
    assert_one_line_error(run_in_process("fcm-decode", out, "--weights", "random", "-o", tracks), "made for a 320x192 network input")
    assert not tracks.exists()


def test_encode_errors(small_sequence, small_cfg, tmp_path):
    out = tmp_path / "o.bin"
    base = ["--method", "anchor", "--weights", "random", "--jde-cfg", small_cfg, "-o", out, "--device", "cpu"]
    assert_one_line_error(run_in_process("fcm-encode", tmp_path / "none.mp4", *base), "input not found")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--split", "layer3", *base), "Invalid value for '--split'")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--bit-depth", "32", *base), "lossless codec")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--range", "2,1", *base), "is empty or not finite")
    assert_one_line_error(
        run_cli("fcm-encode", small_sequence, "--codec", "vtm", "--vtm-dir", tmp_path, *base, env={"PATH": "/usr/bin:/bin", "FCM_VTM_DIR": ""}),
        "EncoderApp not found",
    )
    assert not out.exists()


@pytest.mark.slow
def test_a_video_through_both_executables_at_full_size(tmp_path):
    # seed 1: the random 1088x608 JDE tracks its walkers (22 rows uncompressed; seed 0: none)
    video = write_video(tmp_path / "clip.mkv", num_frames=2, width=640, height=360, fps=25, seed=1)
    out, tracks = tmp_path / "clip.bin", tmp_path / "clip.txt"
    enc = run_cli("fcm-encode", video, "--method", "anchor", "--weights", "random", "--split", "backbone", "--codec", "vvenc",
                  "--preset", "faster", "--qp", "37", "-o", out, "--device", "cpu")
    assert enc.returncode == 0, enc.stderr
    assert "coded frame" in enc.stdout and "1088x6712" in enc.stdout
    dec = run_cli("fcm-decode", out, "--weights", "random", "-o", tracks, "--device", "cpu")
    assert dec.returncode == 0, dec.stderr
    assert read_rows(tracks), "the decoded features of the random network give tracks"
