"""Property tests (hypothesis): header parsing and validation under hostile bytes, and the round
trips of packing and quantisation, over generated inputs rather than a few chosen ones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bitstream import PAYLOAD, make_header, recrc

from fcm_common.coding import bitstream
from fcm_common.coding.bitstream import BitstreamError, parse, serialize
from fcm_common.coding.codecs import CodecError, check_decoded_frame
from fcm_common.coding.packing import anchor_layout, pack, single_tensor_layout, unpack
from fcm_common.coding.quantization import MAX_LEVEL, dequantize, quantize

HEADERS = [("anchor", "dn53", False), ("anchor", "alt1", True), ("advmsfc", "backbone", False)]


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(HEADERS), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4))
def test_a_forged_header_is_refused_or_parses_to_a_valid_header(which, edits):
    """Any header bytes with a re-signed CRC: parse raises BitstreamError, or gives a header that
    passes validation and serialises back to the same bytes (nothing else, never another exception)."""
    method, split, per_frame = which
    data = bytearray(serialize(make_header(method, split, per_frame=per_frame, k=96), PAYLOAD))
    size = len(data) - len(PAYLOAD)
    for at, flip in edits:
        data[4 + at % (size - 8)] ^= flip  # anywhere but the magic number and the CRC
    stream = recrc(bytes(data), size)
    try:
        header, payload = parse(stream)
    except BitstreamError:
        return
    assert serialize(header, payload) == stream


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_refused_cleanly(blob):
    """Random bytes are never a stream (a version-3 one needs a sync marker and CRCs, a version-2 one
    its CRC): parse refuses them with a BitstreamError and a message, never another exception."""
    for data in (blob, b"FCMB" + blob, b"FCMB\x02" + blob, b"FCMB\x03" + blob):
        with pytest.raises(BitstreamError) as refused:
            parse(data)
        assert str(refused.value)


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["ranges", "fill_level", "orig_width", "num_frames", "fps", "qp"]), which=st.sampled_from(HEADERS))
def test_the_reconstruction_hash_covers_the_fields_that_shape_the_output(field, which):
    method, split, per_frame = which
    header = make_header(method, split, frames=3, per_frame=per_frame, k=96)
    changed = {
        "ranges": [(lo * 2, hi * 2) for lo, hi in header.ranges],
        "fill_level": (header.fill_level + 1) % 1024,
        "orig_width": header.orig_width + 2,
        "num_frames": header.num_frames,  # replaced below with consistent ranges
        "fps": header.fps * 2,
        "qp": header.qp - 1,
    }[field]
    other = replace(header, **{field: changed})
    if field == "num_frames":
        other = replace(header, num_frames=4, ranges=header.ranges + header.ranges[-1:] if per_frame else header.ranges)
    assert bitstream.frames_hash(header).digest() != bitstream.frames_hash(other).digest()
    assert bitstream.frames_hash(header).digest() == bitstream.frames_hash(replace(header)).digest()


shapes = st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(1, 12))


@settings(max_examples=150, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_pack_then_unpack_gives_the_tensors_back(shape_list, seed):
    rng = np.random.default_rng(seed)
    if len(shape_list) == 1:
        c, h, w = shape_list[0]
        layout = single_tensor_layout(c, h, w)
    else:
        # the anchor stacks tensors of one width family: make every width divide the widest
        base_w = shape_list[0][2]
        shape_list = [(c, h, base_w) for c, h, _ in shape_list]
        layout = anchor_layout(shape_list)
    tensors = [rng.integers(0, 1024, size=s, dtype=np.uint16) for s in shape_list]
    frame = pack(tensors, layout, fill=7)
    assert frame.shape == (layout.height, layout.width)
    for original, back in zip(tensors, unpack(frame, layout)):
        np.testing.assert_array_equal(original, back)
    # what is not a tensor's tile is the fill level
    assert int((frame == 7).sum()) >= frame.size - sum(int(np.prod(s)) for s in shape_list)


@settings(max_examples=200, deadline=None)
@given(lo=st.floats(-1e4, 1e4), width=st.floats(1e-3, 1e4), values=st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_quantisation_round_trip_is_within_one_step(lo, width, values):
    lo, hi = float(np.float32(lo)), float(np.float32(lo + width))
    if not hi > lo:
        return
    x = torch.tensor([lo + v * (hi - lo) for v in values], dtype=torch.float32).clamp(lo, hi)
    q = quantize(x, lo, hi)
    assert int(q.min()) >= 0 and int(q.max()) <= MAX_LEVEL
    back = dequantize(q, lo, hi)
    step = (hi - lo) / MAX_LEVEL
    assert float((back - x).abs().max()) <= step * 1.001 + 1e-6 * max(abs(lo), abs(hi))
    # monotonic: a larger value never gets a smaller level
    order = torch.argsort(x)
    assert bool((q[order].diff() >= 0).all())


@settings(max_examples=100, deadline=None)
@given(top=st.integers(1024, 65535), at=st.integers(0, 63))
def test_decoded_samples_above_ten_bits_are_refused(top, at):
    frame = np.zeros((8, 8), np.uint16)
    check_decoded_frame(frame, 10, 0)
    frame.flat[at] = top
    try:
        check_decoded_frame(frame, 10, 3)
    except CodecError as exc:
        assert "frame 3" in str(exc) and str(top) in str(exc)
    else:
        raise AssertionError("accepted a sample above 1023")
    floats = np.zeros((8, 8), np.float32)
    floats.flat[at] = np.nan
    try:
        check_decoded_frame(floats, 32, 0)
    except CodecError:
        pass
    else:
        raise AssertionError("accepted a NaN sample")
