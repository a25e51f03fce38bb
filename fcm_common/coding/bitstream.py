"""The fcm feature bitstream: a self-describing header, then the inner codec's payload.

``docs/bitstream.md`` specifies it byte by byte. The header carries everything the decoder needs
(no side files): method, split, codec (by the codes their classes register), frame sizes, frame count and rate, the tile layout and
channel counts, the quantisation ranges, identifiers of the JDE weights and of any learned model,
a hash of the reconstructed frames (so the decoder can prove it decoded what the encoder meant),
and a CRC-32 over the header. Every field is validated on read; any inconsistency is a
:class:`BitstreamError` naming the field.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from fractions import Fraction

import numpy as np

from fcm_common.coding.codecs import CODECS
from fcm_common.coding.identifiers import ID_BYTES, hex_id
from fcm_common.coding.methods import METHODS
from fcm_common.coding.packing import FrameLayout, TileGrid
from fcm_common.coding.segments import summarize
from fcm_common.coding.stream_header import (
    GOPS,
    SAMPLE_FORMATS,
    VERSION,
    BitstreamError,
    StreamHeader,
    name_from_registry,
    name_from_table,
    validate,
)
from fcm_common.core.errors import FcmError
from fcm_common.model.splits import SPLIT_CODES, SPLIT_NAMES

MAGIC = b"FCMB"
FLAG_CHUNKED = 0x01  # the inner stream was encoded in intra-period chunks and joined (VTM parcat)
FLAG_PER_FRAME_RANGE = 0x02  # one quantisation range per frame instead of one per sequence
KNOWN_FLAGS = FLAG_CHUNKED | FLAG_PER_FRAME_RANGE


def frames_hash(header: StreamHeader) -> hashlib._Hash:
    """The hash behind ``recon_hash``: SHA-256 over the header fields up to the model identifier
    (everything that shapes the decoder's output: sizes, layout, channel counts, ranges, fill level,
    identifiers), then over the decoded frames (:func:`hash_frame`); the first 16 bytes are kept.
    The CRC only proves the header was not damaged by accident; this proves it is the header the
    frames were made with (a re-signed header with other ranges is refused)."""
    return hashlib.sha256(_signed_fields(header))


def hash_frame(digest, frame) -> None:
    """Add one decoded frame to a ``frames_hash`` (its samples in little-endian order)."""
    digest.update(np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("<")).tobytes())


def digest16(h) -> bytes:
    return h.digest()[:ID_BYTES]


# the stream parameters, their checks and errors live in ``stream_header`` (shared with ``segments``);
# they are named here too, where the version-2 format's readers look for them
__all__ = ["GOPS", "ID_BYTES", "SAMPLE_FORMATS", "VERSION", "BitstreamError", "StreamHeader", "digest16", "frames_hash",
           "hash_frame", "hex_id", "parse", "serialize", "validate"]


# ---------------------------------------------------------------------------------------- writing
def serialize(header: StreamHeader, payload: bytes) -> bytes:
    """Header + payload as one byte string (``header.payload_length`` is set from the payload)."""
    header.payload_length = len(payload)
    validate(header)
    out = bytearray(_signed_fields(header))
    out += header.recon_hash
    out += struct.pack(">Q", len(payload))
    out += struct.pack(">I", zlib.crc32(bytes(out)))
    header.header_size = len(out)
    return bytes(out) + payload


def _signed_fields(header: StreamHeader) -> bytes:
    """The header bytes from the magic number to the model identifier (what ``recon_hash`` covers)."""
    flags = (FLAG_CHUNKED if header.chunked else 0) | (FLAG_PER_FRAME_RANGE if header.per_frame_range else 0)
    out = bytearray()
    out += MAGIC
    out += struct.pack(
        ">BBBBBBbBH",
        VERSION,
        METHODS[header.method].code,
        SPLIT_CODES[header.split],
        CODECS[header.codec].code,
        flags,
        header.sample_bits,
        header.qp,
        GOPS.index(header.gop),
        header.intra_period,
    )
    out += struct.pack(
        ">HHHHIIIHH",
        header.orig_width,
        header.orig_height,
        header.input_width,
        header.input_height,
        header.num_frames,
        header.fps.numerator,
        header.fps.denominator,
        header.coded_width,
        header.coded_height,
    )
    out += struct.pack(">B", len(header.layout.grids))
    for grid, index in zip(header.layout.grids, header.layout.source_index):
        out += struct.pack(
            ">BHHHHHHH",
            index,
            header.fused_channels[index],
            grid.channels,
            grid.height,
            grid.width,
            grid.rows,
            grid.cols,
            grid.top,
        )
    out += struct.pack(">H", header.fill_level)
    for lo, hi in header.ranges:
        out += struct.pack(">ff", lo, hi)
    out += header.jde_id + header.model_id
    return bytes(out)


# ---------------------------------------------------------------------------------------- reading
class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise BitstreamError(f"truncated bitstream: header ends inside the {what} field (byte {self.pos})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise BitstreamError(f"truncated bitstream: header ends inside the {what} field (byte {self.pos})")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out


def parse(data: bytes) -> tuple[StreamHeader, bytes]:
    """Parse and validate a bitstream; returns the header and the inner payload. A version-3 stream
    (segments) gives a header that sums it up (``version`` 3) and, as payload, the whole stream."""
    if data[:4] == MAGIC and len(data) > 4 and data[4] == 3:
        return summarize(data), data
    if len(data) < len(MAGIC):
        raise BitstreamError("truncated bitstream: shorter than the magic number")
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an fcm bitstream (bad magic number)")
    r = _Reader(data)
    r.pos = len(MAGIC)
    version, method, split, codec, flags, bits, qp, gop, intra = r.take(">BBBBBBbBH", "stream parameters")
    if version != VERSION:
        raise BitstreamError(f"unsupported bitstream version {version} (this fcm reads versions {VERSION} and 3)")
    ow, oh, iw, ih, nframes, fps_num, fps_den, cw, ch = r.take(">HHHHIIIHH", "frame geometry")
    (ntensors,) = r.take(">B", "tensor count")
    grids, fused = [], {}
    for t in range(ntensors):
        index, c, k, h, w, rows, cols, top = r.take(">BHHHHHHH", f"tensor {t} layout")
        grids.append((index, c, k, h, w, rows, cols, top))
    (fill,) = r.take(">H", "fill level")
    nranges = nframes if flags & FLAG_PER_FRAME_RANGE else 1
    if nranges > len(data):  # cannot be: each range takes 8 bytes
        raise BitstreamError("truncated bitstream: header ends inside the quantisation ranges")
    ranges = [r.take(">ff", "quantisation range") for _ in range(nranges)]
    jde_id = r.raw(ID_BYTES, "JDE weights identifier")
    model_id = r.raw(ID_BYTES, "model identifier")
    recon = r.raw(ID_BYTES, "reconstruction hash")
    (payload_length,) = r.take(">Q", "payload length")
    crc_end = r.pos
    (crc,) = r.take(">I", "header CRC")
    if zlib.crc32(data[:crc_end]) != crc:
        raise BitstreamError("header CRC mismatch: the bitstream header is corrupted")

    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"unknown flags 0x{flags:02x} in the header")
    try:
        layout_grids = tuple(TileGrid(k, h, w, rows, cols, top) for (_, _, k, h, w, rows, cols, top) in grids)
    except FcmError as exc:
        raise BitstreamError(f"invalid tile layout in the header: {exc}") from None
    for index, c, *_ in grids:
        fused[index] = c
    if sorted(fused) != list(range(ntensors)):
        raise BitstreamError("invalid tile layout in the header: tensor indices are not 0..T-1")
    if fps_den == 0 or fps_num == 0:
        raise BitstreamError("invalid frame rate 0 in the header")
    if math.gcd(fps_num, fps_den) != 1:  # one way to write each rate: the header's bytes are hashed
        raise BitstreamError(f"invalid frame rate {fps_num}/{fps_den} in the header (not in lowest terms)")
    header = StreamHeader(
        method=name_from_registry(METHODS, method, "method"),
        split=name_from_table(SPLIT_NAMES, split, "split"),
        codec=name_from_registry(CODECS, codec, "codec"),
        sample_bits=bits,
        qp=qp,
        gop=name_from_table(GOPS, gop, "GOP structure"),
        intra_period=intra,
        orig_width=ow,
        orig_height=oh,
        input_width=iw,
        input_height=ih,
        num_frames=nframes,
        fps=Fraction(fps_num, fps_den),
        coded_width=cw,
        coded_height=ch,
        fused_channels=tuple(fused[i] for i in range(ntensors)),
        layout=FrameLayout(layout_grids, tuple(g[0] for g in grids)),
        ranges=[(float(lo), float(hi)) for lo, hi in ranges],
        fill_level=fill,
        jde_id=jde_id,
        model_id=model_id,
        recon_hash=recon,
        per_frame_range=bool(flags & FLAG_PER_FRAME_RANGE),
        chunked=bool(flags & FLAG_CHUNKED),
        payload_length=payload_length,
        header_size=r.pos,
    )
    validate(header)
    payload = data[r.pos :]
    if len(payload) < payload_length:
        raise BitstreamError(f"truncated bitstream: payload has {len(payload)} of {payload_length} bytes")
    if len(payload) > payload_length:
        raise BitstreamError(f"{len(payload) - payload_length} unexpected bytes after the payload")
    return header, payload


