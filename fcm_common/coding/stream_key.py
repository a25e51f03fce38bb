"""Keyed streams: a shared secret, and a MAC on every unit over its bytes and its place in the stream.

An encoder and a decoder given the same key file (``--key-file``) make and check a MAC on each unit
(``docs/bitstream.md``, "Keyed streams"): HMAC-SHA256 with the key over a label, the stream's
identity (16 random bytes the encoder draws per run, carried in every segment header), the unit's
position (segment index and the unit's number within its segment; the stream end has a position of
its own), its type and its body; the first ``TAG_BYTES`` bytes end the unit's body. A unit made
without the key, altered, replayed or moved to another place fails the check and is refused before
its bytes reach a parser of its fields or the inner decoder. The key is used as it is, whatever its
bytes; there is no encryption: the MAC says who made a unit, not what it hides.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from pathlib import Path

from fcm_common.coding import segments
from fcm_common.coding.segments import STREAM_ID_BYTES, TAG_BYTES, SegmentHeader
from fcm_common.core.errors import FcmError

KEY_FILE_ENV = "FCM_STREAM_KEY_FILE"
MIN_KEY_BYTES = 16  # 128 bits: a guessed key is out of reach
MAX_KEY_BYTES = 4096  # more is not a key file (a video, an archive given by mistake)
MAKE_A_KEY = "head -c 32 /dev/urandom > stream.key"
_LABEL = b"fcm unit MAC 1\0"
_POSITION = struct.Struct(">16sIIc")  # stream identity, segment index, unit number, unit type
STREAM_END_SEGMENT = 0xFFFFFFFF  # the stream end's position: no segment has this index


def read_key_file(path: str | Path) -> bytes:
    """The key: the file's bytes as they are (binary or text, at least ``MIN_KEY_BYTES``)."""
    path = Path(path)
    try:
        key = path.read_bytes() if path.stat().st_size <= MAX_KEY_BYTES else None
    except FileNotFoundError:
        raise FcmError(f"key file not found: {path}") from None
    except IsADirectoryError:
        raise FcmError(f"the key file {path} is a folder") from None
    except OSError as exc:
        raise FcmError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if key is None:
        raise FcmError(f"the key file {path} holds more than {MAX_KEY_BYTES} bytes: not a key file? "
                       f"(make one with: {MAKE_A_KEY})")
    if len(key) < MIN_KEY_BYTES:
        raise FcmError(f"the key file {path} holds {len(key)} bytes, a key needs at least {MIN_KEY_BYTES} "
                       f"(make one with: {MAKE_A_KEY})")
    return key


def new_stream_id() -> bytes:
    return os.urandom(STREAM_ID_BYTES)


def _tag(key: bytes, stream_id: bytes, segment: int, number: int, kind: bytes, body: bytes) -> bytes:
    mac = hmac.new(key, _LABEL, hashlib.sha256)
    mac.update(_POSITION.pack(stream_id, segment, number, kind))
    mac.update(body)
    return mac.digest()[:TAG_BYTES]


class UnitWriter:
    """The encoder's units, in the order it sends them; with a key, each body ends with its MAC.
    Without a key the units are the ``segments`` module's, byte for byte."""

    def __init__(self, key: bytes | None):
        self.key = key
        self.stream_id = new_stream_id() if key is not None else None
        self.numbers: dict[int, int] = {}  # segment index -> number of its next unit

    def _seal(self, kind: bytes, body: bytes, segment: int, number: int) -> bytes:
        if self.key is None:
            return body
        return body + _tag(self.key, self.stream_id, segment, number, kind, body)

    def _next(self, segment: int) -> int:
        number = self.numbers[segment]
        self.numbers[segment] = number + 1
        return number

    def segment(self, header: SegmentHeader) -> bytes:
        """A segment's ``S`` unit (``header.stream_id`` must be this writer's)."""
        if header.stream_id != self.stream_id:
            raise ValueError("the segment header names another stream than this writer's")
        self.numbers[header.index] = 1
        return segments.unit(segments.SEGMENT, self._seal(segments.SEGMENT, segments.segment_body(header),
                                                          header.index, 0))

    def picture(self, header: SegmentHeader, records, payload: bytes) -> bytes:
        body = segments.picture_body(header, records, payload)
        return segments.inner_unit(segments.PICTURE, self._seal(segments.PICTURE, body, header.index,
                                                                 self._next(header.index)))

    def segment_end(self, header: SegmentHeader, frames: int, recon_hash: bytes) -> bytes:
        body = segments.segment_end_body(header.index, frames, recon_hash)
        sealed = self._seal(segments.SEGMENT_END, body, header.index, self._next(header.index))
        del self.numbers[header.index]
        return segments.inner_unit(segments.SEGMENT_END, sealed)

    def stream_end(self, frames: int, segment_count: int) -> bytes:
        body = segments.stream_end_body(frames, segment_count)
        return segments.unit(segments.STREAM_END, self._seal(segments.STREAM_END, body, STREAM_END_SEGMENT, 0))


class UnitVerifier:
    """The decoder's check of a keyed unit: its MAC at the position the decoder expects it."""

    def __init__(self, key: bytes):
        self.key = key

    def open(self, kind: bytes, body: bytes, stream_id: bytes, segment: int, number: int) -> bytes | None:
        """The body without its MAC, or None when the MAC is not the one the key makes for this unit
        at this position."""
        if len(body) < TAG_BYTES:
            return None
        inner, tag = body[:-TAG_BYTES], body[-TAG_BYTES:]
        if not hmac.compare_digest(tag, _tag(self.key, stream_id, segment, number, kind, inner)):
            return None
        return inner

    def open_segment(self, body: bytes) -> bytes | None:
        """A segment header's body without its MAC, checked at the position it names (its own stream
        identity and segment index), or None."""
        if len(body) < 4 + STREAM_ID_BYTES + TAG_BYTES:
            return None
        (index,) = struct.unpack_from(">I", body)
        stream_id = body[-TAG_BYTES - STREAM_ID_BYTES : -TAG_BYTES]
        return self.open(segments.SEGMENT, body, stream_id, index, 0)

    def open_stream_end(self, body: bytes, stream_id: bytes) -> bytes | None:
        return self.open(segments.STREAM_END, body, stream_id, STREAM_END_SEGMENT, 0)
