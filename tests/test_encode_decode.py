"""Whole pipelines: fcm-encode -> bitstream -> fcm-decode, with random-weight JDE (320x192 input)."""

import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from fcm_common.coding import bitstream
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import RangeSpec, dequantize, float32_range, quantize
from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_source
from fcm_common.model.jde import load_jde
from fcm_common.model.preprocess import network_inputs
from fcm_common.tracking.sequence import SequenceTracker, track_source
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import EncodeSettings, encode_sequence

CPU = torch.device("cpu")


def encode(model, seq, **kw):
    settings = EncodeSettings(**{"split": "dn53", "codec": "lossless", "range_spec": RangeSpec.parse("frame"), **kw})
    return encode_sequence(open_source(seq), model, AnchorMethod(), settings, CPU)


def decode(model, data, **kw):
    header, payload = bitstream.parse(data)
    return decode_stream(header, payload, len(data), model, CPU, **kw)


def same_detections(a: SequenceTracker, b: SequenceTracker) -> bool:
    return len(a.frame_detections) == len(b.frame_detections) and all(
        np.array_equal(x, y) for x, y in zip(a.frame_detections, b.frame_detections)
    )


@pytest.fixture(scope="module")
def uncompressed(small_jde, small_sequence):
    return track_source(small_jde, open_source(small_sequence), CPU)


def quantised_reference(model, seq, split) -> SequenceTracker:
    """The run that a lossless 10-bit codec must reproduce: quantise and dequantise in-process."""
    source = open_source(seq)
    ref = SequenceTracker(source.fps)
    with torch.inference_mode():
        for batch, boxes in network_inputs(source, model.input_width, model.input_height):
            feats = model.forward_part1(batch, split)
            lo, hi = float32_range(min(float(f.min()) for f in feats), max(float(f.max()) for f in feats))
            back = [dequantize(quantize(f, lo, hi), lo, hi) for f in feats]
            ref.push(model.forward_part2(back, split)[0], boxes[0])
    return ref


@pytest.mark.parametrize("split", ["dn53", "alt1", "backbone"])
def test_lossless_float32_reproduces_the_uncompressed_run(small_jde, small_sequence, uncompressed, split):
    data, report = encode(small_jde, small_sequence, split=split, sample_bits=32)
    assert report.frames == 4
    out = decode(small_jde, data)
    assert uncompressed.detections > 0 and len(uncompressed.rows) >= 4  # tracks to compare (conftest.small_sequence)
    assert same_detections(out.tracker, uncompressed)
    assert out.tracker.rows == uncompressed.rows


@pytest.mark.parametrize("split", ["dn53", "backbone"])
def test_lossless_10_bit_reproduces_in_process_quantisation(small_jde, small_sequence, split):
    data, _ = encode(small_jde, small_sequence, split=split)
    out = decode(small_jde, data, keep_features=True)
    ref = quantised_reference(small_jde, small_sequence, split)
    assert ref.rows, "the quantised run tracks something"
    assert same_detections(out.tracker, ref) and out.tracker.rows == ref.rows
    # the reconstructed split tensors are within one quantisation step of the originals
    source = open_source(small_sequence)
    batch, _ = next(network_inputs(source, 320, 192))
    with torch.inference_mode():
        feats = small_jde.forward_part1(batch, split)
    lo, hi = bitstream.parse(data)[0].range_of(0)
    for f, layer in zip(feats, out.features):
        err = f[0].numpy() - out.features[layer][0]
        assert err.min() > -1e-5 and err.max() < (hi - lo) / 1023 + 1e-5


def test_sequence_and_fixed_ranges(small_jde, small_sequence):
    data, report = encode(small_jde, small_sequence, range_spec=RangeSpec.parse("sequence"))
    header, _ = bitstream.parse(data)
    assert not header.per_frame_range and len(header.ranges) == 1
    per_frame, _ = encode(small_jde, small_sequence)
    assert bitstream.parse(per_frame)[0].per_frame_range
    lo, hi = header.ranges[0]
    assert all(lo <= a and b <= hi for a, b in bitstream.parse(per_frame)[0].ranges)
    fixed, _ = encode(small_jde, small_sequence, range_spec=RangeSpec.parse("tvd"))
    assert bitstream.parse(fixed)[0].ranges == [float32_range(-4.722218990325928, 48.58344268798828)]
    assert decode(small_jde, data).header.num_frames == 4


@pytest.mark.slow
def test_vvenc_end_to_end(small_jde, small_sequence, uncompressed):
    data, report = encode(small_jde, small_sequence, codec="vvenc", qp=22, preset="faster", intra_period=4)
    assert report.kbps == pytest.approx(len(data) * 8 * 30 / 1000 / 4)
    assert report.header_bytes < 300 and len(data) < 200_000
    out = decode(small_jde, data)
    assert out.tracker.frames_done == 4 and out.tracker.detections > 0
    # a lower QP costs more
    data_hq, _ = encode(small_jde, small_sequence, codec="vvenc", qp=12, preset="faster", intra_period=4)
    assert len(data_hq) > len(data)


def test_tampered_payload_is_caught_by_the_reconstruction_hash(small_jde, small_sequence):
    from fcm_common.coding import segments

    data, _ = encode(small_jde, small_sequence, split="backbone")
    units = segments.UnitReader().feed(data)
    header = segments.parse_segment(units[0].body)
    forged = b""
    for u in units:
        if u.kind == segments.PICTURE:  # one sample changed by one level, the unit re-signed
            picture = segments.parse_picture(u.body, header)
            raw = bytearray(zlib.decompress(picture.payload))
            raw[1000:1002] = (int.from_bytes(raw[1000:1002], "little") ^ 1).to_bytes(2, "little")
            forged += segments.picture_unit(header, picture.records, zlib.compress(bytes(raw)))
        elif u.kind == segments.SEGMENT_END:
            forged += segments.inner_unit(u.kind, u.body)
        else:
            forged += segments.unit(u.kind, u.body)
    with pytest.raises(FcmError, match="reconstruction hash mismatch"):
        decode(small_jde, forged)


def test_version_2_streams_still_decode(small_jde, small_sequence):
    """A stream written by fcm before segmented streams (version 2: one header, one payload) decodes to
    the tracks of the same frames coded as version 3."""
    from fcm_common.coding.codecs import make_codec
    from fcm_common.coding.segments import FrameRecord  # noqa: F401

    data, _ = encode(small_jde, small_sequence, split="alt1")
    summary, _ = bitstream.parse(data)
    new = decode(small_jde, data)
    # the same frames as version 2: the lossless payload of the one segment, hashed the version-2 way
    from fcm_common.coding import segments

    units = segments.UnitReader().feed(data)
    payload = b"".join(segments.parse_picture(u.body, segments.parse_segment(units[0].body)).payload
                       for u in units if u.kind == segments.PICTURE)
    header = replace(summary, version=2)
    digest = bitstream.frames_hash(header)
    for frame in make_codec("lossless").decode(payload, header.coded_width, header.coded_height, header.num_frames,
                                               None, header.sample_bits):
        bitstream.hash_frame(digest, frame)
    header.recon_hash = bitstream.digest16(digest)
    old = bitstream.serialize(header, payload)
    assert old[4] == 2
    parsed, old_payload = bitstream.parse(old)
    assert parsed.version == 2 and parsed.num_frames == summary.num_frames
    legacy = decode_stream(parsed, old_payload, len(old), small_jde, CPU).tracker
    assert new.tracker.rows and legacy.rows == new.tracker.rows and legacy.detections == new.tracker.detections > 0
    assert all(np.array_equal(a, b) for a, b in zip(legacy.frame_detections, new.tracker.frame_detections))


def test_decoder_refuses_other_weights(small_jde, small_sequence, small_cfg):
    data, _ = encode(small_jde, small_sequence)
    other = load_jde(None, seed=1, cfg=small_cfg)
    with pytest.raises(FcmError, match="encoded with JDE weights"):
        decode(other, data)
    full = load_jde(None)
    with pytest.raises(FcmError, match="made for a 320x192 network input"):
        decode(full, data)
