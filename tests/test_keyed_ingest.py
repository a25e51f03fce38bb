"""Keyed ingest (issue 32): a listener takes only its own encoder's stream and says what it turned away.

On loopback and in memory, with the first frames of the shipped sample, the bundled JDE and the anchor
coded losslessly in segments of two frames (tracks exact, run after run). The streams are made as a
live output makes them (one picture unit per frame), so that units can be replayed and reordered.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, run_in_process

from fcm_common.coding import bitstream, segments, stream_key
from fcm_common.coding.codecs.lossless import LosslessCodec
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import RangeSpec
from fcm_common.core.errors import FcmError
from fcm_common.data.mot_format import format_rows, read_rows
from fcm_common.data.sources import open_source
from fcm_common.model.bundled import choose_network, load_network
from fcm_common.streaming.transport import BREAK, BytesSink, TcpListener
from fcm_decoder.stream_decoder import decode_units
from fcm_encoder.encoder import EncodeSettings, encode_stream

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "PETS09-S2L1-551-650"
CPU = torch.device("cpu")
FRAMES = 6  # three segments of two frames
KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
MAC = "failed its MAC check"


class _LiveBytes(BytesSink):
    """Memory that takes units as a live output does: one picture unit per frame, capture times."""

    live = True


@pytest.fixture(scope="module")
def bundled():
    return load_network(choose_network(None), CPU)


def _encode(model, key=None) -> bytes:
    settings = EncodeSettings(split="backbone", codec="lossless", intra_period=2, range_spec=RangeSpec.parse("frame"),
                              stream_key=key)
    sink = _LiveBytes()
    encode_stream(open_source(SAMPLE, max_frames=FRAMES), model, AnchorMethod(), settings, CPU, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def keyed(bundled):
    return _encode(bundled, KEY)


@pytest.fixture(scope="module")
def unkeyed(bundled):
    return _encode(bundled)


@pytest.fixture(scope="module")
def reference(bundled, keyed):
    report = decode_units([keyed], bundled, CPU, stream_key=KEY)
    assert report.ok and report.complete and report.frames == FRAMES and not report.refusals
    assert report.tracker.rows, "the sample's first frames have tracks"
    return _rows(report)


def _rows(report) -> str:
    return format_rows(report.tracker.rows, 1)


def _units(stream: bytes) -> list[segments.Unit]:
    units = segments.UnitReader().feed(stream)
    assert all(isinstance(u, segments.Unit) for u in units)
    return units


def _framed(unit: segments.Unit) -> bytes:
    return (segments.unit if unit.kind in (segments.SEGMENT, segments.STREAM_END) else segments.inner_unit)(unit.kind,
                                                                                                            unit.body)


def _segment_bytes(stream: bytes, first: int, last: int | None = None) -> bytes:
    """Segments ``first``..``last`` as sent (``last`` None: to the end of the stream, its end unit too)."""
    starts = [u.offset for u in _units(stream) if u.kind == segments.SEGMENT] + [len(stream)]
    return stream[starts[first] : len(stream) if last is None else starts[last + 1]]


def _resealed(stream: bytes, key: bytes) -> bytes:
    """The stream's units sealed with another key: an encoder that has a key, not this one."""
    writer = stream_key.UnitWriter(key)
    out, header = [], None
    for u in _units(stream):
        body = u.body[: -segments.TAG_BYTES]
        if u.kind == segments.SEGMENT:
            header = segments.parse_segment(body)
            header.stream_id = writer.stream_id
            out.append(writer.segment(header))
        elif u.kind == segments.PICTURE:
            picture = segments.parse_picture(body, header)
            out.append(writer.picture(header, picture.records, picture.payload))
        elif u.kind == segments.SEGMENT_END:
            out.append(writer.segment_end(header, *segments.parse_segment_end(body)[1:]))
        else:
            out.append(writer.stream_end(*segments.parse_stream_end(body)))
    return b"".join(out)


def test_a_keyed_stream_is_the_unkeyed_one_with_a_mac_a_unit_and_the_same_tracks(bundled, keyed, unkeyed, reference):
    with_key, without = _units(keyed), _units(unkeyed)
    assert [u.kind for u in with_key] == [u.kind for u in without]
    assert all(segments.is_keyed_segment(u.body) for u in with_key if u.kind == segments.SEGMENT)
    grown = {segments.SEGMENT: segments.TAG_BYTES + segments.STREAM_ID_BYTES, segments.SEGMENT_END: segments.TAG_BYTES,
             segments.STREAM_END: segments.TAG_BYTES}  # picture units: a MAC too (capture times vary run to run)
    assert all(len(k.body) == len(u.body) + grown[k.kind] for k, u in zip(with_key, without) if k.kind in grown)
    header, _ = bitstream.parse(keyed)  # a stored keyed stream reads as any other
    assert header.num_frames == FRAMES and header.payload_length == bitstream.parse(unkeyed)[0].payload_length
    assert _rows(decode_units([unkeyed], bundled, CPU)) == reference  # the key changes no track


def test_without_its_key_or_with_another_a_keyed_stream_is_one_clear_error(bundled, keyed, unkeyed):
    with pytest.raises(FcmError, match="the stream is keyed .*--key-file"):
        decode_units([keyed], bundled, CPU)
    with pytest.raises(FcmError, match=MAC):
        decode_units([keyed], bundled, CPU, stream_key=OTHER_KEY)
    with pytest.raises(FcmError, match=MAC):
        decode_units([_resealed(keyed, OTHER_KEY)], bundled, CPU, stream_key=KEY)
    with pytest.raises(FcmError, match="not keyed"):  # no MAC: not authenticated
        decode_units([unkeyed], bundled, CPU, stream_key=KEY)


def _feeds(monkeypatch) -> list[bytes]:
    """Every piece of payload the inner decoders are given."""
    fed = []
    original = LosslessCodec.open_decoder

    def spy(self, *args, **kwargs):
        decoder = original(self, *args, **kwargs)
        feed = decoder.feed
        decoder.feed = lambda data: (fed.append(bytes(data)), feed(data))[1]
        return decoder

    monkeypatch.setattr(LosslessCodec, "open_decoder", spy)
    return fed


def _tampered(stream: bytes, how: str) -> tuple[bytes, bytes]:
    """(the stream with its second segment's pictures tampered with, the payload that must not reach the codec)."""
    units = _units(stream)
    s1 = [i for i, u in enumerate(units) if u.kind == segments.SEGMENT][1]
    first, second = s1 + 1, s1 + 2  # its two picture units
    framed = [_framed(u) for u in units]
    header = segments.parse_segment(units[s1].body[: -segments.TAG_BYTES])
    payload_of = {i: segments.parse_picture(units[i].body[: -segments.TAG_BYTES], header).payload
                  for i in (first, second)}
    if how == "replayed":
        framed[second] = framed[first]  # the first picture again in the place of the second
        unfed = payload_of[first]  # once fed, never twice
    elif how == "reordered":
        framed[first], framed[second] = framed[second], framed[first]
        unfed = payload_of[second]
    else:  # forged: a byte of the payload changed, the CRC made valid again (not the MAC: no key)
        body = bytearray(units[first].body)
        body[-segments.TAG_BYTES - 1] ^= 0x01
        framed[first] = segments.inner_unit(segments.PICTURE, bytes(body))
        unfed = segments.parse_picture(bytes(body[: -segments.TAG_BYTES]), header).payload
    return b"".join(framed), unfed


@pytest.mark.parametrize("how", ["replayed", "reordered", "forged"])
def test_a_replayed_reordered_or_forged_unit_is_refused_before_the_codec(bundled, keyed, reference, monkeypatch, how):
    stream, unfed = _tampered(keyed, how)
    fed = _feeds(monkeypatch)
    warnings = []
    report = decode_units([stream], bundled, CPU, stream_key=KEY, on_warning=warnings.append)
    assert fed.count(unfed) == (1 if how == "replayed" else 0)
    assert len(report.refusals) == 1 and MAC in report.refusals[0] and "rest of the input" in report.refusals[0]
    (loss,) = report.losses  # its segment from the refused unit on (a replayed frame 3 may have been tracked)
    assert loss.last is None and loss.first in ((3, 4) if how == "replayed" else (3,))
    assert report.frames == loss.first - 1
    assert warnings == [report.refusals[0], loss.describe()]  # each one a warning
    assert _rows(report) == "".join(line + "\n" for line in reference.splitlines() if int(line.split(",")[0]) < loss.first)


def test_a_segment_cut_after_its_frames_is_reported_as_not_verified_not_as_a_hash_mismatch(bundled, unkeyed):
    """The issue's final error named a hash mismatch that no warning mentioned: a segment whose
    connection broke after its last frame (its end unit lost) is decoded but not verified, and said so."""
    tracked = []
    segment_1 = _segment_bytes(unkeyed, 1, 1)

    def connections():
        yield _segment_bytes(unkeyed, 0, 0) + segment_1[: -len(_framed(_units(segment_1)[-1]))]  # all but its end
        for _ in range(600):  # until its frames are tracked
            if len(tracked) == 4:
                break
            threading.Event().wait(0.05)
        yield BREAK
        yield _segment_bytes(unkeyed, 2)

    warnings = []
    report = decode_units(connections(), bundled, CPU, on_warning=warnings.append,
                          on_frame=lambda rows, number, latency: tracked.append(number))
    assert report.frames == FRAMES and not report.losses and not report.mismatches
    assert len(report.unverified) == 1 and warnings == report.unverified and "not verified" in warnings[0]
    assert report.summary() == "1 segment(s) not verified (their end unit was lost or wrong)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(port: int, data: bytes, wait: bool = True) -> None:
    """One connection: ``data``, then (``wait``) until the listener has closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while wait and sock.recv(1 << 16):
                pass
        except OSError:  # refused: the listener closed the connection while it was sending
            pass


def _listen(model, key, connections: list[bytes]):
    """(report, warnings) of a listener that receives ``connections`` one after another (the last one
    ends the stream)."""
    port = _free_port()
    listener = TcpListener(f"tcp://127.0.0.1:{port}")
    warnings, result = [], {}

    def decode():
        try:
            result["report"] = decode_units(listener, model, CPU, stream_key=key, on_warning=warnings.append)
        except BaseException as exc:  # noqa: BLE001 - raised in the test
            result["error"] = exc

    thread = threading.Thread(target=decode, daemon=True)
    thread.start()
    for i, data in enumerate(connections):
        _send(port, data, wait=i < len(connections) - 1)
    thread.join(timeout=120)
    listener.stop()
    if "error" in result:
        raise result["error"]
    return result["report"], warnings


def test_a_keyed_listener_refuses_every_foreign_connection_and_changes_no_track(bundled, keyed, unkeyed, reference):
    rng = random.Random(32)
    other_run = _encode(bundled, KEY)  # the same encoder and key, another stream
    refused = {
        "garbage": (rng.randbytes(5000), "not an fcm stream"),
        "FCM and garbage": (b"FCM" + rng.randbytes(5000), "not an fcm stream"),
        "no key": (unkeyed, "not keyed"),
        "another key": (_resealed(keyed, OTHER_KEY), MAC),
        "a replayed segment": (_segment_bytes(keyed, 0, 0), "segment 0 again"),
        "a second stream": (_segment_bytes(other_run, 2), "another stream"),
    }
    connections = [*(data for data, _ in list(refused.values())[:4]), _segment_bytes(keyed, 0, 1),
                   *(data for data, _ in list(refused.values())[4:]), _segment_bytes(keyed, 2)]
    report, warnings = _listen(bundled, KEY, connections)
    assert len(warnings) == len(refused), warnings  # one line per refused connection, nothing else
    for line, (what, (_, reason)) in zip(warnings, refused.items()):
        assert line.startswith("connection from 127.0.0.1:") and reason in line, (what, line)
    assert report.ok and report.complete and report.frames == FRAMES
    assert _rows(report) == reference


def test_an_unkeyed_listener_takes_one_stream_and_says_what_it_turned_away(bundled, keyed, unkeyed):
    expected = _rows(decode_units([unkeyed], bundled, CPU))
    units = _units(unkeyed)
    s1 = [u for u in units if u.kind == segments.SEGMENT][1]
    other = segments.parse_segment(s1.body)
    other.params.qp += 1  # another header
    refused = {
        "the stream again from its start": (unkeyed, "another stream (it starts at frame 1; frames up to 2"),
        "a keyed stream": (keyed, "the stream is keyed"),
        "another header": (segments.segment_unit(other) + _segment_bytes(unkeyed, 1)[len(_framed(s1)):],
                           "its segment header differs"),
    }
    report, warnings = _listen(bundled, None, [_segment_bytes(unkeyed, 0, 0), *(d for d, _ in refused.values()),
                                               _segment_bytes(unkeyed, 1)])
    assert len(warnings) == len(refused), warnings
    for line, (what, (_, reason)) in zip(warnings, refused.items()):
        assert line.startswith("connection from 127.0.0.1:") and reason in line, (what, line)
    assert report.ok and report.complete and report.frames == FRAMES
    assert _rows(report) == expected


def test_the_command_warns_once_per_refusal_and_loss_and_its_error_counts_them(keyed, reference, tmp_path):
    """The issue's session: garbage, "FCM" and garbage, a connection cut inside a segment, the stream
    with every 97th byte flipped, then the rest of the stream: each refused connection and the loss
    is one warning line, and the final error counts what the warnings say (no hash mismatch)."""
    key_file = tmp_path / "stream.key"
    key_file.write_bytes(KEY)
    port = _free_port()
    out = tmp_path / "tracks.txt"
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", run_in_process(
        "fcm-decode", "--listen", f"tcp://127.0.0.1:{port}", "--key-file", key_file, "-o", out, "--device", "cpu")))
    thread.start()
    rng = random.Random(97)
    flipped = bytearray(keyed)
    flipped[::97] = bytes(b ^ 0xFF for b in flipped[::97])
    segment_1 = _segment_bytes(keyed, 1, 1)
    cut = _segment_bytes(keyed, 0, 0) + segment_1[: len(_framed(_units(segment_1)[0])) + 50]  # in its first picture
    for i, data in enumerate([rng.randbytes(5000), b"FCM" + rng.randbytes(5000), cut, bytes(flipped),
                              _segment_bytes(keyed, 2)]):
        for _ in range(200):  # until the command listens
            try:
                _send(port, data, wait=i < 4)
                break
            except ConnectionRefusedError:
                threading.Event().wait(0.1)
    thread.join(timeout=300)
    res = result["r"]
    lines = [line for line in res.stderr.splitlines() if line.startswith(("warning:", "error:"))]
    assert [line.split(":")[0] for line in lines] == ["warning"] * 4 + ["error"], res.stderr
    assert all("refused: not an fcm stream" in line for line in lines[:3])  # the flipped one: its first byte
    assert lines[3].startswith("warning: frames 3..4 lost (segment 1: the connection broke)")  # known at segment 2
    assert "1 loss (2 frames)" in lines[4] and "mismatch" not in lines[4] and res.returncode == 1
    rows = read_rows(out)
    assert {r.frame for r in rows} <= {1, 2, 5, 6}
    assert format_rows([r for r in rows if r.frame <= 2], 1) == "".join(
        line + "\n" for line in reference.splitlines() if int(line.split(",")[0]) <= 2)


# ------------------------------------------------------------------------------ the commands
def test_key_files_that_are_not_keys_are_one_line_errors(small_sequence, small_cfg, tmp_path, monkeypatch):
    base = ["--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu", "--method", "anchor", "--split", "alt1",
            "--codec", "lossless", "-o", tmp_path / "s.bin"]
    short, empty, big = tmp_path / "short.key", tmp_path / "empty.key", tmp_path / "big.key"
    short.write_bytes(b"0123456789")
    empty.write_bytes(b"")
    big.write_bytes(bytes(stream_key.MAX_KEY_BYTES + 1))
    cases = [(short, "holds 10 bytes, a key needs at least 16"), (empty, "holds 0 bytes"),
             (big, "not a key file"), (tmp_path / "missing.key", "key file not found"), (tmp_path, "is a folder")]
    for path, message in cases:
        assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--key-file", path, *base), message)
        assert_one_line_error(run_in_process("fcm-decode", tmp_path / "s.bin", "--key-file", path, *base[:6]), message)
    assert not (tmp_path / "s.bin").exists()
    monkeypatch.setenv(stream_key.KEY_FILE_ENV, str(short))  # the environment names it as well
    assert_one_line_error(run_in_process("fcm-encode", small_sequence, *base), "holds 10 bytes")
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp_path / "unreadable.key"
        unreadable.write_bytes(KEY)
        unreadable.chmod(0)
        assert_one_line_error(run_in_process("fcm-encode", small_sequence, "--key-file", unreadable, *base),
                              "cannot read the key file")


def test_keyed_files_through_the_commands(keyed, unkeyed, reference, tmp_path):
    key_file, other = tmp_path / "stream.key", tmp_path / "other.key"
    key_file.write_bytes(KEY)
    other.write_bytes(OTHER_KEY)
    stream, plain = tmp_path / "keyed.bin", tmp_path / "plain.bin"
    stream.write_bytes(keyed)
    plain.write_bytes(unkeyed)
    out = tmp_path / "t.txt"
    base = ["-o", out, "--device", "cpu"]
    assert_one_line_error(run_in_process("fcm-decode", stream, *base), "the stream is keyed")
    assert_one_line_error(run_in_process("fcm-decode", stream, "--key-file", other, *base), MAC)
    assert_one_line_error(run_in_process("fcm-decode", plain, "--key-file", key_file, *base), "not keyed")
    assert not out.exists()  # no half-written output
    result = run_in_process("fcm-decode", stream, "--key-file", key_file, *base)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert format_rows(read_rows(out), 1) == reference
    encoded = tmp_path / "encoded.bin"  # the encoder's option: a keyed file that its key decodes
    result = run_in_process("fcm-encode", SAMPLE, "--frames", 2, "--method", "anchor", "--codec", "lossless",
                            "--key-file", key_file, "-o", encoded, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert segments.is_keyed_segment(_units(encoded.read_bytes())[0].body)
    result = run_in_process("fcm-decode", encoded, "--key-file", key_file, *base)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_a_listener_beyond_loopback_without_a_key_warns_once(small_cfg, tmp_path):
    key_file = tmp_path / "stream.key"
    key_file.write_bytes(KEY)
    missing_gt = tmp_path / "none" / "gt.txt"  # stops the command once its options are read
    base = ["--gt", missing_gt, "--weights", "random", "--jde-cfg", small_cfg, "--device", "cpu"]
    port = _free_port()
    warned = run_in_process("fcm-decode", "--listen", f"tcp://0.0.0.0:{port}", *base)
    assert [line for line in warned.stderr.splitlines() if line.startswith("warning")] == [
        f"warning: listening on tcp://0.0.0.0:{port} without --key-file: anyone who can reach the port can send "
        "this decoder a stream (docs/live.md, keyed streams)"]
    for listen, extra in ((f"tcp://127.0.0.1:{_free_port()}", []), (f"tcp://localhost:{_free_port()}", []),
                          (f"tcp://0.0.0.0:{_free_port()}", ["--key-file", key_file])):
        quiet = run_in_process("fcm-decode", "--listen", listen, *extra, *base)
        assert quiet.returncode != 0 and "warning" not in quiet.stderr, quiet.stderr
