"""Hostile use (issue 11): an output path that is an input is refused and the input survives; outputs
get the usual permissions; damaged or forged streams stop with one clean error before the network
sees bad samples; bad command lines and outputs that cannot be written are refused before the work.
Each test reproduces one reported failure."""

from __future__ import annotations

import os
import stat
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_in_process

from fcm_common.coding import bitstream
from fcm_common.core.atomic import check_writable, write_bytes_atomic
from fcm_common.core.errors import FcmError
from fcm_common.data.synthetic import write_video
from fcm_common.model.jde import load_jde
from fcm_decoder.decoder import decode_stream


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mkv", num_frames=2, width=160, height=96)


def test_track_and_encode_refuse_to_overwrite_their_input(clip, small_cfg):
    before = clip.read_bytes()
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    assert_one_line_error(run_in_process("fcm-track", clip, "-o", clip, *common), "is the input")
    assert_one_line_error(run_in_process("fcm-encode", clip, "--method", "anchor", "--split", "alt1", "-o", clip, *common),
                          "is the input")
    link = clip.parent / "link.mkv"
    link.symlink_to(clip)
    assert_one_line_error(run_in_process("fcm-track", clip, "-o", link, *common), "is the input")
    assert clip.read_bytes() == before


def test_decode_refuses_to_overwrite_its_stream(clip, small_cfg, tmp_path):
    stream = tmp_path / "s.bin"
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    enc = run_in_process("fcm-encode", clip, "--method", "anchor", "--split", "alt1", "--codec", "lossless", "-o", stream, *common)
    assert enc.returncode == 0, enc.stderr
    before = stream.read_bytes()
    assert_one_line_error(run_in_process("fcm-decode", stream, "-o", stream, *common), "is the input")
    assert_one_line_error(run_in_process("fcm-decode", stream, "--save-features", stream, *common), "is the input")
    assert stream.read_bytes() == before


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o644


# ------------------------------------------------------------------ damaged and forged streams
def _lossless_stream(small_jde, small_sequence):
    from fcm_common.coding.methods.anchor import AnchorMethod
    from fcm_common.coding.quantization import RangeSpec
    from fcm_common.data.sources import open_source
    from fcm_encoder.encoder import EncodeSettings, encode_sequence

    settings = EncodeSettings(split="alt1", qp=32, codec="lossless", range_spec=RangeSpec.parse("frame"))
    data, _ = encode_sequence(open_source(small_sequence, max_frames=2), small_jde, AnchorMethod(), settings, torch.device("cpu"))
    return data


def _forge_picture(stream: bytes, edit) -> bytes:
    """The stream with its (one) picture unit replaced by ``edit(records, payload)`` -> (records, payload),
    re-signed: a valid CRC, as a forger would make it."""
    from fcm_common.coding import segments

    units = segments.UnitReader().feed(stream)
    header = segments.parse_segment(next(u for u in units if u.kind == segments.SEGMENT).body)
    out = b""
    for u in units:
        if u.kind == segments.PICTURE:
            picture = segments.parse_picture(u.body, header)
            records, payload = edit(picture.records, picture.payload)
            out += segments.picture_unit(header, records, payload)
        elif u.kind == segments.SEGMENT_END:
            out += segments.inner_unit(u.kind, u.body)
        else:
            out += segments.unit(u.kind, u.body)
    return out


def _decode_forged(stream: bytes, small_cfg, tmp_path):
    path, tracks = tmp_path / "forged.bin", tmp_path / "t.txt"
    path.write_bytes(stream)
    result = run_in_process("fcm-decode", path, "--weights", "random", "--jde-cfg", small_cfg, "-o", tracks, "--device", "cpu")
    lines = [line for line in result.stderr.splitlines() if line.strip() and "random JDE" not in line]
    return result, lines, tracks


def test_lossless_samples_above_ten_bits_stop_before_the_network(small_jde, small_sequence, small_cfg, tmp_path):
    """The report: a lossless payload whose zlib stream still inflates, with samples up to 64001,
    reached the tracker as NaN features ('matrix contains invalid numeric entries')."""
    from fcm_common.coding.segments import FrameRecord  # noqa: F401 - records are passed through

    def edit(records, payload):
        samples = np.frombuffer(zlib.decompress(payload), dtype="<u2").copy()
        samples[5] = 64001
        return records, zlib.compress(samples.tobytes())

    stream = _forge_picture(_lossless_stream(small_jde, small_sequence), edit)
    forged_header, forged_payload = bitstream.parse(stream)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FcmError, match="frame 0 has sample value 64001, above the 10-bit maximum 1023"):
            decode_stream(forged_header, forged_payload, len(stream), small_jde, torch.device("cpu"))
    result, lines, tracks = _decode_forged(stream, small_cfg, tmp_path)
    assert result.returncode == 1 and "above the 10-bit maximum" in lines[0] and lines[-1].startswith("error: no frame")
    assert not tracks.exists()


@pytest.mark.parametrize("scale, message", [(1e30, "not finite"), (2.0, "reconstruction hash mismatch"),
                                            (None, "is empty or not finite")])
def test_a_re_signed_header_with_other_ranges_is_refused(small_jde, small_sequence, small_cfg, tmp_path, scale, message):
    """The report: a forged header (CRC re-signed) with a huge finite range gave RuntimeWarnings and a
    crash; with a moderate one, other tracks without a word. The ranges are inside each segment's
    reconstruction hash, and checked when read."""
    from fcm_common.coding.segments import FrameRecord

    def edit(records, payload):
        if scale is None:  # each end a float32, the width not
            return [FrameRecord(r.capture_time, (-3e38, 3e38)) for r in records], payload
        return [FrameRecord(r.capture_time, (r.range[0] * scale, r.range[1] * scale)) for r in records], payload

    result, lines, tracks = _decode_forged(_forge_picture(_lossless_stream(small_jde, small_sequence), edit),
                                           small_cfg, tmp_path)
    assert result.returncode == 1 and any(message in line for line in lines), result.stderr
    assert lines[-1].startswith("error:") and "Warning" not in result.stderr
    # tracks are released only when the frames decoded: with the moderate range they are, and the
    # mismatch makes the status 1
    assert tracks.exists() == (scale == 2.0)


# ------------------------------------------------------------------ bad command lines and inputs
def test_vvenc_qp_outside_its_range_is_refused_before_any_work(small_sequence, small_cfg, tmp_path):
    out = tmp_path / "o.bin"
    result = run_in_process("fcm-encode", small_sequence, "--qp", "-5", "--method", "anchor", "--split", "alt1",
                     "--weights", "random", "--jde-cfg", small_cfg, "-o", out, "--device", "cpu")
    assert_one_line_error(result, "vvenc: QP -5 is outside 0..63")
    assert len(result.stderr) < 200 and not out.exists()


def test_random_weights_identifier_does_not_depend_on_threads(small_cfg):
    """The report: a stream made with 2 threads was refused by a decoder running 1."""
    threads = torch.get_num_threads()
    try:
        ids = []
        for n in (1, 2):
            torch.set_num_threads(n)
            ids.append(load_jde(None, cfg=small_cfg).weights_id)
    finally:
        torch.set_num_threads(threads)
    assert ids[0] == ids[1]


@pytest.mark.parametrize("fps", ["nan", "inf", "0", "-25"])
def test_track_refuses_frame_rates_that_are_not_positive_numbers(small_sequence, small_cfg, tmp_path, fps):
    out = tmp_path / "t.txt"
    result = run_in_process("fcm-track", small_sequence, "--fps", fps, "--weights", "random", "--jde-cfg", small_cfg, "-o", out)
    assert_one_line_error(result, "--fps" if fps in ("0", "-25") else "frame rate must be a positive number")
    assert not out.exists()


def test_an_image_folder_with_two_frame_sizes_is_refused(small_cfg, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate([(96, 64), (96, 64), (128, 64)]):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    out = tmp_path / "t.txt"
    result = run_in_process("fcm-track", folder, "-o", out, *common)
    assert_one_line_error(result, "000002.png: the image is 128x64, the sequence's first is 96x64")
    stream = tmp_path / "s.bin"
    result = run_in_process("fcm-encode", folder, "--method", "anchor", "--split", "alt1", "--codec", "lossless",
                            "-o", stream, *common)
    assert_one_line_error(result, "000002.png: the image is 128x64, the sequence's first is 96x64")
    assert not out.exists() and not stream.exists()


@pytest.mark.slow
def test_outputs_that_cannot_be_written_are_refused_before_the_work(small_sequence, small_cfg, tmp_path):
    """The report: '-o' into a read-only folder gave 'unexpected PermissionError' after the work;
    a tracks file stayed behind when --save-features could not be written."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    common = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    assert_one_line_error(run_in_process("fcm-track", small_sequence, "-o", blocker / "t.txt", *common),
                          "is a file, not a folder")
    assert_one_line_error(run_in_process("fcm-track", small_sequence, "-o", tmp_path, *common), "it is a folder")
    stream = tmp_path / "s.bin"
    enc = run_in_process("fcm-encode", small_sequence, "--method", "anchor", "--split", "alt1", "--codec", "lossless",
                  "--frames", "2", "-o", stream, *common)
    assert enc.returncode == 0, enc.stderr
    tracks = tmp_path / "t.txt"
    assert_one_line_error(run_in_process("fcm-decode", stream, "-o", tracks, "--save-features", blocker / "f.npz", *common),
                          "is a file, not a folder")
    assert not tracks.exists()
    assert_one_line_error(run_in_process("fcm-decode", stream, "-o", tracks, "--save-features", tracks, *common), "same file")


def test_a_folder_without_write_permission_is_named(tmp_path, monkeypatch):
    """(Run as root, a read-only folder is writable: the permission answer is simulated.)"""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    with pytest.raises(FcmError, match=f"no permission to write in {tmp_path}"):
        check_writable(tmp_path / "sub" / "t.txt")
    check_writable(None, tmp_path.parent / "elsewhere.txt")


def test_bad_ground_truth_stops_track_before_it_writes(small_sequence, small_cfg, tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10\n")
    out = tmp_path / "t.txt"
    result = run_in_process("fcm-track", small_sequence, "--gt", gt, "--weights", "random", "--jde-cfg", small_cfg, "-o", out)
    assert_one_line_error(result, "4 comma-separated fields")
    assert not out.exists()
