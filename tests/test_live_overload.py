"""A live encoder that falls behind its source (issue 29): whole frames skipped before NN part 1 so that
the latency stays bounded, skipped frames keeping their numbers through the stream to the tracks;
files never skip; the threads a command picks; NN part 1 on onnxruntime.

Cheap: the first frames of the shipped sample with the bundled JDE, the anchor coded losslessly, and
an encoder made slower than its source by a part 1 that sleeps (no timing is asserted beyond "slower
than the source").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_in_process

from fcm_common.coding import bitstream, segments
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import RangeSpec
from fcm_common.core.threads import LIVE_MAX_THREADS, choose_threads, torch_threads
from fcm_common.data.sources import _Pace, open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.model.onnx_part1 import part1_runner
from fcm_common.model.preprocess import network_inputs
from fcm_common.tracking.detections import Detections
from fcm_common.streaming.transport import BytesSink
from fcm_common.tracking.sequence import SequenceTracker
from fcm_common.tracking.tracker import TrackState
from fcm_decoder.stream_decoder import decode_units
from fcm_encoder.encoder import EncodeSettings, encode_stream
from fcm_encoder.live import SkipPolicy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"
CPU = torch.device("cpu")
FRAMES = 12


@pytest.fixture(scope="module")
def bundled():
    return load_network(choose_network(None), CPU)


class _Slow:
    """The network with a part 1 that takes at least ``seconds`` (an encoder slower than its source)."""

    def __init__(self, model, seconds: float):
        self._model, self._seconds = model, seconds

    def __getattr__(self, name):
        return getattr(self._model, name)

    def forward_part1(self, x, split):
        time.sleep(self._seconds)
        return self._model.forward_part1(x, split)


def _settings(**kw) -> EncodeSettings:
    return EncodeSettings(split="backbone", codec="lossless", intra_period=4, range_spec=RangeSpec.parse("frame"), **kw)


def _encode(model, realtime: bool, fps: float | None = None, frames: int = FRAMES, **kw):
    source = open_source(SAMPLE, max_frames=frames, fps=fps)
    source.realtime = realtime
    sink = BytesSink()
    statuses = []
    report = encode_stream(source, model, AnchorMethod(), _settings(**kw), CPU, sink,
                           on_status=lambda live: statuses.append((live.taken, live.skipped)))
    return sink.getvalue(), report, statuses


def _coded_numbers(stream: bytes) -> list[int]:
    """1-based source numbers of the coded frames, as the stream says them."""
    numbers, header, position = [], None, 0
    for unit in segments.UnitReader().feed(stream):
        if unit.kind == segments.SEGMENT:
            header = segments.parse_segment(unit.body)
            position = header.first_frame
        elif unit.kind == segments.PICTURE:
            for record in segments.parse_picture(unit.body, header).records:
                position += record.skipped or 0
                numbers.append(position + 1)
                position += 1
    return numbers


# ------------------------------------------------------------------------------------ the policy
def test_the_policy_skips_only_behind_or_late_and_never_the_newest_frame():
    keeps = SkipPolicy(max_latency=1.0, interval=0.1)
    keeps.took(0.05)
    assert not keeps.skip_oldest(age=0.5, waiting=5)  # keeping pace: a backlog is worked off
    assert keeps.skip_oldest(age=0.99, waiting=2)  # late: it would leave after the bound
    assert not keeps.skip_oldest(age=5.0, waiting=1)  # the newest frame is never skipped
    behind = SkipPolicy(max_latency=1.0, interval=0.1)
    behind.took(0.2)
    assert behind.behind()
    assert not behind.skip_oldest(age=0.2, waiting=3)  # a short burst goes through
    assert behind.skip_oldest(age=0.3, waiting=3)  # past a quarter of the bound: take the newest
    late = SkipPolicy(max_latency=1.0, interval=0.1)
    late.took(0.05)
    late.sent(0.5)  # the codec holds a picture half a second
    assert late.skip_oldest(age=0.5, waiting=2) and not late.skip_oldest(age=0.4, waiting=2)


# ------------------------------------------------------------------------------ through the stream
def test_an_encoder_slower_than_its_paced_source_skips_frames_that_keep_their_numbers(bundled):
    stream, report, statuses = _encode(_Slow(bundled, 0.15), realtime=True, fps=20, max_latency=0.4)
    assert report.skipped > 0 and report.frames + report.skipped == FRAMES  # the last frame is always coded
    assert report.effective_fps < 20 and report.frames + report.skipped == report.source_frames
    assert statuses[-1] == (report.frames, report.skipped)
    numbers = _coded_numbers(stream)
    assert len(numbers) == report.frames and numbers[-1] == FRAMES and numbers == sorted(set(numbers))
    assert len(set(range(1, FRAMES + 1)) - set(numbers)) == report.skipped
    header, _ = bitstream.parse(stream)  # a complete, valid stream: the stream end counts the source's frames
    assert header.num_frames == report.frames

    tracked = []
    decoded = decode_units([stream], bundled, CPU, keep_features=True,
                           on_frame=lambda rows, number, latency: tracked.append(number))
    assert decoded.ok and decoded.complete and not decoded.losses  # skipping is not a loss
    assert decoded.frames == report.frames and decoded.skipped == report.skipped
    assert tracked == numbers  # each frame's tracks under its number in the source
    assert {r.frame for r in decoded.tracker.rows} <= set(numbers)
    assert decoded.effective_fps == pytest.approx(report.effective_fps)

    # each decoded frame is the source frame its number says: its features are that frame's, not a neighbour's
    source = open_source(SAMPLE, max_frames=FRAMES)
    with torch.inference_mode():
        reference = [bundled.forward_part1(batch, "backbone")
                     for batch, _ in network_inputs(source, bundled.input_width, bundled.input_height)]
    for number, features in zip(numbers, decoded.features):
        errors = [float(np.abs(features[2] - ref[2][0].numpy()).mean()) for ref in reference]
        assert int(np.argmin(errors)) + 1 == number


def test_a_paced_source_codes_with_a_codec_that_holds_a_gop(bundled):
    """VVenC's low-delay GOP gives pictures out eight at a time: a paced encoder that keeps frames out of
    the codec must not wait for them one by one (it did, and hung)."""
    from fcm_common.coding.codecs import make_codec

    vvenc = make_codec("vvenc")
    assert vvenc.held_pictures("ll") == 1 and vvenc.held_pictures("ld") is None
    assert make_codec("lossless").held_pictures("ld") == 0
    source = open_source(SAMPLE, max_frames=3, fps=20)
    source.realtime = True
    settings = EncodeSettings(split="backbone", codec=vvenc, preset="faster", gop="ld", intra_period=4,
                              range_spec=RangeSpec.parse("frame"), max_latency=1.0)
    report = encode_stream(source, bundled, AnchorMethod(), settings, CPU, BytesSink())
    assert report.frames + report.skipped == 3


def test_files_never_skip(bundled):
    stream, report, statuses = _encode(_Slow(bundled, 0.05), realtime=False, frames=6, max_latency=0.001)
    assert report.skipped == 0 and report.frames == 6 and not statuses
    header = segments.parse_segment(next(u for u in segments.UnitReader().feed(stream) if u.kind == segments.SEGMENT).body)
    assert not header.skips and not header.timestamps  # a stored file: the bytes of before


def test_a_paced_source_with_no_latency_bound_never_skips(bundled):
    _, report, _ = _encode(_Slow(bundled, 0.1), realtime=True, fps=50, frames=5, max_latency=0)
    assert report.skipped == 0 and report.frames == 5


# ---------------------------------------------------------------------------------------- format
class _Params:  # what picture units need of a segment's parameters
    per_frame_range = False


def _header(skips: bool) -> segments.SegmentHeader:
    return segments.SegmentHeader(0, 0, _Params(), base_time=100.0, timestamps=True, skips=skips)


def _picture(unit: bytes, header) -> segments.Picture:
    """The picture of an inner unit (type, varint length, body, CRC-16)."""
    length, pos = segments._read_varint(unit, 1)
    return segments.parse_picture(unit[pos : pos + length], header)


def test_picture_units_carry_skips_only_when_there_are_some():
    with_flag, without = _header(True), _header(False)
    kept = [segments.FrameRecord(100.0, None, 0), segments.FrameRecord(100.1, None, 0)]
    assert len(segments.picture_unit(with_flag, kept, b"x")) == len(segments.picture_unit(without, kept, b"x"))
    assert [r.skipped for r in _picture(segments.picture_unit(with_flag, kept, b""), with_flag).records] == [0, 0]
    assert [r.skipped for r in _picture(segments.picture_unit(without, kept, b""), without).records] == [None, None]
    skipped = [segments.FrameRecord(100.0, None, 3), segments.FrameRecord(100.3, None, 0)]
    picture = _picture(segments.picture_unit(with_flag, skipped, b"payload"), with_flag)
    assert [r.skipped for r in picture.records] == [3, 0] and picture.payload == b"payload"
    assert [round(r.capture_time, 3) for r in picture.records] == [100.0, 100.3]
    forged = segments.varint(3) + segments.varint(0) + segments.varint(segments.MAX_SKIPPED + 1)
    with pytest.raises(bitstream.BitstreamError, match="skipped"):
        segments.parse_picture(forged, with_flag)


def test_the_skipped_counts_are_in_the_reconstruction_hash():
    import hashlib

    a, b = hashlib.sha256(), hashlib.sha256()
    segments.hash_range(a, segments.FrameRecord(0.0, None, 0))
    segments.hash_range(b, segments.FrameRecord(0.0, None, 2))
    assert a.digest() != b.digest()
    c = hashlib.sha256()
    segments.hash_range(c, segments.FrameRecord(0.0, None, None))  # no skips flag: nothing hashed, as before
    assert c.digest() == hashlib.sha256().digest()


# --------------------------------------------------------------------------------------- tracker
def test_skipped_frames_pass_time_without_losing_a_track():
    """A track born just before a skip is confirmed by the next frame coded (a frame without detections,
    as a lost segment is treated, would remove it: a stream skipping every other frame confirms none)."""
    def dets(*xs: float) -> Detections:
        emb = np.zeros((len(xs), 8), np.float32)
        for i in range(len(xs)):
            emb[i, i] = 1
        boxes = np.array([[x, 10, x + 20, 60] for x in xs], np.float32)
        return Detections(boxes, np.full(len(xs), 0.9, np.float32), emb)

    skipping, losing = SequenceTracker(10.0), SequenceTracker(10.0)
    for seq in (skipping, losing):
        seq.tracker.update(dets(0))  # frame 1: A
        seq.tracker.update(dets(0))
        seq.tracker.update(dets(0, 200))  # frame 3: B is born
        seq.frame_number = 4
    skipping.skip(2)
    losing.gap(2, embedding_dim=8)
    assert skipping.frame_number == losing.frame_number == 6 and skipping.tracker.frame_id == 5
    assert [t.state for t in skipping.tracker.tracked] == [TrackState.TRACKED] * 2  # nothing lost meanwhile
    assert sorted(b.track_id for b in skipping.tracker.update(dets(0, 200))) == [1, 2]  # B confirmed, A kept
    assert [b.track_id for b in losing.tracker.update(dets(0, 200))] == [1]  # A re-found, B born again


# --------------------------------------------------------------------------------------- threads
def test_a_live_command_takes_half_the_cores_and_an_option_or_omp_overrides():
    assert choose_threads(live=True, cpu_count=2, environ={}) == 1  # encoder and decoder on a 2-core machine
    assert choose_threads(live=True, cpu_count=1, environ={}) == 1
    assert choose_threads(live=True, cpu_count=6, environ={}) == 3
    assert choose_threads(live=True, cpu_count=64, environ={}) == LIVE_MAX_THREADS
    assert choose_threads(live=False, cpu_count=2, environ={}) is None  # a file: torch's default
    assert choose_threads(live=True, requested=2, cpu_count=2, environ={}) == 2  # --torch-threads
    assert choose_threads(live=False, requested=3, environ={}) == 3
    assert choose_threads(live=True, cpu_count=8, environ={"OMP_NUM_THREADS": "2"}) is None  # the user's, kept
    before = torch.get_num_threads()
    with torch_threads(live=False, requested=max(1, before - 1) if before > 1 else 2) as threads:
        assert torch.get_num_threads() == threads != before
    assert torch.get_num_threads() == before  # restored


# ----------------------------------------------------------------------------------- onnxruntime
def test_part1_on_onnxruntime_gives_torch_s_features(small_jde):
    pytest.importorskip("onnxruntime")
    x = torch.rand(2, 3, small_jde.input_height, small_jde.input_width, generator=torch.Generator().manual_seed(0))
    for split in ("dn53", "alt1", "backbone"):
        run = part1_runner(small_jde, split, threads=1)
        with torch.inference_mode():
            for ours, ref in zip(run(x), small_jde.forward_part1(x, split)):
                assert ours.shape == ref.shape
                assert float((ours - ref).abs().max()) <= 1e-4 * max(float(ref.abs().max()), 1.0)


def test_onnxruntime_leaves_no_file_in_the_temporary_folder(tmp_path):
    pytest.importorskip("onnxruntime")
    code = ("from fcm_common.model.jde import load_jde; from fcm_common.model.onnx_part1 import part1_runner; "
            f"part1_runner(load_jde(None, cfg={str(ROOT / 'cfg' / 'jde_576x320.cfg')!r}), 'backbone', 1)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- sources
def test_a_live_source_faster_than_its_rate_is_read_at_its_rate():
    clock = _Pace(50.0, live=True)
    stamps = [clock.stamp(i) for i in range(5)]  # all "arrived" at once
    assert all(b - a >= 0.019 for a, b in zip(stamps, stamps[1:]))
    late = _Pace(50.0, live=True)
    late.stamp(0)
    time.sleep(0.1)
    now = time.time()
    assert late.stamp(1) >= now  # a frame later than its schedule: its arrival time, and the schedule restarts


def test_a_bad_latency_bound_is_a_one_line_error():
    for value in ("-1", "nan", "abc"):
        assert_one_line_error(run_in_process("fcm-encode", SAMPLE, "--max-latency", value, "-o", "-"), "--max-latency")


# ------------------------------------------------------------------------------------ the commands
@pytest.mark.slow  # two processes and pacing: make test runs it
def test_the_commands_report_skipped_frames_and_number_rows_as_in_the_source(tmp_path):
    args = [SAMPLE, "--frames", 16, "--realtime", "--fps", 30, "--max-latency", "0.2", "--method", "anchor", "--split",
            "backbone", "--codec", "lossless", "--range", "frame", "--intra-period", "4", "--device", "cpu", "-o", "-"]
    env = {k: v for k, v in os.environ.items() if k != "FCM_JDE_WEIGHTS"}
    enc = subprocess.Popen([str(Path(sys.executable).parent / "fcm-encode"), *map(str, args)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env)
    dec = subprocess.Popen([str(Path(sys.executable).parent / "fcm-decode"), "-", "-o", "-", "--device", "cpu"],
                           stdin=enc.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    enc.stdout.close()
    rows, dec_err = dec.communicate(timeout=300)
    enc_err = enc.stderr.read().decode()
    assert enc.wait(timeout=60) == 0, enc_err
    assert dec.returncode == 0, dec_err  # skipped frames are not losses
    # 30 fps of the sample with the bundled JDE and a 576x1016 lossless frame: more than 2 cores can do
    assert "frames skipped" in enc_err and "effective fps" in enc_err and "onnxruntime" in enc_err
    assert "skips frames" in dec_err and "effective fps" in dec_err
    numbers = sorted({int(line.split(",")[0]) for line in rows.splitlines()})
    assert numbers and numbers[-1] <= 16 and len(numbers) < 15  # rows under source numbers, with gaps
