"""Live streams (issue 20): segments, pipes, TCP with reconnection, joining mid-stream, damage, latency.

Everything runs on pipes and loopback, on the first frames of the shipped sample with the bundled JDE
and the anchor coded losslessly (so that tracks are exact and the same run after run), with short
segments (intra period 4) so that a few frames make several segments.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ENTRY_POINTS, assert_one_line_error, run_in_process

from fcm_common.coding import bitstream, segments
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import RangeSpec
from fcm_common.data.mot_format import format_rows, read_rows
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.streaming.transport import BytesSink, TcpListener, TcpSink
from fcm_decoder.stream_decoder import decode_units
from fcm_encoder.encoder import EncodeSettings, encode_stream

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"
CPU = torch.device("cpu")
FRAMES = 10  # segments of 4, 4 and 2 frames: the source ends inside a segment
CODING = ["--method", "anchor", "--split", "backbone", "--codec", "lossless", "--range", "frame", "--intra-period", "4",
          "--device", "cpu"]


@pytest.fixture(scope="module")
def bundled():
    return load_network(choose_network(None), CPU)


def _settings(**kw) -> EncodeSettings:
    return EncodeSettings(split="backbone", codec="lossless", intra_period=4, range_spec=RangeSpec.parse("frame"), **kw)


def _encode(model, sink=None, frames=FRAMES, realtime=False):
    source = open_source(SAMPLE, max_frames=frames)
    source.realtime = realtime
    sink = sink or BytesSink()
    report = encode_stream(source, model, AnchorMethod(), _settings(), CPU, sink)
    return sink, report


@pytest.fixture(scope="module")
def stream(bundled):
    sink, report = _encode(bundled)
    return sink.getvalue()


@pytest.fixture(scope="module")
def reference(bundled, stream):
    report = decode_units([stream], bundled, CPU)
    assert report.ok and report.complete and report.frames == FRAMES
    return report


def _rows(report) -> str:
    return format_rows(report.tracker.rows, 1)


def test_a_stored_stream_is_segments_and_decodes_in_any_pieces(bundled, stream, reference):
    header, _ = bitstream.parse(stream)
    assert header.version == 3 and header.num_frames == FRAMES and len(header.ranges) == FRAMES
    kinds = [u.kind for u in segments.UnitReader().feed(stream)]
    assert kinds.count(segments.SEGMENT) == 3 and kinds.count(segments.SEGMENT_END) == 3 and kinds[-1] == segments.STREAM_END
    assert reference.tracker.rows, "the sample's first frames have tracks"
    pieces = [stream[i : i + 777] for i in range(0, len(stream), 777)]
    assert _rows(decode_units(pieces, bundled, CPU)) == _rows(reference)


def _start(name: str, args: list, tmpdir: Path | None = None, **kw) -> subprocess.Popen:
    script = Path(sys.executable).parent / name
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", f"from {ENTRY_POINTS[name]} import main; main()"]
    env = {k: v for k, v in os.environ.items() if k != "FCM_JDE_WEIGHTS"}
    if tmpdir is not None:  # a process the test kills leaves its temporary folder here, not in /tmp
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(cmd + [str(a) for a in args], env=env, **kw)


@pytest.mark.slow  # processes and pacing: make test runs it
def test_a_paced_pipe_gives_the_file_s_tracks_and_rows_before_the_encoder_ends(reference, tmp_path):
    # no frame skipped, NN part 1 on torch as for the file (issue 29: a paced source may skip frames, and runs
    # part 1 on onnxruntime by default)
    enc = _start("fcm-encode", [SAMPLE, "--frames", FRAMES, "--realtime", "--max-latency", "0", "--engine", "torch",
                                *CODING, "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dec = _start("fcm-decode", ["-", "-o", "-", "--device", "cpu"], stdin=enc.stdout, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    enc.stdout.close()
    first_row = None
    lines = []
    for line in dec.stdout:
        if first_row is None:
            first_row = time.monotonic()
        lines.append(line)
    enc_err = enc.stderr.read().decode()
    assert enc.wait(timeout=300) == 0, enc_err
    enc_end = time.monotonic()  # no later than this
    dec_err = dec.stderr.read()
    assert dec.wait(timeout=300) == 0, dec_err
    assert "".join(lines) == _rows(reference)  # the pipe gives the stored stream's tracks
    assert first_row is not None and first_row < enc_end
    assert "latency" in dec_err and "p95" in dec_err


def test_joining_at_any_byte_offset_starts_at_the_next_segment(bundled, stream, reference):
    starts = [u.offset for u in segments.UnitReader().feed(stream) if u.kind == segments.SEGMENT]
    for offset in (1, starts[1] - 3, starts[1], starts[1] + 50, starts[2] - 1):
        report = decode_units([stream[offset:]], bundled, CPU)
        first = 5 if offset <= starts[1] else 9
        assert report.first_frame == first and report.frames == FRAMES - first + 1, offset
        assert report.ok and report.complete  # joining late is not a loss
        assert min(r.frame for r in report.tracker.rows) >= first if report.tracker.rows else True


def test_a_damaged_segment_costs_its_own_frames_only(bundled, stream, reference, tmp_path):
    starts = [u.offset for u in segments.UnitReader().feed(stream) if u.kind == segments.SEGMENT]
    damaged = bytearray(stream)
    middle = (starts[1] + starts[2]) // 2
    damaged[middle : middle + 4] = bytes(b ^ 0x5A for b in damaged[middle : middle + 4])
    warnings = []
    report = decode_units([bytes(damaged)], bundled, CPU, on_warning=warnings.append)
    assert [(loss.first, loss.last) for loss in report.losses] == [(5, 8)]
    assert report.frames == FRAMES - 4 and report.complete
    assert len(warnings) == 1 and "frames 5..8 lost" in warnings[0]
    rows = report.tracker.rows
    assert not [r for r in rows if 5 <= r.frame <= 8]
    assert [r for r in rows if r.frame <= 4] == [r for r in reference.tracker.rows if r.frame <= 4]
    # the command: the tracks of the frames received are written, one warning, then an error and status 1
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(damaged))
    out = tmp_path / "t.txt"
    result = run_in_process("fcm-decode", path, "-o", out, "--device", "cpu")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("warning: frames 5..8 lost") and lines[-1].startswith("error: the stream was damaged")
    assert read_rows(out) == rows  # the tracks file: the frames received, complete


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_connection_that_drops_loses_one_segment_and_the_encoder_reconnects(bundled):
    listener = TcpListener(f"tcp://127.0.0.1:{_free_port()}")
    host, port = listener.address
    events = []
    received = []

    class Dropping:
        """The listener, with the first connection cut after its first segment."""

        def __iter__(self):
            total = 0
            cut = False
            for chunk in listener:
                if isinstance(chunk, bytes):
                    total += len(chunk)
                    if not cut and total > 1_000_000:  # inside the second segment
                        cut = True
                        listener.conn.shutdown(socket.SHUT_RDWR)
                received.append(chunk)
                yield chunk

        def stop(self):
            listener.stop()

    result = {}

    def decode():
        result["report"] = decode_units(Dropping(), bundled, CPU, on_warning=events.append)

    thread = threading.Thread(target=decode)
    thread.start()
    sink = TcpSink(f"tcp://{host}:{port}", on_event=events.append)
    _, report = _encode(bundled, sink, frames=16, realtime=True)
    sink.close()
    thread.join(timeout=300)
    decoded = result["report"]
    assert decoded.complete and decoded.losses, events
    assert any("lost the connection" in e for e in events) and any("reconnected" in e for e in events)
    assert decoded.frames + decoded.lost_frames == 16
    assert decoded.frames >= 8  # one or two segments lost, the rest decoded


@pytest.mark.slow  # processes and pacing: make test runs it
def test_a_killed_decoder_and_a_restarted_one_pick_up_the_stream(tmp_path):
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    first = _start("fcm-decode", ["--listen", url, "-o", "-", "--device", "cpu"], tmpdir=tmp_path,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # listening (torch imported, network loaded)
    # 100 frames at 7 fps: the encoder keeps pace (issue 29), it must still be coding when the second decoder listens
    enc = _start("fcm-encode", [SAMPLE, "--frames", 100, "--realtime", *CODING, "-o", url], stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    row = first.stdout.readline()  # tracks arrive
    assert row, first.stderr.read()
    first.kill()
    first.wait()
    second = _start("fcm-decode", ["--listen", url, "-o", "-", "--device", "cpu"], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    out, err = second.communicate(timeout=300)
    assert enc.wait(timeout=300) == 0, enc.stderr.read()
    assert second.returncode == 0, err  # it joined at a segment start: nothing lost from there on
    frames = sorted({int(line.split(",")[0]) for line in out.splitlines()})
    assert frames and frames[0] > int(row.split(",")[0]) and frames[-1] <= 100
    assert "reconnected" in enc.stderr.read() if enc.stderr else True


@pytest.mark.slow  # processes and pacing: make test runs it
def test_stdin_frames_ending_inside_a_frame_send_the_frames_read_then_fail(small_cfg, tmp_path):
    width, height = 64, 48
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (7, height, width, 3), dtype=np.uint8).tobytes() + bytes(100)  # 7 frames and a cut one
    enc = _start("fcm-encode", ["-", "--size", f"{width}x{height}", "--fps", "10", "--weights", "random", "--jde-cfg",
                                small_cfg, "--method", "anchor", "--split", "alt1", "--codec", "lossless", "--range",
                                "frame", "--intra-period", "4", "--max-latency", "0", "-o", "-", "--device", "cpu"],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stream, err = enc.communicate(raw, timeout=300)
    assert enc.returncode == 1
    assert [line for line in err.decode().splitlines() if line.startswith("error")] == [
        "error: standard input ended inside frame 8 (100 of 9216 bytes of a 64x48 rgb24 frame)"]
    header, _ = bitstream.parse(stream)  # the 7 frames read form a complete stream
    assert header.num_frames == 7


def test_bad_live_inputs_are_one_line_errors(small_sequence, small_cfg, tmp_path):
    base = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    assert_one_line_error(run_in_process("fcm-encode", "-", *base), "need --size WxH and --fps")
    assert_one_line_error(run_in_process("fcm-encode", "/dev/video99", *base), "camera not found")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--size", "10x10", *base), "--size is for")
    assert_one_line_error(run_in_process("fcm-encode", "-", "--size", "640by480", "--fps", "10", *base),
                          "'640by480' is not WxH of positive integers")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "-o", "tcp://nowhere", *base), "tcp://HOST:PORT")
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--realtime", "--range", "sequence",
                                         "--method", "anchor", *base), "not with a live")
    assert_one_line_error(run_in_process("fcm-decode", *base), "give IN")
    assert_one_line_error(run_in_process("fcm-decode", "--listen", "tcp://127.0.0.1:x", *base), "tcp://HOST:PORT")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"FCMB\x03" + bytes(300))
    out = tmp_path / "t.txt"
    assert_one_line_error(run_in_process("fcm-decode", junk, "-o", out, *base), "damaged stream")
    assert not out.exists()


def test_a_url_is_read_through_ffmpeg(small_cfg, tmp_path):
    """http:// (as rtsp://, udp://, ...): the frames come from ffmpeg as they arrive (a streamable
    container: the test server cannot seek, as a live stream cannot)."""
    import functools
    import http.server

    from fcm_common.data.sources import open_live_source
    from fcm_common.data.synthetic import write_video

    write_video(tmp_path / "clip.mkv", num_frames=6, width=160, height=96, fps=10, seed=4)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mkv"
        source = open_live_source(url, max_frames=4)
        assert source.live and (source.width, source.height) == (160, 96) and source.fps == 10
        frames = list(source.frames())
        assert len(frames) == 4 and frames[0].shape == (96, 160, 3) and len(source.capture_times) == 4
        result = run_in_process("fcm-encode", url, "--frames", "3", "--weights", "random", "--jde-cfg", small_cfg,
                                "--method", "anchor", "--split", "alt1", "--codec", "lossless", "--max-latency", "0",
                                "-o", tmp_path / "u.bin", "--device", "cpu")  # every frame, however loaded the machine
        assert result.returncode == 0, result.stderr
        assert bitstream.parse((tmp_path / "u.bin").read_bytes())[0].num_frames == 3
    finally:
        server.shutdown()


def test_a_slow_output_drops_whole_segments_and_says_how_many(monkeypatch):
    """The encoder's memory stays bounded: what does not fit in the queue is dropped up to the next
    segment start, counted, and sending resumes with a whole segment."""
    from fcm_common.streaming import transport

    monkeypatch.setattr(transport, "QUEUE_UNITS", 4)
    gate = threading.Event()
    sent, events = [], []

    class Slow(transport._QueuedSink):
        def _send(self, data):
            gate.wait()  # the reader is stuck until the gate opens
            sent.append(data)

    sink = Slow(on_event=events.append)
    units = []
    for segment in range(4):  # a segment: its start, three pictures of one frame each
        units.append((f"S{segment}".encode(), True, 0))
        units += [(f"P{segment}{i}".encode(), False, 1) for i in range(3)]
    sink.write(*units[0][:1], segment_start=True)
    time.sleep(0.2)  # the writer has taken S0 and is stuck sending it
    for data, start, frames in units[1:8]:  # four wait in the queue, the rest of segment 1 does not fit
        sink.write(data, segment_start=start, frames=frames)
    gate.set()
    for data, start, frames in units[8:]:  # a reader that keeps up again
        time.sleep(0.05)
        sink.write(data, segment_start=start, frames=frames)
    sink.close()
    assert sink.dropped_frames == 3 and sink.dropped_segments == 0  # P10, P11, P12: the rest of segment 1
    assert sent == [b"S0", b"P00", b"P01", b"P02", b"S1", b"S2", b"P20", b"P21", b"P22", b"S3", b"P30", b"P31", b"P32"]
    assert len(events) == 1 and "dropping" in events[0]


def test_segments_coded_at_once_give_the_same_stream(bundled, stream, monkeypatch):
    """A codec that gives out a segment only at its end (VTM) codes --vtm-jobs segments at once: the
    stream is the one coded segment after segment."""
    from fcm_common.coding.codecs.lossless import LosslessCodec

    monkeypatch.setattr(LosslessCodec, "parallel_segments", 3)
    sink, _ = _encode(bundled)
    assert sink.getvalue() == stream


def test_a_codec_that_gives_out_everything_at_the_end_waits_for_its_last_frame():
    from fcm_common.coding.codecs.base import FrameEncoder

    class AtTheEnd(FrameEncoder):
        def __init__(self):
            self.frames = []

        def write(self, frame):
            self.frames.append(frame)
            self.frames_written += 1

        def finish(self):
            return b"".join(f.tobytes() for f in self.frames)

    encoder = AtTheEnd()
    got = []
    reader = threading.Thread(target=lambda: got.extend(encoder.pictures()))
    reader.start()
    for i in range(3):
        time.sleep(0.05)
        encoder.write(np.full((2, 2), i, np.uint16))
    assert not got  # still waiting: frames are being written
    encoder.close()
    reader.join(timeout=5)
    assert got == [(b"".join(np.full((2, 2), i, np.uint16).tobytes() for i in range(3)), 3)]


def test_a_paced_source_codes_without_codec_worker_threads(bundled, stream, monkeypatch):
    """Frames at a source's pace leave the codec waiting: its sessions get no worker pool (a waiting
    pool spins, a core lost to the network); a stored sequence keeps the codec's default. Either way
    the frames are the same, so a lossless stream is too (apart from its capture times)."""
    from fcm_common.coding.codecs import NO_WORKER_THREADS
    from fcm_common.coding.codecs.lossless import LosslessCodec

    opened = []
    original = LosslessCodec.open_encoder

    def spy(self, width, height, params, workdir):
        opened.append(params.threads)
        return original(self, width, height, params, workdir)

    monkeypatch.setattr(LosslessCodec, "open_encoder", spy)
    _encode(bundled, frames=6)
    assert opened and set(opened) == {0}
    opened.clear()
    sink, report = _encode(bundled, frames=6, realtime=True)
    assert opened and set(opened) == {NO_WORKER_THREADS}
    decoded = decode_units([sink.getvalue()], bundled, CPU)
    assert decoded.ok and decoded.frames == 6 and len(decoded.latencies) == 6
