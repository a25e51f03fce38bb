"""Hostile use: an output path that is an input is refused and the input survives; outputs get the
usual permissions."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import assert_one_line_error, run_cli

from fcm_common.core.atomic import write_bytes_atomic
from fcm_common.data.synthetic import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mkv", num_frames=2, width=160, height=96)


def test_track_and_encode_refuse_to_overwrite_their_input(clip, small_cfg):
    before = clip.read_bytes()
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    assert_one_line_error(run_cli("fcm-track", clip, "-o", clip, *common), "is the input")
    assert_one_line_error(run_cli("fcm-encode", clip, "--method", "anchor", "--split", "alt1", "-o", clip, *common),
                          "is the input")
    link = clip.parent / "link.mkv"
    link.symlink_to(clip)
    assert_one_line_error(run_cli("fcm-track", clip, "-o", link, *common), "is the input")
    assert clip.read_bytes() == before


def test_decode_refuses_to_overwrite_its_stream(clip, small_cfg, tmp_path):
    stream = tmp_path / "s.bin"
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    enc = run_cli("fcm-encode", clip, "--method", "anchor", "--split", "alt1", "--codec", "lossless", "-o", stream, *common)
    assert enc.returncode == 0, enc.stderr
    before = stream.read_bytes()
    assert_one_line_error(run_cli("fcm-decode", stream, "-o", stream, *common), "is the input")
    assert_one_line_error(run_cli("fcm-decode", stream, "--save-features", stream, *common), "is the input")
    assert stream.read_bytes() == before


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o644
