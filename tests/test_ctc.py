"""Common-test-condition runs: dataset definitions, the whole loop on a local Dask cluster, resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli, run_in_process

from fcm_common.coding import bitstream
from fcm_common.data.mot_format import read_rows
from fcm_common.data.synthetic import write_mot_sequence
from fcm_common.evaluation.mot_metrics import accumulate, summarize
from fcm_ctc.config import CTCConfigError, load_dataset


def test_builtin_datasets_follow_the_framework():
    tvd = load_dataset("tvd")
    assert (tvd.eval_mode, tvd.intra_period, tvd.anchor_split, tvd.anchor_range) == ("tvd", 64, "dn53", "tvd")
    assert [(s.name, s.frames, s.fps, s.width) for s in tvd.sequences] == [
        ("TVD-01", 3000, 50, 1920), ("TVD-02", 636, 50, 1920), ("TVD-03", 2334, 50, 1920)]
    assert tvd.classes == {"TVD": ["TVD-01", "TVD-02", "TVD-03"]}
    assert tvd.qps("anchor", "dn53", "TVD-02") == [25, 30, 35, 37]
    assert tvd.qps("advmsfc", "backbone", "TVD-01") == [22, 27, 32, 37, 42, 47]
    hieve = load_dataset("hieve")
    assert (hieve.eval_mode, hieve.intra_period, hieve.anchor_split) == ("hieve", 32, "alt1")
    assert hieve.classes == {"HIEVE-1080P": ["HiEve-13", "HiEve-16"], "HIEVE-720P": ["HiEve-2", "HiEve-17", "HiEve-18"]}
    assert {s.name: s.frames for s in hieve.sequences} == {
        "HiEve-13": 1416, "HiEve-16": 700, "HiEve-2": 4819, "HiEve-17": 966, "HiEve-18": 1614}
    assert all(s.fps == 30 for s in hieve.sequences)
    with pytest.raises(CTCConfigError, match="not found"):
        load_dataset("/nonexistent.toml")


DATASET = """
name = "tiny"
eval_mode = "tvd"
intra_period = 16
anchor_split = "dn53"
anchor_range = "frame"
[[sequences]]
name = "A1"
folder = "syn/A1"
class = "A"
frames = 3
fps = 30
width = 320
height = 180
[[sequences]]
name = "A2"
folder = "syn/A2"
class = "A"
frames = 3
fps = 25
width = 320
height = 180
[rate_points]
anchor = [30, 40]
"""


@pytest.fixture()
def tiny(tmp_path):
    for i, (name, fps) in enumerate([("A1", 30), ("A2", 25)]):
        write_mot_sequence(tmp_path / "data" / "syn" / name, num_frames=3, width=320, height=180, fps=fps, seed=30 + i, name=name)
    (tmp_path / "tiny.toml").write_text(DATASET)
    return tmp_path


def _args(tiny, small_cfg):
    return ["run", "--dataset", tiny / "tiny.toml", "--data", tiny / "data", "--method", "anchor", "--codec", "vvenc",
            "--preset", "faster", "--weights", "random", "--jde-cfg", small_cfg, "--output", tiny / "runs",
            "--workers", "1", "--device", "cpu"]


@pytest.mark.slow
def test_whole_loop_with_an_interrupted_run_and_a_resume(tiny, small_cfg):
    run_dir = tiny / "runs" / "tiny_anchor_dn53_vvenc"
    script = Path(sys.executable).parent / "fcm-ctc"
    # a SIGKILL leaves the killed processes' temporary folders behind (nothing can remove them): in tiny/tmp,
    # not in the machine's /tmp
    (tiny / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen([str(script), *map(str, _args(tiny, small_cfg))], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tiny / "tmp")})
    deadline = time.time() + 300
    while time.time() < deadline and not list(run_dir.glob("*/qp*/result.json")):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # interrupt the run (and its Dask workers) the hard way
    proc.communicate()
    first = sorted(run_dir.glob("*/qp*/result.json"))
    assert 1 <= len(first) <= 4
    stamps = {p: p.stat().st_mtime_ns for p in first}

    result = run_cli("fcm-ctc", *_args(tiny, small_cfg))
    assert result.returncode == 0, result.stderr
    assert f"{len(first)} of 4 pairs already finished" in result.stderr
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first)  # finished pairs were not redone
    with open(run_dir / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["sequence"], int(r["qp"])) for r in rows] == [("A1", 30), ("A1", 40), ("A2", 30), ("A2", 40)]
    for r in rows:
        assert float(r["kbps"]) == pytest.approx(int(r["bytes"]) * 8 * float(r["fps"]) / 1000 / 3, rel=1e-5)
        for col in ("MOTA", "IDF1", "MOTP", "FP", "FN", "IDs", "nn_part1_s", "encode_s", "decode_s", "nn_part2_s"):
            assert r[col] != ""
    # class points: MOTA pooled over the class's sequences, kbps weighted by duration
    with open(run_dir / "classes.csv") as fh:
        classes = list(csv.DictReader(fh))
    assert [(c["class"], int(c["rate_index"])) for c in classes] == [("A", 0), ("A", 1)]
    for c, qp in zip(classes, (30, 40)):
        pair = [r for r in rows if int(r["qp"]) == qp]
        bits = sum(int(r["bytes"]) * 8 for r in pair)
        seconds = sum(int(r["frames"]) / float(r["fps"]) for r in pair)
        assert float(c["kbps"]) == pytest.approx(bits / seconds / 1000, rel=1e-5)
        accs = [accumulate(tiny / "data" / "syn" / s / "gt" / "gt.txt", read_rows(run_dir / s / f"qp{qp}" / "tracks.txt"),
                           "tvd", tiny / "data" / "syn" / s / "seqinfo.ini") for s in ("A1", "A2")]
        assert float(c["MOTA"]) == pytest.approx(100 * summarize(accs, ["A1", "A2"]).loc["OVERALL", "MOTA"], abs=1e-5)
    with open(run_dir / "final_TINY.csv") as fh:
        framework = list(csv.reader(fh))
    assert framework[0] == ["", "Dataset", "qp", "bitrate (kbps)", "framework bitrate (kbps)", "end_accuracy", "nn_part_1",
                            "encode", "decode", "nn_part_2"]
    # anchor points also carry the rate the MPEG framework counts: the same payload, its 13 + 8N-byte header
    for r in rows:
        _, payload = bitstream.parse((run_dir / r["sequence"] / f"qp{r['qp']}" / "stream.bin").read_bytes())
        framework_bytes = len(payload) + 13 + 8 * int(r["frames"])
        assert float(r["framework_kbps"]) == pytest.approx(framework_bytes * 8 * float(r["fps"]) / 1000 / int(r["frames"]), rel=1e-5)
    assert [row[1] for row in framework[1:]] == ["A1", "A1", "A2", "A2", "A", "A"]
    with open(run_dir / "summary.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert (run_dir / "A1" / "qp30" / "stream.bin").is_file()
    # the report can be rebuilt; other settings in the same folder are refused
    assert run_cli("fcm-ctc", "report", run_dir).returncode == 0
    assert_one_line_error(run_cli("fcm-ctc", *_args(tiny, small_cfg), "--preset", "medium"), "holds a run with other settings")


@pytest.mark.slow
def test_a_failing_pair_is_reported_and_the_rest_continue(tiny, small_cfg):
    (tiny / "data" / "syn" / "A2" / "img1" / "000002.png").write_bytes(b"broken")
    result = run_cli("fcm-ctc", *_args(tiny, small_cfg), "--qps", "35")
    assert result.returncode != 0
    assert "failed: A2 QP 35" in result.stderr and "cannot read image" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 pairs have no result")
    run_dir = tiny / "runs" / "tiny_anchor_dn53_vvenc"
    assert (run_dir / "A1" / "qp35" / "result.json").is_file()
    assert "cannot read image" in (run_dir / "A2" / "qp35" / "error.txt").read_text()
    assert json.loads((run_dir / "A1" / "qp35" / "result.json").read_text())["status"] == "ok"


def test_bad_runs_are_one_line_errors(tiny, small_cfg, tmp_path):
    assert_one_line_error(run_in_process("fcm-ctc", "run", "--dataset", "nope", "--data", tiny, "--weights", "random"), "dataset definition not found")
    assert_one_line_error(run_in_process("fcm-ctc", "run", "--dataset", tiny / "tiny.toml", "--data", tmp_path / "x", "--weights", "random",
                                  "--method", "anchor"), "data folder not found")
    assert_one_line_error(run_in_process("fcm-ctc", "run", "--dataset", "tvd", "--data", tiny / "data", "--weights", "random",
                                  "--method", "anchor"), "TVD-01")
    assert_one_line_error(run_in_process("fcm-ctc", "run", "--dataset", tiny / "tiny.toml", "--data", tiny / "data",
                                  "--weights", "random"), "needs --model")
