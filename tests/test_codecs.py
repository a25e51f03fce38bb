import os
import queue
import threading

import numpy as np
import pytest

from fcm_common.coding.codecs import NO_WORKER_THREADS, CodecError, CodecParams, make_codec
from fcm_common.coding.codecs.vtm import chunk_plan, locate_vtm


def smooth_frames(n=6, h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(size=(h, w)), 0), 1)
    base = (base - base.min()) / (base.max() - base.min()) * 800 + 100
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)]).astype(np.uint16)


def round_trip(codec, frames, tmp_path, **params):
    n, h, w = frames.shape
    encoder = codec.open_encoder(w, h, CodecParams(**{"qp": 27, "fps": 30, "intra_period": 32, **params}), tmp_path)
    for frame in frames:
        encoder.write(frame)
    payload = encoder.finish()
    return payload, np.stack(list(codec.decode(payload, w, h, n, tmp_path, params.get("sample_bits", 10))))


def vvc_pixel_format(payload: bytes, tmp_path) -> str:
    """The decoded picture format a VVC payload announces (its SPS), as ffmpeg reads it: gray10le for
    4:0:0 10-bit, yuv420p10le for 4:2:0 10-bit. Read from the stream, not from what our decoder
    makes of it (which asks ffmpeg for gray10le whatever the stream holds)."""
    import re
    import subprocess

    from fcm_common.coding.codecs.vvenc import ffmpeg_exe

    path = tmp_path / "probe.266"
    path.write_bytes(payload)
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-f", "vvc", "-i", str(path)], capture_output=True,
                          text=True).stderr
    found = re.search(r"Video: vvc[^,]*, (\w+)", info)
    assert found, info
    return found.group(1)


def test_lossless_is_exact_for_levels_and_floats(tmp_path, rng):
    codec = make_codec("lossless")
    frames = smooth_frames()
    payload, out = round_trip(codec, frames, tmp_path)
    assert np.array_equal(out, frames) and len(payload) < frames.nbytes
    floats = rng.normal(size=(3, 16, 24)).astype(np.float32)
    _, out = round_trip(codec, floats, tmp_path, sample_bits=32)
    assert np.array_equal(out, floats) and out.dtype == np.float32


def test_lossless_rejects_damaged_payloads(tmp_path):
    codec = make_codec("lossless")
    frames = smooth_frames(3)
    payload, _ = round_trip(codec, frames, tmp_path)
    with pytest.raises(CodecError, match="truncated"):
        list(codec.decode(payload[:-4], 96, 64, 3, tmp_path))
    with pytest.raises(CodecError, match="more than the 2 frames"):
        list(codec.decode(payload, 96, 64, 2, tmp_path))
    with pytest.raises(CodecError, match="ends after 3 of 4 frames"):
        list(codec.decode(payload, 96, 64, 4, tmp_path))


def test_an_aborted_lossless_stream_decoder_ends_with_its_frames_waiting(tmp_path):
    """A segment lost while its decoded frames wait to be read (a damaged unit after a few pictures):
    the reader gets the frames decoded before the damage, then frames() ends, even with the queue full.
    (Abort once emptied the queue to make room for its end marker, and the zlib decoder's own _drain,
    which gives frames out, hid that one: the end marker did not fit and the reader waited for ever.)"""
    codec = make_codec("lossless")
    frames = smooth_frames(4)  # as many as the decoder's queue holds
    payload, _ = round_trip(codec, frames, tmp_path)
    decoder = codec.open_decoder(96, 64, 10, tmp_path)
    decoder.feed(payload)
    decoder.abort()
    got = []
    reader = threading.Thread(target=lambda: got.extend(decoder.frames()), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "frames() never ended after abort"
    assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(got, frames))


@pytest.mark.parametrize("gop", ["ld", "ra"])
def test_vvenc_codes_4_0_0_10_bit(tmp_path, gop):
    codec = make_codec("vvenc")
    frames = smooth_frames()
    payload, out = round_trip(codec, frames, tmp_path, preset="faster", gop=gop, intra_period=4)
    assert out.shape == frames.shape and out.dtype == np.uint16
    assert vvc_pixel_format(payload, tmp_path) == "gray10le"  # the stream itself is 4:0:0 10-bit
    err = np.abs(out.astype(int) - frames.astype(int))
    assert err.mean() < 12 and len(payload) < frames.nbytes / 20  # measured: about 7 and 1/57
    # a lower QP spends more bits and gets closer
    payload_hq, out_hq = round_trip(codec, frames, tmp_path, preset="faster", gop=gop, intra_period=4, qp=12)
    assert len(payload_hq) > len(payload)
    assert np.abs(out_hq.astype(int) - frames.astype(int)).mean() < err.mean()


def test_vvenc_without_worker_threads_codes_the_same_pictures_at_the_same_quality(tmp_path):
    """A paced encoder's setting (NO_WORKER_THREADS): libvvenc in ffmpeg's thread, no pool that spins
    while it waits. Its stream differs from a pool's by a few bytes, not in kind."""
    codec = make_codec("vvenc")
    frames = smooth_frames()
    encoder = codec.open_encoder(96, 64, CodecParams(qp=27, fps=30, threads=NO_WORKER_THREADS, gop="ll"), tmp_path)
    assert "Threads=0" in " ".join(encoder.cmd)
    encoder.abort()
    single, out_single = round_trip(codec, frames, tmp_path, preset="faster", gop="ll", threads=NO_WORKER_THREADS)
    pool, out_pool = round_trip(codec, frames, tmp_path, preset="faster", gop="ll", threads=2)
    assert out_single.shape == frames.shape
    err_single = np.abs(out_single.astype(int) - frames.astype(int)).mean()
    err_pool = np.abs(out_pool.astype(int) - frames.astype(int)).mean()
    assert abs(len(single) - len(pool)) < 0.05 * len(pool) and abs(err_single - err_pool) < 1


def test_vvc_stream_decoder_gives_a_picture_out_before_the_next_one_comes(tmp_path):
    """Live decoding: a picture is decoded when it arrives, not when the next one does (ffmpeg's frame
    threaded rawvideo output held each picture back by one frame interval until it had one thread)."""
    codec = make_codec("vvenc")
    frames = smooth_frames(3)
    encoder = codec.open_encoder(96, 64, CodecParams(qp=27, fps=30, gop="ll", preset="faster"), tmp_path)
    for frame in frames:
        encoder.write(frame)
    encoder.close()
    pictures = [data for data, _ in encoder.pictures()]
    decoder = codec.open_decoder(96, 64, 10, tmp_path)
    got: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(f) for f in decoder.frames()], daemon=True)
    reader.start()
    try:
        for index, picture in enumerate(pictures):
            decoder.feed(picture)
            frame = got.get(timeout=30)  # no next picture fed yet
            expected = np.stack(list(codec.decode(b"".join(pictures), 96, 64, 3, tmp_path)))[index]
            assert np.array_equal(frame, expected)
        decoder.end(3)
        reader.join(timeout=30)
    finally:
        decoder.abort()


def test_a_picture_too_large_for_ffmpeg_s_libvvenc_is_explained(tmp_path):
    """ffmpeg's libvvenc gives out at most width x height bytes per picture: noise at a low QP on a
    small frame needs more (measured: a 72x80 noise picture at QP 2 about 7.7 kB, above 5,760; at
    QP 7 about 6.4 kB)."""
    codec = make_codec("vvenc")
    noise = np.random.default_rng(0).integers(200, 800, size=(2, 80, 72)).astype(np.uint16)
    encoder = codec.open_encoder(72, 80, CodecParams(qp=2, fps=10), tmp_path)
    with pytest.raises(CodecError, match="larger than 72x80 bytes.*use a higher QP"):
        for frame in noise:
            encoder.write(frame)
        encoder.finish()
    # the same noise in a frame twice as large (the rest flat) fits
    taller = np.full((2, 160, 72), 512, dtype=np.uint16)
    taller[:, :80] = noise
    assert round_trip(codec, taller, tmp_path, qp=2, preset="medium")[1].shape == taller.shape


def test_vvenc_errors_name_the_command(tmp_path):
    codec = make_codec("vvenc")
    with pytest.raises(CodecError, match="not a positive multiple of 8"):
        codec.open_encoder(100, 64, CodecParams(qp=30, fps=30), tmp_path)
    with pytest.raises(CodecError, match="float32 samples need the lossless codec"):
        codec.open_encoder(96, 64, CodecParams(qp=30, fps=30, sample_bits=32), tmp_path)
    with pytest.raises(CodecError, match="vvenc decoding failed .* -- last output"):
        list(codec.decode(b"\x00\x00\x01garbage" * 10, 96, 64, 2, tmp_path))
    frames = smooth_frames(2)
    payload, _ = round_trip(codec, frames, tmp_path, preset="faster")
    with pytest.raises(CodecError, match="decoded to 2 frames, the header says 3"):
        list(codec.decode(payload, 96, 64, 3, tmp_path))


def vvenc_params(encoder) -> dict[str, str]:
    """The -vvenc-params of an encoder's ffmpeg command line, as a dict."""
    text = encoder.cmd[encoder.cmd.index("-vvenc-params") + 1]
    return dict(item.split("=", 1) for item in text.split(":"))


@pytest.mark.parametrize("gop", ["ld", "ra"])
def test_vvenc_presets_code_features_like_vtm(tmp_path, gop):
    """fcm's presets turn VVenC's input pre-filter and its QP map off, explicit MTS and SBT on and,
    in low delay, use VTM's four reference pictures; the vvenc-* presets are VVenC's own, untouched."""
    codec = make_codec("vvenc")
    ours = codec.open_encoder(96, 64, CodecParams(qp=30, fps=30, preset="slow", gop=gop), tmp_path)
    theirs = codec.open_encoder(96, 64, CodecParams(qp=30, fps=30, preset="vvenc-slow", gop=gop), tmp_path)
    try:
        for encoder in (ours, theirs):
            assert encoder.cmd[encoder.cmd.index("-preset") + 1] == "slow"
        mine, vvenc_own = vvenc_params(ours), vvenc_params(theirs)
        added = {"MCTF": "0", "BIM": "0", "MTS": "1", "SBT": "2", **({"NumRefPics": "4"} if gop == "ld" else {})}
        assert {k: mine[k] for k in mine.keys() - vvenc_own.keys()} == added
        assert {k: v for k, v in mine.items() if k not in added} == vvenc_own
        # both kinds encode one picture at a time: ffmpeg lost pictures of frame-parallel encoding
        assert mine["MaxParallelFrames"] == vvenc_own["MaxParallelFrames"] == "0"
    finally:
        ours.abort()
        theirs.abort()
    with pytest.raises(CodecError, match="unknown preset 'vvenc-fastest'"):
        codec.open_encoder(96, 64, CodecParams(qp=30, fps=30, preset="vvenc-fastest"), tmp_path)


def test_vvenc_presets_decode_and_differ(tmp_path):
    """Both kinds of preset make valid streams of the frames; the settings change the stream."""
    codec = make_codec("vvenc")
    frames = smooth_frames(9)
    ours, out = round_trip(codec, frames, tmp_path, preset="faster")
    theirs, out_theirs = round_trip(codec, frames, tmp_path, preset="vvenc-faster")
    assert ours != theirs
    for decoded in (out, out_theirs):
        assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 12


def test_vvenc_empty_stream_is_an_error(tmp_path, monkeypatch):
    """An encoder that exits 0 without a single packet (libvvenc through ffmpeg did, with frame-parallel
    encoding on short sequences) must not become an empty payload and a confusing decoder error later."""
    import fcm_common.coding.codecs.vvenc as vvenc_module

    fake = tmp_path / "ffmpeg"
    fake.write_text('#!/bin/sh\ncat > /dev/null\nexit 0\n')  # reads every frame, gives out no picture
    fake.chmod(0o755)
    monkeypatch.setattr(vvenc_module, "ffmpeg_exe", lambda: str(fake))
    codec = make_codec("vvenc")
    encoder = codec.open_encoder(96, 64, CodecParams(qp=30, fps=30, preset="faster"), tmp_path)
    for frame in smooth_frames(3):
        encoder.write(frame)
    with pytest.raises(CodecError, match="empty stream although ffmpeg reported success"):
        encoder.finish()


def test_vtm_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("FCM_VTM_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CodecError, match="EncoderApp not found .* tools/vtm_build.sh"):
        make_codec("vtm", vtm_dir=tmp_path)


def test_vtm_chunk_plan_overlaps_by_one_frame():
    assert chunk_plan(100, 32) == [(0, 33), (32, 33), (64, 33), (96, 4)]
    assert chunk_plan(64, 64) == [(0, 64)]
    assert chunk_plan(65, 64) == [(0, 65)]
    assert chunk_plan(66, 64) == [(0, 65), (64, 2)]


def _vtm_dir():
    try:
        tools = locate_vtm(os.environ.get("FCM_VTM_DIR"))
    except CodecError as exc:
        pytest.skip(f"VTM not available: {exc}")
    return tools


@pytest.mark.slow
def test_vtm_round_trip_and_vvenc_streams_decode_with_vtm(tmp_path):
    tools = _vtm_dir()
    vtm = make_codec("vtm", vtm_dir=tools.encoder.parent)
    frames = smooth_frames(4, 64, 96)
    payload, out = round_trip(vtm, frames, tmp_path, intra_period=16)
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 12  # measured: about 7
    # VVenC streams are real VVC: VTM's DecoderApp gives the same pixels as ffmpeg's decoder
    vv_payload, vv_out = round_trip(make_codec("vvenc"), frames, tmp_path, preset="faster")
    assert np.array_equal(np.stack(list(vtm.decode(vv_payload, 96, 64, 4, tmp_path))), vv_out)
    # and VTM streams decode identically with ffmpeg's decoder
    assert np.array_equal(np.stack(list(make_codec("vvenc").decode(payload, 96, 64, 4, tmp_path))), out)


@pytest.mark.slow
def test_vtm_parallel_chunks_join_into_one_stream(tmp_path):
    tools = _vtm_dir()
    if tools.parcat is None:
        pytest.skip("VTM's parcat not available")
    vtm = make_codec("vtm", vtm_dir=tools.encoder.parent, vtm_jobs=2)
    frames = smooth_frames(20, 64, 96)
    encoder = vtm.open_encoder(96, 64, CodecParams(qp=30, fps=30, intra_period=16), tmp_path)
    for f in frames:
        encoder.write(f)
    payload = encoder.finish()
    assert encoder.chunked
    out = np.stack(list(vtm.decode(payload, 96, 64, 20, tmp_path)))
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 15


def test_vtm_intra_period_rules(tmp_path):
    tools = _vtm_dir()
    vtm = make_codec("vtm", vtm_dir=tools.encoder.parent)
    with pytest.raises(CodecError, match="multiple of 8 and at least 16"):
        vtm.open_encoder(96, 64, CodecParams(qp=30, fps=30, intra_period=8), tmp_path)
    with pytest.raises(CodecError, match="multiple of 32"):
        vtm.open_encoder(96, 64, CodecParams(qp=30, fps=30, intra_period=48, gop="ra"), tmp_path)


def test_vtm_build_never_deletes_a_folder_it_did_not_make(tmp_path):
    """tools/vtm_build.sh removes a failed clone; a folder that was there before is refused and kept."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "vtm_build.sh"
    mine = tmp_path / "VTM-12.0"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    proc = subprocess.run(["bash", str(script), "--prefix", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {mine} exists and is not a VTM source tree: move it away or pass another --prefix"]
    assert (mine / "notes.txt").read_text() == "keep"
