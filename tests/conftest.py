"""Shared fixtures: one random-weight JDE per test session (building it takes seconds on a CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcm_common.model.jde import load_jde


@pytest.fixture(scope="session")
def jde():
    torch.manual_seed(0)
    return load_jde(None)


@pytest.fixture(scope="session")
def full_input():
    """One 1088x608 network input (letterboxed synthetic frame)."""
    from fcm_common.data.synthetic import render_sequence
    from fcm_common.model.preprocess import preprocess

    frames, _ = render_sequence(num_frames=1, width=1280, height=720, seed=3)
    x, _ = preprocess(frames[0])
    return x[None]


@pytest.fixture(scope="session")
def full_output(jde, full_input):
    with torch.inference_mode():
        return jde(full_input)


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


ENTRY_POINTS = {
    "fcm-track": "fcm_common.cli.track",
    "fcm-eval": "fcm_common.cli.evaluate",
    "fcm-encode": "fcm_encoder.cli",
    "fcm-decode": "fcm_decoder.cli",
    "fcm-train": "fcm_common.cli.train",
    "fcm-calibrate": "fcm_ctc.cli_calibrate",
    "fcm-ctc": "fcm_ctc.cli",
    "fcm-bdrate": "fcm_common.cli.bdrate",
}


def run_cli(name: str, *args, cwd=None, env=None, timeout=600):
    """Run an installed console script (or its module when the script is not on disk)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / name
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", f"from {ENTRY_POINTS[name]} import main; main()"]
    full_env = {k: v for k, v in os.environ.items() if k != "FCM_JDE_WEIGHTS"}
    full_env.update(env or {})
    return subprocess.run(
        cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout
    )


def run_in_process(name: str, *args):
    """Run a command's entry point in this process, as its console script would (exit status, stdout,
    stderr): for checks of what a command prints or refuses, without the seconds an interpreter
    start-up and a torch import cost per call. Use :func:`run_cli` where the process matters."""
    import contextlib
    import importlib
    import io
    import subprocess

    command = importlib.import_module(ENTRY_POINTS[name]).main
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            command.main([str(a) for a in args], prog_name=name)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess([name, *map(str, args)], code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, fragment: str):
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


SMALL_INPUT = (320, 192)  # a multiple of 32: the same network and weights, ten times faster


@pytest.fixture(scope="session")
def small_cfg(tmp_path_factory):
    """JDE's cfg with a 320x192 input: tests of whole pipelines run it instead of 1088x608."""
    from fcm_common.core.resources import DEFAULT_JDE_CFG, cfg_file

    text = cfg_file(DEFAULT_JDE_CFG).read_text()
    text = text.replace("width=1088", f"width={SMALL_INPUT[0]}").replace("height=608", f"height={SMALL_INPUT[1]}")
    path = tmp_path_factory.mktemp("cfg") / "jde_320x192.cfg"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def small_jde(small_cfg):
    return load_jde(None, cfg=small_cfg)


# the synthetic sequence whose walkers the random 320x192 JDE (small_jde) tracks: two tracks on frames
# 2..4 (seed 14; on most seeds it detects boxes that the tracker filters out, and tests that compare
# tracks compare nothing). Tests that compare rows assert that there are some.
SMALL_SEQUENCE_SEED = 14


@pytest.fixture(scope="session")
def small_sequence(tmp_path_factory):
    from fcm_common.data.synthetic import write_mot_sequence

    return write_mot_sequence(tmp_path_factory.mktemp("seq") / "SYN-02", num_frames=4, width=320, height=180,
                              seed=SMALL_SEQUENCE_SEED)
