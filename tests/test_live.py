"""Live streams (issue 20): segments, pipes, TCP with reconnection, joining mid-stream, damage, latency.

Everything runs on pipes and loopback, on the first frames of the shipped sample with the bundled JDE
and the anchor coded losslessly (so that tracks are exact and the same run after run), with short
segments (intra period 4) so that a few frames make several segments. The ``stream`` the tests join,
cut and damage is written through a live output, as ``fcm-encode -o -`` writes it: a picture unit per
frame, so that joining or damage can fall inside a segment (a stored file has one picture unit per
segment: ``stored``).
"""

from __future__ import annotations

import os
import re
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
from fcm_common.streaming import transport
from fcm_common.streaming.transport import BREAK, BytesSink, TcpListener, TcpSink
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


class LiveCapture(transport._QueuedSink):
    """A live output (what stdout and TCP are) that keeps what it sends, unit by unit."""

    def __init__(self, on_event=None):
        self.units: list[bytes] = []
        super().__init__(on_event)

    def _send(self, data: bytes) -> None:
        self.units.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self.units)


@pytest.fixture(scope="module")
def stream(bundled):
    """The first FRAMES frames as a live output sends them."""
    sink, _ = _encode(bundled, LiveCapture())
    sink.close()
    return sink.getvalue()


@pytest.fixture(scope="module")
def stored(bundled):
    """The same frames as fcm-encode stores them in a file."""
    sink, _ = _encode(bundled)
    return sink.getvalue()


@pytest.fixture(scope="module")
def reference(bundled, stream):
    report = decode_units([stream], bundled, CPU)
    assert report.ok and report.complete and report.frames == FRAMES
    assert len({r.frame for r in report.tracker.rows}) >= FRAMES - 1, "the sample's frames have tracks"
    return report


def _rows(report) -> str:
    return format_rows(report.tracker.rows, 1)


def _units(data: bytes) -> list[segments.Unit]:
    return [u for u in segments.UnitReader().feed(data) if isinstance(u, segments.Unit)]


def _offsets(data: bytes, kind: bytes) -> list[int]:
    return [u.offset for u in _units(data) if u.kind == kind]


def _frame_pictures(data: bytes) -> list[tuple[int, int]]:
    """(offset, frames it carries) of each picture unit that carries frames (a codec may end a segment
    with a unit of none: the lossless codec's zlib trailer)."""
    out, header = [], None
    for u in _units(data):
        if u.kind == segments.SEGMENT:
            header = segments.parse_segment(u.body)
        elif u.kind == segments.PICTURE:
            count = len(segments.parse_picture(u.body, header).records)
            if count:
                out.append((u.offset, count))
    return out


def _frame_offsets(data: bytes) -> list[int]:
    """Offset of the picture unit of each frame (index 0: frame 1), in a stream with one per frame."""
    pictures = _frame_pictures(data)
    assert all(count == 1 for _, count in pictures)
    return [offset for offset, _ in pictures]


def _span(data: bytes, offset: int) -> bytes:
    """The bytes of the unit at ``offset``."""
    units = _units(data)
    i = [u.offset for u in units].index(offset)
    return data[offset : units[i + 1].offset if i + 1 < len(units) else len(data)]


def test_a_stored_stream_is_segments_and_decodes_in_any_pieces(bundled, stored, stream, reference):
    header, _ = bitstream.parse(stored)
    assert header.version == 3 and header.num_frames == FRAMES and len(header.ranges) == FRAMES
    kinds = [u.kind for u in _units(stored)]
    assert kinds.count(segments.SEGMENT) == 3 and kinds.count(segments.SEGMENT_END) == 3 and kinds[-1] == segments.STREAM_END
    assert kinds.count(segments.PICTURE) == 3  # a file: one picture unit per segment
    assert [count for _, count in _frame_pictures(stored)] == [4, 4, 2]
    assert [count for _, count in _frame_pictures(stream)] == [1] * FRAMES  # live: a picture unit per frame
    assert bitstream.parse(stream)[0].num_frames == FRAMES  # a live stream is a complete stream too
    pieces = [stored[i : i + 777] for i in range(0, len(stored), 777)]
    assert _rows(decode_units(pieces, bundled, CPU)) == _rows(reference)  # the file's tracks are the live stream's


def _start(name: str, args: list, tmpdir: Path | None = None, **kw) -> subprocess.Popen:
    script = Path(sys.executable).parent / name
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", f"from {ENTRY_POINTS[name]} import main; main()"]
    # as a user runs it: no weights from the environment, and output buffered as Python buffers a pipe (the
    # commands must flush what a reader waits for themselves)
    env = {k: v for k, v in os.environ.items() if k not in ("FCM_JDE_WEIGHTS", "PYTHONUNBUFFERED")}
    if tmpdir is not None:  # a process the test kills leaves its temporary folder here, not in /tmp
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(cmd + [str(a) for a in args], env=env, **kw)


@pytest.mark.slow  # processes and pacing: make test runs it
def test_a_paced_pipe_gives_the_file_s_tracks_and_rows_before_the_encoder_ends(reference, tmp_path):
    """`fcm-encode --realtime -o - | fcm-decode - -o -`: the stored stream's tracks, and the first rows
    come out before the stream ends. The test is the pipe: once the first segment has gone through it
    holds the rest back until the decoder has printed rows (a decoder that keeps its rows until the end,
    in its own buffer or Python's, never does; the encoder's exit is no measure, it may come after the
    decoder's)."""
    # no frame skipped, NN part 1 on torch as for the file (issue 29: a paced source may skip frames, and runs
    # part 1 on onnxruntime by default)
    # and on as many threads as the reference ran here (a live command takes half the cores: another thread
    # count sums the convolutions in another order, and the lossless tracks differ in their last digits)
    threads = ["--torch-threads", str(torch.get_num_threads())]
    enc = _start("fcm-encode", [SAMPLE, "--frames", FRAMES, "--realtime", "--max-latency", "0", "--engine", "torch",
                                *threads, *CODING, "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dec = _start("fcm-decode", ["-", "-o", "-", "--device", "cpu", *threads], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_row = threading.Event()
    piped = {}

    def pipe():
        reader = segments.UnitReader()
        try:
            while chunk := enc.stdout.read1(1 << 16):
                dec.stdin.write(chunk)
                dec.stdin.flush()
                if "held" not in piped and any(getattr(u, "kind", None) == segments.SEGMENT_END
                                               for u in reader.feed(chunk)):
                    piped["held"] = first_row.wait(120)  # the first segment is through: rows, before any more
        finally:
            dec.stdin.close()

    def drain_encoder_errors():
        piped["err"] = enc.stderr.read().decode()

    threads = [threading.Thread(target=pipe, daemon=True), threading.Thread(target=drain_encoder_errors, daemon=True)]
    for thread in threads:
        thread.start()
    lines = []
    for line in dec.stdout:
        first_row.set()
        lines.append(line.decode())
    dec_err = dec.stderr.read().decode()
    assert dec.wait(timeout=300) == 0, dec_err
    for thread in threads:
        thread.join(timeout=300)
    assert enc.wait(timeout=300) == 0, piped["err"]
    assert "".join(lines) == _rows(reference)  # the pipe gives the stored stream's tracks
    assert piped["held"], "no row came out while the rest of the stream was held back"
    assert "latency" in dec_err and "p95" in dec_err


def test_joining_at_any_byte_offset_starts_at_the_next_segment(bundled, stream, reference):
    starts = _offsets(stream, segments.SEGMENT)
    pictures = _frame_offsets(stream)
    # the decode of each segment onwards, as if the stream had begun there
    joined = {first: decode_units([stream[start:]], bundled, CPU) for first, start in ((5, starts[1]), (9, starts[2]))}
    assert all(report.tracker.rows for report in joined.values())
    offsets = (1, pictures[1], pictures[2] + 10, starts[1] - 3, starts[1], starts[1] + 50, pictures[5], pictures[6] + 1,
               starts[2] - 1)
    for offset in offsets:  # in a header, at a picture and inside one of the first and second segments
        report = decode_units([stream[offset:]], bundled, CPU)
        first = 5 if offset <= starts[1] else 9
        assert report.first_frame == first and report.frames == FRAMES - first + 1, offset
        assert report.ok and report.complete  # joining late is not a loss
        assert report.tracker.rows and min(r.frame for r in report.tracker.rows) >= first, offset
        assert _rows(report) == _rows(joined[first]), offset  # the bytes before the segment change nothing


def test_a_damaged_segment_costs_its_own_frames_only(bundled, stream, reference, tmp_path):
    """A segment whose header is damaged is lost as a whole: the frames before and after it are
    tracked as if it had never been sent."""
    starts = _offsets(stream, segments.SEGMENT)
    damaged = bytearray(stream)
    damaged[starts[1] + 20] ^= 0x5A  # inside the second segment's header: its CRC fails
    warnings = []
    report = decode_units([bytes(damaged)], bundled, CPU, on_warning=warnings.append)
    assert [(loss.first, loss.last) for loss in report.losses] == [(5, 8)]
    assert report.frames == FRAMES - 4 and report.complete
    assert len(warnings) == 1 and "frames 5..8 lost" in warnings[0]
    rows = report.tracker.rows
    assert not [r for r in rows if 5 <= r.frame <= 8]
    assert [r for r in rows if r.frame <= 4] == [r for r in reference.tracker.rows if r.frame <= 4]
    assert [r for r in rows if r.frame >= 9], "the frames after the damaged segment are tracked"
    never_sent = decode_units([stream[: starts[1]] + stream[starts[2] :]], bundled, CPU)
    assert _rows(report) == _rows(never_sent)
    # the command: the tracks of the frames received are written, one warning, then an error and status 1
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(damaged))
    out = tmp_path / "t.txt"
    result = run_in_process("fcm-decode", path, "-o", out, "--device", "cpu")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("warning: frames 5..8 lost") and lines[-1].startswith("error: the stream was damaged")
    assert read_rows(out) == rows  # the tracks file: the frames received, complete


def test_a_damaged_picture_costs_the_rest_of_its_segment(bundled, stream, reference):
    """One picture of a live stream damaged: the frames before it keep their tracks (decoded, even when
    not yet tracked when the damage is found); the rest of its segment is lost; the next one is decoded."""
    at = _frame_offsets(stream)[6]  # frame 7: the third picture of the second segment
    damaged = bytearray(stream)
    damaged[at + 100 : at + 102] = bytes(b ^ 0xFF for b in damaged[at + 100 : at + 102])  # 16 bits: its CRC-16 fails
    warnings = []
    report = decode_units([bytes(damaged)], bundled, CPU, on_warning=warnings.append)
    assert [(loss.first, loss.last) for loss in report.losses] == [(7, 8)]
    assert len(warnings) == 1 and "frames 7..8 lost" in warnings[0] and "CRC mismatch in a picture unit" in warnings[0]
    assert report.frames == FRAMES - 2 and report.complete
    rows = report.tracker.rows
    assert [r for r in rows if r.frame <= 6] == [r for r in reference.tracker.rows if r.frame <= 6]
    assert not [r for r in rows if 7 <= r.frame <= 8] and [r for r in rows if r.frame >= 9]


def test_a_segment_header_followed_by_the_next_one_loses_that_segment(bundled, stream):
    """What a slow output's drop can leave: a segment's header, then the next segment (its pictures and
    end were dropped). That segment is lost, nothing else."""
    starts = _offsets(stream, segments.SEGMENT)
    header_only = _span(stream, starts[1])
    kinds = [getattr(u, "kind", "damage") for u in segments.UnitReader().feed(header_only + _span(stream, starts[2]))]
    assert kinds == [segments.SEGMENT, segments.SEGMENT]  # the second header is read, not skipped as damage
    warnings = []
    report = decode_units([stream[: starts[1]] + header_only + stream[starts[2] :]], bundled, CPU,
                          on_warning=warnings.append)
    assert [(loss.first, loss.last) for loss in report.losses] == [(5, 8)]
    assert len(warnings) == 1 and "the next segment began before its end" in warnings[0]
    assert report.frames == FRAMES - 4 and report.complete and not report.mismatches
    never_sent = decode_units([stream[: starts[1]] + stream[starts[2] :]], bundled, CPU)
    assert _rows(report) == _rows(never_sent) and [r for r in report.tracker.rows if r.frame >= 9]


def test_an_end_unit_whose_frame_count_does_not_match_is_reported(bundled, stream, reference):
    at = _offsets(stream, segments.SEGMENT_END)[1]
    end = next(u for u in _units(stream) if u.offset == at)
    index, frames, digest = segments.parse_segment_end(end.body)
    assert (index, frames) == (1, 4)
    forged = stream[:at] + segments.segment_end_unit(1, 3, digest) + stream[at + len(_span(stream, at)) :]
    # the segment's four frames arrived and were decoded before its end unit: tracked, but not verified
    warnings = []
    report = decode_units([forged], bundled, CPU, on_warning=warnings.append)
    assert not report.ok and not report.losses and not report.mismatches and report.complete
    assert report.frames == FRAMES
    assert len(report.unverified) == 1 and warnings == report.unverified
    assert "segment 1: its end unit says 3 frames, its pictures carried 4" in report.unverified[0]
    assert "tracked but not verified" in report.unverified[0]
    assert _rows(report) == _rows(reference)


def test_an_encoder_that_restarts_is_refused_and_the_first_tracks_stay(bundled, stream, reference):
    """An encoder that stops and starts again from its first frame (a new connection) starts another
    stream: one stream per session (issue 32), so it is refused with a warning and nothing of it is mixed
    into the tracks of the first run, which stay as they were."""
    starts = _offsets(stream, segments.SEGMENT)
    before = [r for r in reference.tracker.rows if r.frame <= 4]
    warnings = []
    report = decode_units([stream[: starts[1]], BREAK, stream], bundled, CPU, on_warning=warnings.append)
    assert report.frames == 4 and report.segments == 1 and not report.ok
    assert len(report.refusals) == 1 and "another stream (it starts at frame 1; frames up to 4" in report.refusals[0]
    assert report.refusals[0] in warnings
    assert report.tracker.rows == before, "the first run's tracks, nothing of the second"
    # stopped inside a segment: that segment is reported lost, the restart refused
    cut = _frame_offsets(stream)[5]
    warnings = []
    report = decode_units([stream[:cut], BREAK, stream], bundled, CPU, on_warning=warnings.append)
    assert not report.ok and 4 <= report.frames < FRAMES and len(report.refusals) == 1
    assert max(r.frame for r in report.tracker.rows) < FRAMES


def test_segments_shorter_than_the_intra_period(bundled, reference):
    """--segment 2 with an intra period of 4: five segments of two frames, each its own coding session
    (an intra picture first), with the same tracks; a --segment longer than the intra period is cut to it."""
    assert _settings(segment=8).segment_length == 4
    sink = LiveCapture()
    source = open_source(SAMPLE, max_frames=FRAMES)
    report = encode_stream(source, bundled, AnchorMethod(), _settings(segment=2), CPU, sink)
    sink.close()
    data = sink.getvalue()
    assert report.segments == 5
    headers = [segments.parse_segment(u.body) for u in _units(data) if u.kind == segments.SEGMENT]
    assert [h.first_frame for h in headers] == [0, 2, 4, 6, 8] and {h.params.intra_period for h in headers} == {2}
    decoded = decode_units([data], bundled, CPU)
    assert decoded.ok and decoded.complete and decoded.segments == 5
    assert _rows(decoded) == _rows(reference)
    joined = decode_units([data[_offsets(data, segments.SEGMENT)[2] - 1 :]], bundled, CPU)
    assert joined.first_frame == 5 and joined.ok and joined.frames == FRAMES - 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_connection_that_drops_loses_one_segment_and_the_encoder_reconnects(bundled, reference):
    listener = TcpListener(f"tcp://127.0.0.1:{_free_port()}")
    host, port = listener.address
    events = []

    class Dropping:
        """The listener, with the first connection cut inside the second segment (once its header came)."""

        def __iter__(self):
            reader = segments.UnitReader()
            headers = 0
            cut = False
            for chunk in listener:
                yield chunk
                if not cut and isinstance(chunk, bytes):
                    headers += sum(getattr(u, "kind", None) == segments.SEGMENT for u in reader.feed(chunk))
                    if headers >= 2:
                        cut = True
                        listener.conn.shutdown(socket.SHUT_RDWR)

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
    first = decoded.losses[0]
    assert 5 <= first.first <= 8 and decoded.lost_frames <= 8, "the loss begins in the second segment, one or two are lost"
    rows = decoded.tracker.rows
    assert [r for r in rows if r.frame <= 4] == [r for r in reference.tracker.rows if r.frame <= 4]
    assert [r for r in rows if r.frame > decoded.losses[-1].last], "the segments after the reconnection are tracked"


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
    assert "reconnected" in enc.stderr.read()


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


def test_the_queue_s_byte_limit_drops_too(monkeypatch):
    """Few units but many bytes (a dense picture): the byte limit fills the queue as the unit count does."""
    monkeypatch.setattr(transport, "QUEUE_BYTES", 10)
    gate = threading.Event()
    sent, events = [], []

    class Slow(transport._QueuedSink):
        def _send(self, data):
            gate.wait()
            sent.append(data)

    sink = Slow(on_event=events.append)
    sink.write(b"S0", segment_start=True)
    time.sleep(0.2)  # the writer has taken S0 and is stuck sending it
    for data in (b"P00", b"P01", b"P02"):  # 9 bytes wait: they fit
        sink.write(data, frames=1)
    sink.write(b"S1", segment_start=True)  # 11 bytes would wait: dropped, and the rest of its segment
    sink.write(b"P10", frames=1)
    gate.set()
    time.sleep(0.3)  # the queue empties
    sink.write(b"S2", segment_start=True)
    sink.write(b"P20", frames=1)
    sink.close()
    assert sent == [b"S0", b"P00", b"P01", b"P02", b"S2", b"P20"]
    assert (sink.dropped_frames, sink.dropped_segments) == (1, 1) and len(events) == 1


def test_the_encoder_says_what_a_slow_output_dropped(small_sequence, small_cfg, monkeypatch):
    """fcm-encode -o - behind a reader that does not keep up: the encoder finishes, says when it starts
    dropping and, at the end, how many frames in how many segments it dropped; what was sent starts
    with a whole segment."""
    import fcm_encoder.cli

    monkeypatch.setattr(transport, "QUEUE_UNITS", 2)
    gate = threading.Event()
    opened = []

    class Stuck(LiveCapture):
        def _send(self, data):
            gate.wait(60)  # the reader reads nothing until the encoder is done
            super()._send(data)

        def close(self):
            gate.set()
            super().close()

    def open_sink(target, on_event=None):
        assert target == "-"
        opened.append(Stuck(on_event))
        return opened[-1]

    monkeypatch.setattr(fcm_encoder.cli, "open_sink", open_sink)
    result = run_in_process("fcm-encode", small_sequence, "--weights", "random", "--jde-cfg", small_cfg, "--method",
                            "anchor", "--split", "alt1", "--codec", "lossless", "--intra-period", "2", "-o", "-",
                            "--device", "cpu")
    assert result.returncode == 0, result.stderr
    sink = opened[0]
    assert sink.dropped_frames > 0
    assert "warning: the output is too slow: dropping frames up to the next segment" in result.stderr
    said = re.search(r"warning: the output could not keep up: (\d+) frames in (\d+) segments were dropped", result.stderr)
    assert said and (int(said[1]), int(said[2])) == (sink.dropped_frames, sink.dropped_segments), result.stderr
    assert sink.units[0].startswith(segments.SYNC) and _units(sink.units[0])[0].kind == segments.SEGMENT


@pytest.mark.slow  # a process: what the reader's end does to it
def test_a_reader_that_goes_away_stops_the_encoder_with_one_error(small_sequence, small_cfg, tmp_path):
    """`fcm-encode -o - | head -c 100`: the encoder stops with one error line and status 1 (no
    traceback, no broken-pipe noise at exit)."""
    enc = _start("fcm-encode", [small_sequence, "--weights", "random", "--jde-cfg", small_cfg, "--method", "anchor",
                                "--split", "dn53", "--codec", "lossless", "--intra-period", "2", "-o", "-", "--device",
                                "cpu"], tmpdir=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = enc.stdout.read(100)  # the stream is megabytes: the encoder is still writing when the reader goes
    enc.stdout.close()
    err = enc.stderr.read().decode()
    assert enc.wait(timeout=300) == 1, err
    assert head.startswith(segments.SYNC)
    assert [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")] == [
        "error: the reader of standard output went away"], err


def test_live_endpoints_that_cannot_work_are_one_line_errors(small_sequence, small_cfg, tmp_path, monkeypatch):
    import io

    base = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    with socket.socket() as busy:  # --listen on a port another program listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_error(run_in_process("fcm-decode", "--listen", f"tcp://127.0.0.1:{port}", *base),
                              f"cannot listen on tcp://127.0.0.1:{port}")
    out = tmp_path / "u.bin"  # a URL nothing answers at
    assert_one_line_error(run_in_process("fcm-encode", f"http://127.0.0.1:{_free_port()}/clip.mkv", "-o", out, *base),
                          "cannot open http://127.0.0.1:")
    assert not out.exists()
    folder = tmp_path / "a-folder.bin"  # a folder given as the bitstream
    folder.mkdir()
    assert_one_line_error(run_in_process("fcm-decode", folder, *base), "is a folder, not a bitstream")
    # empty standard input: nothing to decode, nothing to encode (and no file left behind)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert_one_line_error(run_in_process("fcm-decode", "-", *base), "no segment of an fcm stream was found")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert_one_line_error(run_in_process("fcm-encode", "-", "--size", "64x48", "--fps", "10", "--method", "anchor",
                                         "--codec", "lossless", "-o", out, *base), "no frames to encode")
    assert not out.exists() and not list(tmp_path.glob(".u.bin*"))


@pytest.mark.slow  # VVenC
def test_a_live_vvenc_stream_has_the_low_latency_gop_and_a_picture_per_frame(bundled, monkeypatch):
    """fcm-encode -o - with VVenC: the live GOP (ll) unless --gop is given, each picture sent as its own
    unit as soon as it is coded, and the stream decodes, from its start or joined inside a segment."""
    import fcm_encoder.cli

    opened = []
    monkeypatch.setattr(fcm_encoder.cli, "open_sink", lambda target, on_event=None: opened.append(LiveCapture(on_event))
                        or opened[-1])
    frames = 8
    result = run_in_process("fcm-encode", SAMPLE, "--frames", frames, "--method", "anchor", "--split", "backbone",
                            "--codec", "vvenc", "--preset", "faster", "--qp", "32", "--intra-period", "4", "-o", "-",
                            "--device", "cpu")
    assert result.returncode == 0, result.stderr
    data = opened[0].getvalue()
    headers = [segments.parse_segment(u.body) for u in _units(data) if u.kind == segments.SEGMENT]
    assert len(headers) == 2 and {(h.params.codec, h.params.gop) for h in headers} == {("vvenc", "ll")}
    pictures = _frame_offsets(data)  # one picture unit per frame
    assert len(pictures) == frames
    report = decode_units([data], bundled, CPU)
    assert report.ok and report.complete and report.frames == frames and report.tracker.rows
    joined = decode_units([data[pictures[1] :]], bundled, CPU)  # inside the first segment: from the second on
    assert joined.ok and joined.first_frame == 5 and joined.frames == 4
    assert _rows(joined) == _rows(decode_units([data[_offsets(data, segments.SEGMENT)[1] :]], bundled, CPU))


def test_segments_coded_at_once_give_the_same_stream(bundled, stored, monkeypatch):
    """A codec that gives out a segment only at its end (VTM) codes --vtm-jobs segments at once: the
    stream is the one coded segment after segment."""
    from fcm_common.coding.codecs.lossless import LosslessCodec

    monkeypatch.setattr(LosslessCodec, "parallel_segments", 3)
    sink, _ = _encode(bundled)
    assert sink.getvalue() == stored


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
