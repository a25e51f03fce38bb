"""Every way a command can stop (an error, Ctrl-C, SIGTERM) leaves no temporary folder, no partial
output and one ``error:`` line (issue 21: ``fcm-enc-*`` folders were left in /tmp by killed runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ENTRY_POINTS, assert_one_line_error, run_in_process

from fcm_common.data.synthetic import write_mot_sequence


@pytest.fixture(scope="module")
def long_sequence(tmp_path_factory):
    """Long enough that a signal sent while the encoder works finds it working."""
    return write_mot_sequence(tmp_path_factory.mktemp("seq") / "SYN-LONG", num_frames=120, width=320, height=180,
                              seed=5)


def _start(name: str, args: list, tmpdir) -> subprocess.Popen:
    script = os.path.join(os.path.dirname(sys.executable), name)
    cmd = [script] if os.path.exists(script) else [sys.executable, "-c", f"from {ENTRY_POINTS[name]} import main; main()"]
    env = {k: v for k, v in os.environ.items() if k != "FCM_JDE_WEIGHTS"}
    env["TMPDIR"] = str(tmpdir)  # the command's temporary folders go here, where the test can see them
    # a background job (`make test &`) inherits SIGINT ignored, and Python then leaves it ignored: give the
    # command the default disposition, as a terminal's foreground job has
    return subprocess.Popen(cmd + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_workdir(proc: subprocess.Popen, tmpdir, prefix: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.startswith(prefix) for p in tmpdir.iterdir()):
            time.sleep(0.5)  # well inside the work: NN part 1 and the codec process are running
            return
        if proc.poll() is not None:
            pytest.fail(f"the command ended before it made its {prefix}* folder: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {prefix}* folder appeared within {timeout} s")


def _encode_args(seq, small_cfg, out):
    return [seq, "--method", "anchor", "--split", "alt1", "--weights", "random", "--jde-cfg", small_cfg,
            "--codec", "vvenc", "--preset", "faster", "--range", "frame", "-o", out, "--device", "cpu"]


@pytest.mark.parametrize("sig, status, message", [
    (signal.SIGTERM, 143, "error: terminated (SIGTERM)"),
    pytest.param(signal.SIGINT, 130, "error: interrupted", marks=pytest.mark.slow),
])
def test_a_signalled_encoder_removes_its_temporary_folder(long_sequence, small_cfg, tmp_path, sig, status, message):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "out" / "x.bin"
    # paced at 30 fps (4 s for 120 frames): on a loaded machine an unpaced encoder could end before the signal
    proc = _start("fcm-encode", [*_encode_args(long_sequence, small_cfg, out), "--realtime"], tmpdir)
    _wait_for_workdir(proc, tmpdir, "fcm-enc-")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert [line for line in stderr.splitlines() if not line.startswith("warning:")] == [message], stderr  # one line: no blank line before it, no traceback
    assert list(tmpdir.iterdir()) == []  # the fcm-enc-* folder is gone, and no ffmpeg is left writing into it
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))


@pytest.mark.slow
def test_a_signalled_decoder_removes_its_temporary_folder(long_sequence, small_cfg, tmp_path):
    stream = tmp_path / "x.bin"
    enc = _start("fcm-encode", _encode_args(long_sequence, small_cfg, stream), tmp_path)
    assert enc.wait(timeout=600) == 0, enc.stderr.read()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tracks = tmp_path / "tracks.txt"
    proc = _start("fcm-decode", [stream, "--weights", "random", "--jde-cfg", small_cfg, "-o", tracks, "--device", "cpu"],
                  tmpdir)
    _wait_for_workdir(proc, tmpdir, "fcm-dec-", timeout=60)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert [line for line in stderr.splitlines() if not line.startswith("warning:")] == ["error: terminated (SIGTERM)"], stderr
    assert list(tmpdir.iterdir()) == []
    assert not tracks.exists() and not list(tmp_path.glob(".tracks.txt*"))


def test_ctrl_c_is_one_line_without_a_blank_line_before_it(monkeypatch, tmp_path):
    import fcm_common.cli.evaluate as evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "read_rows", interrupted)
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,50,100,1,1,1\n")
    result = run_in_process("fcm-eval", gt, gt)
    assert result.returncode == 130
    assert result.stderr == "error: interrupted\n"
    assert_one_line_error(result, "interrupted")
