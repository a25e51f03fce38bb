"""The fcm feature stream, version 3: units behind a sync marker, grouped in self-contained segments.

A stream is a sequence of *units* (``docs/bitstream.md``, version 3)::

    SYNC (8 bytes: "FCMB" 0x03 0xD5 0x9A 0x3C) | type (1) | body length (u32) | body | CRC-32 of type..body (u32)

and the units form *segments*, one per intra period (or ``--segment N`` frames): a segment header
(``S``: every stream parameter, the segment's index and first frame, its quantisation range), then
picture units (``P``: the inner codec's bytes as it produced them, with the capture time and, with
per-frame ranges, the range of each frame they complete), then a segment end (``E``: its frame
count and the hash of its reconstructed frames). The stream ends with ``Z`` (frame and segment
counts), which tells a complete stream from a cut one.

A *keyed* stream (``fcm-encode --key-file``) flags it in every segment header, which then also carries
the stream's identity, and ends every unit's body with a MAC (``TAG_BYTES``) over the unit and its
position; :mod:`fcm_common.coding.stream_key` makes and checks them, the parsers here take bodies
without it.

Each segment starts at a random-access picture and carries what its decoding needs, so a decoder can
start at any segment: it finds the next sync marker in arbitrary bytes (:class:`UnitReader`), and a
damaged unit (bad CRC, missing bytes) costs the frames of its own segment only. A file written by
``fcm-encode`` is this stream, stored. Nothing here does input or output: bytes in, units out.
"""

from __future__ import annotations

import binascii
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from fractions import Fraction

from fcm_common.coding.codecs import CODECS
from fcm_common.coding.identifiers import ID_BYTES
from fcm_common.coding.methods import METHODS
from fcm_common.coding.packing import FrameLayout, TileGrid
from fcm_common.coding.stream_header import (
    FLOAT32_MAX,
    GOPS,
    BitstreamError,
    StreamHeader,
    name_from_registry,
    name_from_table,
    validate,
)
from fcm_common.core.errors import FcmError
from fcm_common.core.varint import varint
from fcm_common.model.splits import SPLIT_CODES, SPLIT_NAMES

VERSION = 3
SYNC = b"FCMB" + bytes([VERSION, 0xD5, 0x9A, 0x3C])
SEGMENT, PICTURE, SEGMENT_END, STREAM_END = b"S", b"P", b"E", b"Z"
UNIT_TYPES = (SEGMENT, PICTURE, SEGMENT_END, STREAM_END)
_PREFIX = struct.Struct(">cI")  # type, body length
UNIT_OVERHEAD = len(SYNC) + _PREFIX.size + 4
MAX_BODY = 1 << 30  # a body longer than this is a damaged length field, not a unit
FLAG_PER_FRAME_RANGE = 0x02
FLAG_TIMESTAMPS = 0x04  # picture units carry capture times (live streams)
FLAG_KEYED = 0x08  # every unit ends with a MAC; the segment header carries the stream identity
FLAG_SKIPS = 0x10  # picture units may say how many source frames were skipped before each frame (paced and live sources)
_FLAGS_AT = 19  # offset of the flags byte in a segment header's body
STREAM_ID_BYTES = 16
TAG_BYTES = 16  # a keyed unit's MAC: the first 16 bytes of its HMAC-SHA256
MAX_SKIPPED = (1 << 24) - 1  # frames skipped before one frame (6 days at 30 fps): more is a damaged or forged unit


def is_segmented(data: bytes) -> bool:
    """Whether ``data`` starts like a version-3 stream."""
    return data[: len(SYNC)] == SYNC


def is_keyed_segment(body: bytes) -> bool:
    """Whether a segment header's body (as read, MAC included) flags a keyed stream: read before the
    body is parsed, since the MAC at its end must be checked (or the stream refused) first."""
    return len(body) > _FLAGS_AT and bool(body[_FLAGS_AT] & FLAG_KEYED)


# ------------------------------------------------------------------------------------------ units
def unit(kind: bytes, body: bytes) -> bytes:
    """An outer unit (a segment header, the stream end): sync marker, type, length, body, CRC-32."""
    prefix = _PREFIX.pack(kind, len(body))
    return SYNC + prefix + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(prefix)))


def _read_varint(data, pos: int, limit: int = 5) -> tuple[int | None, int]:
    """(value, next position); value None when the bytes end first; ValueError when too long."""
    value = shift = 0
    for i in range(limit):
        if pos + i >= len(data):
            return None, pos
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("varint too long")


def inner_unit(kind: bytes, body: bytes) -> bytes:
    """An inner unit (a picture, a segment end), chained after its segment header without a sync
    marker: type, length (varint), body, CRC-16 (CCITT) of type..body."""
    head = kind + varint(len(body))
    return head + body + struct.pack(">H", binascii.crc_hqx(body, binascii.crc_hqx(head, 0xFFFF)))


@dataclass(frozen=True)
class Unit:
    kind: bytes
    body: bytes
    offset: int  # of its first byte in the bytes read


@dataclass(frozen=True)
class Damage:
    """Bytes that are not a valid unit (skipped), at ``offset`` of the bytes read."""

    offset: int
    size: int
    why: str


class UnitReader:
    """Units out of bytes fed in pieces (a file, a pipe, a socket): after a segment header it reads
    the segment's chained units; after damage it resynchronises on the next sync marker, and reports
    skipped bytes as :class:`Damage`."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.start = 0  # offset of buf[0] in everything fed
        self.in_segment = False

    def feed(self, data: bytes) -> list[Unit | Damage]:
        self.buf += data
        return list(self._units())

    def end(self) -> list[Unit | Damage]:
        """No more bytes: whatever is left is a cut unit."""
        out = list(self._units())
        if self.buf:
            out.append(Damage(self.start, len(self.buf), "the bytes end inside a unit"))
            self._drop(len(self.buf))
        self.in_segment = False
        return out

    def reset(self) -> list[Damage]:
        """The byte stream broke (a connection closed): a unit in progress is lost."""
        out = self.end()
        if not out:
            out = [Damage(self.start, 0, "the connection broke")]
        return out

    def _drop(self, n: int) -> None:
        del self.buf[:n]
        self.start += n

    def _units(self):
        while True:
            if self.in_segment and self.buf[:1] == SYNC[:1]:
                # no inner unit starts so: a sync marker where the segment's next unit should be (the rest of the
                # segment was dropped by a live output); read as the next unit, not skipped with a damaged one
                self.in_segment = False
            if self.in_segment:
                result = self._inner()
                if result is None:
                    return
                yield result
                continue
            at = self.buf.find(SYNC)
            if at < 0:
                keep = len(SYNC) - 1  # the end may hold the beginning of a marker
                if len(self.buf) > keep:
                    n = len(self.buf) - keep
                    yield Damage(self.start, n, "bytes without a sync marker")
                    self._drop(n)
                return
            if at > 0:
                yield Damage(self.start, at, "bytes without a sync marker")
                self._drop(at)
            head = len(SYNC) + _PREFIX.size
            if len(self.buf) < head:
                return
            kind, length = _PREFIX.unpack_from(self.buf, len(SYNC))
            if kind not in (SEGMENT, STREAM_END) or length > MAX_BODY:
                yield Damage(self.start, 1, "a sync marker followed by an invalid unit type or length")
                self._drop(1)
                continue
            total = head + length + 4
            if len(self.buf) < total:
                return
            body = bytes(self.buf[head : head + length])
            (crc,) = struct.unpack_from(">I", self.buf, head + length)
            if zlib.crc32(body, zlib.crc32(bytes(self.buf[len(SYNC) : head]))) != crc:
                yield Damage(self.start, 1, f"unit CRC mismatch ({kind.decode()} unit)")
                self._drop(1)  # the marker may be an accident inside a payload: look for the next one
                continue
            yield Unit(kind, body, self.start)
            self._drop(total)
            self.in_segment = kind == SEGMENT

    def _inner(self) -> Unit | Damage | None:
        if not self.buf:
            return None
        kind = bytes(self.buf[:1])
        try:
            length, pos = _read_varint(self.buf, 1)
        except ValueError:
            length, pos = MAX_BODY + 1, 1
        if kind not in (PICTURE, SEGMENT_END) or (length is not None and length > MAX_BODY):
            return self._lost("a unit of the segment is damaged (invalid type or length)")
        if length is None or len(self.buf) < pos + length + 2:
            return None
        body = bytes(self.buf[pos : pos + length])
        (crc,) = struct.unpack_from(">H", self.buf, pos + length)
        if binascii.crc_hqx(body, binascii.crc_hqx(bytes(self.buf[:pos]), 0xFFFF)) != crc:
            return self._lost(f"CRC mismatch in a {'picture' if kind == PICTURE else 'segment end'} unit")
        offset = self.start
        self._drop(pos + length + 2)
        if kind == SEGMENT_END:
            self.in_segment = False
        return Unit(kind, body, offset)

    def _lost(self, why: str) -> Damage:
        """The segment's chain is broken: skip a byte and look for the next sync marker."""
        self.in_segment = False
        damage = Damage(self.start, 1, why)
        self._drop(1)
        return damage


# ------------------------------------------------------------------------------- segment header
@dataclass
class SegmentHeader:
    """A segment's parameters: the stream's (a :class:`StreamHeader`, whose ``num_frames``,
    ``recon_hash`` and ``payload_length`` are unused) and its own."""

    index: int
    first_frame: int  # 0-based index of its first frame in the source
    params: StreamHeader
    base_time: float = 0.0  # capture time of its first frame (seconds since the epoch, the encoder's clock)
    timestamps: bool = False  # its picture units carry each frame's capture time
    stream_id: bytes | None = None  # a keyed stream's identity (random, one per encoder run); None: not keyed
    skips: bool = False  # its picture units may carry, per frame, the source frames skipped before it
    body: bytes = field(default=b"", compare=False)  # as read or written (hashed into the reconstruction hash)

    @property
    def per_frame_range(self) -> bool:
        return self.params.per_frame_range


def _pack_params(p: StreamHeader, timestamps: bool = False, keyed: bool = False, skips: bool = False) -> bytes:
    flags = ((FLAG_PER_FRAME_RANGE if p.per_frame_range else 0) | (FLAG_TIMESTAMPS if timestamps else 0)
             | (FLAG_KEYED if keyed else 0) | (FLAG_SKIPS if skips else 0))
    out = bytearray(struct.pack(
        ">BBBBbBH", METHODS[p.method].code, SPLIT_CODES[p.split], CODECS[p.codec].code, flags, p.qp,
        GOPS.index(p.gop), p.intra_period))
    out += struct.pack(">BHHHHIIHH", p.sample_bits, p.orig_width, p.orig_height, p.input_width, p.input_height,
                       p.fps.numerator, p.fps.denominator, p.coded_width, p.coded_height)
    out += struct.pack(">B", len(p.layout.grids))
    for grid, index in zip(p.layout.grids, p.layout.source_index):
        out += struct.pack(">BHHHHHHH", index, p.fused_channels[index], grid.channels, grid.height, grid.width,
                           grid.rows, grid.cols, grid.top)
    out += struct.pack(">H", p.fill_level)
    if not p.per_frame_range:
        out += struct.pack(">ff", *p.ranges[0])
    out += p.jde_id + p.model_id
    return bytes(out)


def segment_body(header: SegmentHeader) -> bytes:
    """The body of a segment's ``S`` unit (without a MAC); ``header.body`` is set to it."""
    check_params(header.params)
    keyed = header.stream_id is not None
    header.body = (struct.pack(">IId", header.index, header.first_frame, header.base_time)
                   + _pack_params(header.params, header.timestamps, keyed, header.skips)
                   + (header.stream_id if keyed else b""))
    return header.body


def segment_unit(header: SegmentHeader) -> bytes:
    """The ``S`` unit of a segment (``header.body`` is set to its body)."""
    return unit(SEGMENT, segment_body(header))


def check_params(p: StreamHeader) -> None:
    """The stream parameters of a segment, checked as a version-2 header's are."""
    probe = replace(p, num_frames=1, ranges=[(0.0, 1.0)] if p.per_frame_range else list(p.ranges),
                    per_frame_range=False)
    validate(probe)


class _Body:
    def __init__(self, body: bytes, what: str):
        self.body, self.pos, self.what = body, 0, what

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.body):
            raise BitstreamError(f"{self.what}: the unit ends inside a field")
        values = struct.unpack_from(fmt, self.body, self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.body):
            raise BitstreamError(f"{self.what}: the unit ends inside a field")
        self.pos += size
        return self.body[self.pos - size : self.pos]

    def rest(self) -> bytes:
        out = self.body[self.pos :]
        self.pos = len(self.body)
        return out

    def done(self) -> None:
        if self.pos != len(self.body):
            raise BitstreamError(f"{self.what}: {len(self.body) - self.pos} unexpected bytes at the end of the unit")


def parse_segment(body: bytes) -> SegmentHeader:
    """An ``S`` unit's body (a keyed one without its MAC), validated."""
    r = _Body(body, "segment header")
    index, first, base_time = r.take(">IId")
    method, split, codec, flags, qp, gop, intra = r.take(">BBBBbBH")
    bits, ow, oh, iw, ih, fnum, fden, cw, ch = r.take(">BHHHHIIHH")
    (ntensors,) = r.take(">B")
    records = [r.take(">BHHHHHHH") for _ in range(ntensors)]
    (fill,) = r.take(">H")
    if flags & ~(FLAG_PER_FRAME_RANGE | FLAG_TIMESTAMPS | FLAG_KEYED | FLAG_SKIPS):
        raise BitstreamError(f"segment header: unknown flags 0x{flags:02x}")
    per_frame = bool(flags & FLAG_PER_FRAME_RANGE)
    ranges = [] if per_frame else [tuple(float(v) for v in r.take(">ff"))]
    jde_id, model_id = r.raw(ID_BYTES), r.raw(ID_BYTES)
    stream_id = r.raw(STREAM_ID_BYTES) if flags & FLAG_KEYED else None
    r.done()
    if fden == 0 or fnum == 0:
        raise BitstreamError("segment header: invalid frame rate 0")
    try:
        grids = tuple(TileGrid(k, h, w, rows, cols, top) for (_, _, k, h, w, rows, cols, top) in records)
    except FcmError as exc:
        raise BitstreamError(f"segment header: invalid tile layout: {exc}") from None
    fused = {rec[0]: rec[1] for rec in records}
    if sorted(fused) != list(range(ntensors)):
        raise BitstreamError("segment header: tensor indices are not 0..T-1")
    params = StreamHeader(
        method=name_from_registry(METHODS, method, "method"), split=name_from_table(SPLIT_NAMES, split, "split"),
        codec=name_from_registry(CODECS, codec, "codec"), sample_bits=bits, qp=qp, gop=name_from_table(GOPS, gop, "GOP structure"),
        intra_period=intra, orig_width=ow, orig_height=oh, input_width=iw, input_height=ih, num_frames=1,
        fps=Fraction(fnum, fden), coded_width=cw, coded_height=ch, fused_channels=tuple(fused[i] for i in range(ntensors)),
        layout=FrameLayout(grids, tuple(rec[0] for rec in records)), ranges=ranges, fill_level=fill, jde_id=jde_id,
        model_id=model_id, per_frame_range=per_frame,
    )
    check_params(params)
    return SegmentHeader(index, first, params, base_time, bool(flags & FLAG_TIMESTAMPS), stream_id,
                         bool(flags & FLAG_SKIPS), body)


# ---------------------------------------------------------------------------- picture and ends
@dataclass
class FrameRecord:
    """What a picture unit says about one frame: when it was captured (seconds since the epoch, the
    encoder's clock), with per-frame ranges its quantisation range and, in a segment with the skips
    flag, how many frames of the source the encoder skipped just before it (None without the flag)."""

    capture_time: float
    range: tuple[float, float] | None = None
    skipped: int | None = None


def picture_unit(header: SegmentHeader, records: list[FrameRecord], payload: bytes) -> bytes:
    """A picture unit: the frames it completes (capture time in ms after the segment's base time, when
    the segment has timestamps; the frames skipped before each, when the segment has the skips flag
    and one of them follows a skip; per-frame ranges), then the inner codec's bytes."""
    return inner_unit(PICTURE, picture_body(header, records, payload))


def picture_body(header: SegmentHeader, records: list[FrameRecord], payload: bytes) -> bytes:
    per_frame_range = header.per_frame_range
    skips = header.skips and any(rec.skipped for rec in records)
    body = bytearray(varint(2 * len(records) + skips if header.skips else len(records)))
    for rec in records:
        if header.timestamps:
            body += varint(max(0, round((rec.capture_time - header.base_time) * 1000)))
        if skips:
            body += varint(rec.skipped)
        if per_frame_range:
            body += struct.pack(">ff", *rec.range)
    return bytes(body) + payload


@dataclass
class Picture:
    records: list[FrameRecord]
    payload: bytes


def parse_picture(body: bytes, header: SegmentHeader) -> Picture:
    try:
        n, pos = _read_varint(body, 0)
        skips = False
        if header.skips and n is not None:
            n, skips = n >> 1, bool(n & 1)
        records = []
        for _ in range(n if n is not None else 0):
            time_ = 0.0
            if header.timestamps:
                ms, pos = _read_varint(body, pos, 8)
                if ms is None:
                    raise ValueError
                time_ = header.base_time + ms / 1000
            skipped = None
            if header.skips:
                skipped = 0
                if skips:
                    skipped, pos = _read_varint(body, pos)
                    if skipped is None:
                        raise ValueError
                    if skipped > MAX_SKIPPED:
                        raise BitstreamError(f"picture unit: {skipped} frames skipped before one frame (at most "
                                             f"{MAX_SKIPPED})")
            rng = None
            if header.per_frame_range:
                if pos + 8 > len(body):
                    raise ValueError
                rng = tuple(float(v) for v in struct.unpack_from(">ff", body, pos))
                check_range(*rng, len(records))
                pos += 8
            records.append(FrameRecord(time_, rng, skipped))
    except BitstreamError:
        raise
    except ValueError:
        raise BitstreamError("picture unit: the unit ends inside a field") from None
    if n is None:
        raise BitstreamError("picture unit: empty")
    return Picture(records, body[pos:])


def segment_end_unit(segment: int, frames: int, recon_hash: bytes) -> bytes:
    return inner_unit(SEGMENT_END, segment_end_body(segment, frames, recon_hash))


def segment_end_body(segment: int, frames: int, recon_hash: bytes) -> bytes:
    return struct.pack(">II", segment, frames) + recon_hash


def parse_segment_end(body: bytes) -> tuple[int, int, bytes]:
    r = _Body(body, "segment end")
    segment, frames = r.take(">II")
    digest = r.raw(ID_BYTES)
    r.done()
    return segment, frames, digest


def stream_end_unit(frames: int, segments: int) -> bytes:
    return unit(STREAM_END, stream_end_body(frames, segments))


def stream_end_body(frames: int, segments: int) -> bytes:
    return struct.pack(">II", frames, segments)


def parse_stream_end(body: bytes) -> tuple[int, int]:
    r = _Body(body, "stream end")
    out = r.take(">II")
    r.done()
    return out


def segment_hash(header: SegmentHeader):
    """The hash behind a segment's reconstruction hash: SHA-256 over its header's body, then for each
    frame its range (with per-frame ranges: :func:`hash_range`) and its decoded samples
    (``bitstream.hash_frame``); the first 16 bytes are kept. Everything that shapes the decoder's
    output is inside: a re-signed range changes the hash."""
    return hashlib.sha256(header.body)


def hash_range(digest, record: FrameRecord) -> None:
    """What a picture unit says of a frame, into its segment's hash: its range (per-frame ranges) and,
    with the skips flag, the frames skipped before it (both change the tracks)."""
    if record.range is not None:
        digest.update(struct.pack(">ff", *record.range))
    if record.skipped is not None:
        digest.update(struct.pack(">I", record.skipped))


def check_range(lo: float, hi: float, frame: int) -> None:
    """A per-frame range as the decoder computes with it: finite float32 ends, a float32 width."""
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo and hi - lo <= FLOAT32_MAX):
        raise BitstreamError(f"the quantisation range [{lo}, {hi}] of frame {frame + 1} is empty or not finite")


def summarize(data: bytes) -> StreamHeader:
    """A complete stored stream in one :class:`StreamHeader` (the first segment's parameters, the
    frame count, every range), strictly: any damage, a missing unit or a missing stream end is a
    :class:`BitstreamError`. ``header_size`` counts every byte that is not inner-codec payload (the MACs
    of a keyed stream too: they are read past here, and checked by the decoder, which has the key)."""
    reader = UnitReader()
    events = reader.feed(data) + reader.end()
    first: SegmentHeader | None = None
    frames = payload = segments = 0
    position = 0  # frames of the source covered: the frames coded and those skipped before them
    ranges: list[tuple[float, float]] = []
    current: SegmentHeader | None = None
    in_segment = 0
    ended = None
    keyed = False
    for event in events:
        if isinstance(event, Damage):
            raise BitstreamError(f"damaged stream at byte {event.offset}: {event.why}")
        if ended is not None:
            raise BitstreamError("units after the stream end")
        if event.kind == SEGMENT:
            keyed = is_keyed_segment(event.body)
        if keyed:
            if len(event.body) < TAG_BYTES:
                raise BitstreamError(f"a unit of a keyed stream at byte {event.offset} is shorter than its MAC")
            event = replace(event, body=event.body[:-TAG_BYTES])
        if event.kind == SEGMENT:
            if current is not None:
                raise BitstreamError(f"segment {current.index} has no end unit")
            current = parse_segment(event.body)
            if current.first_frame != position or current.index != segments:
                raise BitstreamError(f"segment {current.index} starts at frame {current.first_frame}, expected "
                                     f"segment {segments} at frame {position}")
            skipped = 0
            first = first or current
            segments += 1
            in_segment = 0
        elif event.kind == STREAM_END:
            if current is not None:
                raise BitstreamError(f"segment {current.index} has no end unit")
            ended = parse_stream_end(event.body)
        elif current is None:
            raise BitstreamError("a unit outside a segment")
        elif event.kind == PICTURE:
            picture = parse_picture(event.body, current)
            in_segment += len(picture.records)
            skipped += sum(r.skipped or 0 for r in picture.records)
            payload += len(picture.payload)
            if current.per_frame_range:
                ranges.extend(r.range for r in picture.records)
        elif event.kind == SEGMENT_END:
            index, count, _ = parse_segment_end(event.body)
            if index != current.index or count != in_segment:
                raise BitstreamError(f"segment {current.index}: its end unit does not match its pictures")
            frames += count
            position += count + skipped
            current = None
    if first is None:
        raise BitstreamError("not an fcm bitstream (no segment)")
    if current is not None or ended is None:
        raise BitstreamError("truncated bitstream: the stream end unit is missing")
    if ended != (position, segments):
        raise BitstreamError(f"the stream end says {ended[0]} frames in {ended[1]} segments, the stream has "
                             f"{position} in {segments}")
    summary = replace(first.params, num_frames=frames, ranges=ranges if first.per_frame_range else first.params.ranges,
                      payload_length=payload)
    summary.header_size = len(data) - payload
    summary.version = VERSION
    return summary
