"""Registries: methods and codecs are known from their classes only (codes, options, stream format)."""

import contextlib
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fcm_common.cli.options import SPLIT
from fcm_common.coding.bitstream import BitstreamError, StreamHeader, parse, serialize
from fcm_common.coding.codecs import CODECS, CodecChoice, decoder_codec, make_codec
from fcm_common.coding.frame_coding import padded_size
from fcm_common.coding.methods import METHODS, FeatureMethod, method_for_encoding, register_method
from fcm_common.coding.packing import FrameLayout, anchor_layout, single_tensor_layout
from fcm_common.core.errors import FcmError
from fcm_common.model.splits import SPLITS
from fcm_ctc.cli import run as ctc_run
from fcm_ctc.cli_calibrate import main as calibrate_main
from fcm_decoder.cli import main as decode_main
from fcm_encoder.cli import main as encode_main


def test_codes_are_those_of_the_bitstream_spec():
    assert {cls.name: cls.code for cls in METHODS} == {"anchor": 0, "advmsfc": 1}
    assert {cls.name: cls.code for cls in CODECS} == {"lossless": 0, "vvenc": 1, "vtm": 2}
    assert METHODS.by_code(1).name == "advmsfc" and CODECS.by_code(3) is None
    with pytest.raises(FcmError, match="unknown codec 'x265' \\(choose from lossless, vtm, vvenc\\)"):
        make_codec("x265")


def _params(command) -> set[str]:
    return {p.name for p in command.params}


def test_commands_take_every_registered_option():
    for cls in METHODS:
        assert {o.name for o in cls.options} <= _params(encode_main)
        assert {o.name for o in cls.decode_options} <= _params(decode_main)
    for cls in CODECS:
        assert {o.name for o in cls.options} <= _params(encode_main) & _params(ctc_run) & _params(calibrate_main)
        assert {o.name for o in cls.decode_options} <= _params(decode_main)


def test_codec_choice_splits_stream_parameters_from_codec_options():
    choice = CodecChoice("vtm", {"gop": "ra", "preset": "fast", "vtm_dir": None, "vtm_cfg": "x.cfg", "vtm_jobs": 3})
    assert choice.params == {"gop": "ra", "preset": "fast"}
    assert choice.build_options == {"vtm_dir": None, "vtm_cfg": "x.cfg", "vtm_jobs": 3}
    lossless = CodecChoice("lossless", {"gop": "ld", "vtm_jobs": 2})
    assert lossless.codec is lossless.codec and lossless.codec.name == "lossless"  # built once
    assert decoder_codec("lossless", "vtm").name == "lossless"  # only VVC streams have a choice of decoder
    assert decoder_codec("vvenc", "auto").name == "vvenc"


def test_options_of_another_method_are_refused():
    weights_id = "ab" * 32
    assert method_for_encoding("anchor", SPLITS["dn53"], 32, weights_id, "cpu", model_path="ignored.pt").name == "anchor"
    with pytest.raises(FcmError, match="--channels and --qact apply to --method advmsfc only"):
        method_for_encoding("anchor", SPLITS["dn53"], 32, weights_id, "cpu", channels=8)
    with pytest.raises(FcmError, match="needs --model PATH"):
        method_for_encoding("advmsfc", SPLITS["dn53"], 32, weights_id, "cpu", model_path=None)


def test_split_option_gives_the_split_point():
    assert SPLIT.convert("alt1", None, None) is SPLITS["alt1"]


class _Mean(FeatureMethod):
    """A method in one class: each tensor's channel mean, at its own grid (a test method)."""

    name = "mean"
    code = 200

    @classmethod
    def stream_grids(cls, split, input_width, input_height):
        return split.grids(input_width, input_height)[:1]

    def coded_shapes(self, split_shapes: Sequence[tuple[int, int, int]]):
        return [(1, *split_shapes[0][1:])]

    def fused_channels(self, split_shapes):
        return [1]

    def layout(self, coded_shapes) -> FrameLayout:
        return single_tensor_layout(*coded_shapes[0])

    def reduce(self, features):
        return [features[0].mean(1, keepdim=True)]

    def restore(self, coded, fused_channels):
        return [coded[0]]


@contextlib.contextmanager
def _registered(cls):
    register_method(cls)
    try:
        yield cls
    finally:
        del METHODS._by_name[cls.name], METHODS._by_code[cls.code]


def test_a_new_method_class_is_enough_for_the_bitstream():
    split = SPLITS["dn53"]
    with _registered(_Mean):
        shape = _Mean().coded_shapes(split.shapes(320, 192))[0]
        layout = _Mean().layout([shape])
        width, height = padded_size(layout)
        header = StreamHeader(
            method="mean", split="dn53", codec="lossless", sample_bits=10, qp=30, gop="ld", intra_period=32,
            orig_width=640, orig_height=360, input_width=320, input_height=192, num_frames=1, fps=Fraction(25),
            coded_width=width, coded_height=height, fused_channels=(1,), layout=layout, ranges=[(0.0, 1.0)],
            fill_level=0, jde_id=bytes(16),
        )
        data = serialize(header, b"payload")
        assert data[5] == 200 and parse(data)[0].method == "mean"
        assert _Mean().reduce([torch.ones(1, 4, 2, 2)])[0].shape == (1, 1, 2, 2)
    with pytest.raises(BitstreamError, match="invalid method code 200"):
        parse(data)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["anchor", "advmsfc"]),
    split=st.sampled_from(sorted(SPLITS)),
    codec=st.sampled_from(["lossless", "vvenc", "vtm"]),
    qp=st.integers(-12, 63),
    gop=st.sampled_from(["ld", "ra"]),
    intra=st.integers(1, 65535),
    fps=st.fractions(min_value=1, max_value=1000).map(lambda f: f.limit_denominator(1001)),  # as the encoder writes it
    frames=st.integers(1, 4),
    per_frame=st.booleans(),
    lo=st.floats(-1e3, 1e3),
    width=st.floats(1e-3, 1e3),
)
def test_headers_round_trip(method, split, codec, qp, gop, intra, fps, frames, per_frame, lo, width):
    sp = SPLITS[split]
    method_cls = METHODS[method]
    channels = [c for c, _, _ in sp.shapes(320, 192)] if method_cls.codes_all_channels else [sp.fused_channels]
    shapes = [(c, h, w) for c, (h, w) in zip(channels, method_cls.stream_grids(sp, 320, 192))]
    if method_cls.codes_all_channels:
        layout = anchor_layout(shapes)
    else:
        layout = single_tensor_layout(max(1, shapes[0][0] // 3), shapes[0][1], shapes[0][2])
    cw, ch = padded_size(layout)
    lo, hi = float(np.float32(lo)), float(np.float32(lo + width))
    if not hi > lo:
        return
    header = StreamHeader(
        method=method, split=split, codec=codec, sample_bits=10, qp=qp, gop=gop, intra_period=intra,
        orig_width=1920, orig_height=1080, input_width=320, input_height=192, num_frames=frames, fps=fps,
        coded_width=cw, coded_height=ch, fused_channels=tuple(c for c, _, _ in shapes), layout=layout,
        ranges=[(lo, hi)] * (frames if per_frame else 1), fill_level=512, jde_id=bytes(range(16)),
        model_id=b"\x01" * 16 if method_cls.learned else bytes(16), per_frame_range=per_frame,
    )
    parsed, payload = parse(serialize(header, b"\x00\x01"))
    assert payload == b"\x00\x01"
    for name in ("method", "split", "codec", "qp", "gop", "intra_period", "fps", "layout", "ranges", "model_id"):
        assert getattr(parsed, name) == getattr(header, name), name
