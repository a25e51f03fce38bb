import pytest
import torch
from conftest import assert_one_line_error, run_cli, run_in_process

from fcm_common.data.mot_format import read_rows
from fcm_common.data.sources import open_source
from fcm_common.data.synthetic import write_mot_sequence
from fcm_common.tracking.sequence import track_source


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return write_mot_sequence(tmp_path_factory.mktemp("seq") / "SYN-01", num_frames=3, width=320, height=180)


@pytest.mark.slow
def test_track_and_evaluate_a_sequence(small_sequence, small_cfg, small_jde, tmp_path):
    """The random 320x192 JDE on the sequence it tracks (conftest.small_sequence): the command writes the
    tracks of the in-process run, and fcm-eval scores them."""
    out = tmp_path / "tracks.txt"
    result = run_cli("fcm-track", small_sequence, "--weights", "random", "--jde-cfg", small_cfg, "-o", out,
                     "--frames", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "random JDE weights" in result.stderr
    assert f"fcm-track {small_sequence.name}" in result.stdout and "MOTA" in result.stdout
    rows = read_rows(out)
    assert rows, "the random network tracks this sequence"
    assert all(1 < r.frame <= 3 for r in rows)  # nothing on frame 1: tracks are confirmed on frame 2
    reference = track_source(small_jde, open_source(small_sequence, max_frames=3), torch.device("cpu")).rows
    assert [(r.frame, r.track_id) for r in rows] == [(r.frame, r.track_id) for r in reference]
    assert [r.x for r in rows] == pytest.approx([r.x for r in reference], abs=0.01)
    ev = run_cli("fcm-eval", small_sequence, out)
    assert ev.returncode == 0, ev.stderr
    assert "OVERALL" in ev.stdout


def test_errors_are_one_line(sequence, tmp_path):
    assert_one_line_error(run_in_process("fcm-track", tmp_path / "nope.mp4", "--weights", "random"), "input not found")
    assert_one_line_error(run_in_process("fcm-track", sequence, "--jde-cfg", tmp_path / "x.cfg"), "--jde-cfg goes with --weights")
    bad = tmp_path / "bad.pt"
    bad.write_text("junk")
    out = tmp_path / "t.txt"
    assert_one_line_error(run_in_process("fcm-track", sequence, "--weights", bad, "-o", out), "cannot read")
    assert not out.exists()
    assert_one_line_error(run_in_process("fcm-track", sequence, "--bogus"), "No such option")
    assert_one_line_error(run_in_process("fcm-track", sequence, "--weights", "random", "--device", "gpu"), "Invalid value")
    assert_one_line_error(run_in_process("fcm-eval", sequence), "give GT and TRACKS in pairs")
    assert_one_line_error(run_in_process("fcm-eval", sequence, tmp_path / "missing.txt"), "file not found")
