import struct
import zlib
from dataclasses import replace
from fractions import Fraction

import pytest

from fcm_common.coding.bitstream import BitstreamError, StreamHeader, parse, serialize
from fcm_common.coding.frame_coding import padded_size
from fcm_common.coding.packing import anchor_layout, single_tensor_layout
from fcm_common.model.splits import get_split

PAYLOAD = bytes(range(256)) * 3
TENSOR0 = 39  # byte offset of the first tensor record


def make_header(method="anchor", split="dn53", frames=3, per_frame=False, k=None) -> StreamHeader:
    sp = get_split(split)
    shapes = sp.shapes(320, 192)
    if method == "anchor":
        layout, fused = anchor_layout(shapes), tuple(c for c, _, _ in shapes)
    else:
        coarse = shapes[sp.strides.index(32)]
        layout, fused = single_tensor_layout(k or sp.fused_channels, coarse[1], coarse[2]), (sp.fused_channels,)
    cw, ch = padded_size(layout)
    return StreamHeader(
        method=method, split=split, codec="vvenc", sample_bits=10, qp=37, gop="ld", intra_period=64,
        orig_width=1920, orig_height=1080, input_width=320, input_height=192, num_frames=frames,
        fps=Fraction(50), coded_width=cw, coded_height=ch, fused_channels=fused, layout=layout,
        ranges=[(-1.5 - i, 2.25 + i) for i in range(frames)] if per_frame else [(-4.722218990325928, 48.58344268798828)],
        fill_level=91, jde_id=bytes(range(16)), model_id=bytes(16) if method == "anchor" else b"\x07" * 16,
        recon_hash=b"\xab" * 16, per_frame_range=per_frame,
    )


def recrc(data: bytes, header_size: int) -> bytes:
    body = data[: header_size - 4]
    return body + struct.pack(">I", zlib.crc32(body)) + data[header_size:]


@pytest.mark.parametrize("method, split, per_frame", [("anchor", "dn53", False), ("anchor", "alt1", True), ("advmsfc", "backbone", False)])
def test_round_trip(method, split, per_frame):
    header = make_header(method, split, per_frame=per_frame, k=96)
    data = serialize(header, PAYLOAD)
    parsed, payload = parse(data)
    assert payload == PAYLOAD
    assert parsed.header_size == header.header_size == len(data) - len(PAYLOAD)
    for name in ("method", "split", "codec", "qp", "gop", "intra_period", "num_frames", "fps", "coded_width",
                 "coded_height", "fused_channels", "layout", "fill_level", "jde_id", "model_id", "recon_hash",
                 "per_frame_range", "chunked"):
        assert getattr(parsed, name) == getattr(header, name), name
    import numpy as np

    assert parsed.ranges == [tuple(float(np.float32(v)) for v in r) for r in header.ranges]  # stored as float32


def test_header_size_is_reported():
    header = make_header()
    serialize(header, PAYLOAD)
    assert header.header_size == 39 + 3 * 15 + 2 + 8 + 48 + 8 + 4
    per_frame = make_header(per_frame=True, frames=10)
    serialize(per_frame, PAYLOAD)
    assert per_frame.header_size == header.header_size + 9 * 8


def test_every_corrupted_header_byte_is_caught():
    data = serialize(make_header(per_frame=True), PAYLOAD)
    size = len(data) - len(PAYLOAD)
    for i in range(size):
        for flip in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(BitstreamError):
                parse(bytes(bad))


def test_every_truncation_is_caught():
    data = serialize(make_header(), PAYLOAD)
    for n in range(len(data)):
        with pytest.raises(BitstreamError) as info:
            parse(data[:n])
        assert "truncated" in str(info.value) or "magic" in str(info.value)


def test_extra_bytes_after_the_payload():
    with pytest.raises(BitstreamError, match="unexpected bytes after the payload"):
        parse(serialize(make_header(), PAYLOAD) + b"\x00")


def test_not_an_fcm_stream():
    with pytest.raises(BitstreamError, match="bad magic"):
        parse(b"\x00\x00\x01\x42" + bytes(100))


def _patch(offset: int, fmt: str, value) -> bytes:
    data = bytearray(serialize(make_header(), PAYLOAD))
    size = len(data) - len(PAYLOAD)
    struct.pack_into(fmt, data, offset, value)
    return recrc(bytes(data), size)


@pytest.mark.parametrize(
    "offset, fmt, value, message",
    [
        (4, ">B", 1, "unsupported bitstream version 1"),
        (5, ">B", 9, "invalid method code 9"),
        (6, ">B", 3, "invalid split code 3"),
        (7, ">B", 5, "invalid codec code 5"),
        (8, ">B", 0x80, "unknown flags"),
        (9, ">B", 12, "invalid sample format"),
        (10, ">b", 70, "invalid QP 70"),
        (11, ">B", 3, "invalid GOP structure code 3"),
        (12, ">H", 0, "invalid intra period 0"),
        (18, ">H", 330, "invalid network input size"),
        (22, ">I", 0, "no frames"),
        (30, ">I", 0, "invalid frame rate"),
        (34, ">H", 648, "does not fit the"),
        (TENSOR0 + 1, ">H", 128, "256 coded channels, expected 1..128"),
        (TENSOR0 + 3, ">H", 300, "cannot hold 300 channels"),
        (TENSOR0 + 3, ">H", 0, "0 coded channels"),
        (TENSOR0 + 3, ">H", 200, "the anchor codes all 256 channels"),
        (TENSOR0 + 9, ">H", 2, "invalid tile layout"),
        (TENSOR0 + 13, ">H", 8, "a sub-frame starts at row 8"),
        (TENSOR0, ">B", 5, "tensor indices"),
    ],
)
def test_inconsistent_fields_with_a_valid_crc(offset, fmt, value, message):
    with pytest.raises(BitstreamError) as info:
        parse(_patch(offset, fmt, value))
    assert message in str(info.value)


def test_inconsistent_ranges_and_identifiers():
    header = make_header()
    data = bytearray(serialize(header, PAYLOAD))
    size = len(data) - len(PAYLOAD)
    range_at = TENSOR0 + 3 * 15 + 2
    struct.pack_into(">ff", data, range_at, 5.0, 1.0)
    with pytest.raises(BitstreamError, match="range 0 .* is empty"):
        parse(recrc(bytes(data), size))
    with pytest.raises(BitstreamError, match="must name its model"):
        serialize(replace(make_header("advmsfc", "backbone", k=64), model_id=bytes(16)), PAYLOAD)
    with pytest.raises(BitstreamError, match="has no learned model"):
        serialize(replace(header, model_id=b"\x01" * 16), PAYLOAD)
    with pytest.raises(BitstreamError, match="float32 samples can only be carried by the lossless codec"):
        serialize(replace(header, sample_bits=32), PAYLOAD)
