"""The fcm encoder: frames -> JDE part 1 -> method -> 10-bit frames -> inner codec -> bitstream.

:func:`encode_sequence` runs four steps: plan the frame format (layout, coded size, quantisation
range, fill level), code the frames, make the header, hash the reconstruction into it.

Frames stream through: nothing holds the whole sequence's features (a TVD/DN53 frame is 18.5 MB
of floats). The one exception is ``--range sequence``, which needs the feature range before the
first frame is quantised and therefore runs NN part 1 twice (a first pass only measures it).

After coding, the payload is decoded once more to hash the header's fields and the reconstructed
frames into the header; the decoder checks that hash, so a damaged payload, a re-signed header or a
non-conforming decoder cannot go unnoticed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from fcm_common.coding import bitstream
from fcm_common.coding.codecs import CodecParams, InnerCodec, check_decoded_frame, make_codec
from fcm_common.coding.frame_coding import FrameFormat, padded_size, tensors_to_frame
from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.packing import FrameLayout
from fcm_common.coding.quantization import RangeSpec, float32_range, value_range, zero_level
from fcm_common.coding.rate import kbps
from fcm_common.core.errors import FcmError
from fcm_common.core.timing import StageTimer
from fcm_common.data.sources import FrameSource
from fcm_common.model.preprocess import network_inputs
from fcm_common.model.splits import SplitPoint, get_split

MID_LEVEL = 512  # fill level of per-frame ranges, which have no single zero level: unused tiles are mid-grey


@dataclass
class EncodeSettings:
    """How to encode. ``split`` and ``codec`` may be given by name (resolved here, once)."""

    split: SplitPoint
    qp: int = 32
    codec: InnerCodec = "vvenc"
    intra_period: int = 32
    preset: str = "medium"
    gop: str = "ld"
    range_spec: RangeSpec = field(default_factory=lambda: RangeSpec.parse("frame"))
    sample_bits: int = 10
    batch_size: int = 1
    threads: int = 0

    def __post_init__(self) -> None:
        self.split = get_split(self.split)
        if isinstance(self.codec, str):
            self.codec = make_codec(self.codec)
        self.codec.check_qp(self.qp)

    def codec_params(self, fps: float) -> CodecParams:
        return CodecParams(
            qp=self.qp, fps=fps, intra_period=self.intra_period, preset=self.preset, gop=self.gop,
            threads=self.threads, sample_bits=self.sample_bits,
        )


@dataclass
class EncodeReport:
    frames: int
    fps: float
    total_bytes: int
    header_bytes: int
    coded_width: int
    coded_height: int
    coded_channels: list[int]
    ranges: list[tuple[float, float]]
    seconds: dict[str, float]
    chunked: bool = False

    @property
    def kbps(self) -> float:
        return kbps(self.total_bytes, self.frames, self.fps)


ProgressFn = Callable[[str, int, int], None]  # (stage description, done increment, total)


@dataclass(frozen=True)
class FramePlan:
    """The frame format of a stream, fixed before the first frame is coded."""

    split_shapes: list[tuple[int, int, int]]
    coded_shapes: list[tuple[int, int, int]]
    layout: FrameLayout
    format: FrameFormat
    fixed_range: tuple[float, float] | None  # None: one range per frame

    @property
    def width(self) -> int:
        return self.format.coded_width

    @property
    def height(self) -> int:
        return self.format.coded_height


@dataclass
class CodedFrames:
    payload: bytes
    frames: int
    ranges: list[tuple[float, float]]  # per frame (empty with a fixed range)
    chunked: bool


class _Pass:
    """One pass of NN part 1 and the method over the source, batch by batch."""

    def __init__(self, source: FrameSource, model, method: FeatureMethod, settings: EncodeSettings, device, timer: StageTimer):
        self.source, self.model, self.method, self.settings, self.device, self.timer = source, model, method, settings, device, timer

    def __iter__(self):
        """(coded tensors of a batch (B, k, H, W) each, their letterbox geometry)."""
        model = self.model
        for batch, boxes in network_inputs(self.source, model.input_width, model.input_height, self.settings.batch_size):
            with self.timer.stage("nn_part1"):
                feats = model.forward_part1(batch.to(self.device), self.settings.split)
                coded = self.method.reduce(feats)
            yield coded, boxes


def measure_range(reduced: _Pass, progress: ProgressFn | None = None) -> tuple[float, float]:
    """Min and max of the coded tensors over the whole sequence (first pass of ``--range sequence``)."""
    lo, hi = float("inf"), float("-inf")
    with torch.inference_mode():
        for coded, boxes in reduced:
            batch_lo, batch_hi = value_range(coded)
            lo, hi = min(lo, batch_lo), max(hi, batch_hi)
            if progress:
                progress("measuring range", len(boxes), reduced.source.length)
    return lo, hi


# ------------------------------------------------------------------------------------ the steps
def plan_frames(reduced: _Pass, progress: ProgressFn | None = None) -> FramePlan:
    """Step 1: the frame layout and coded size, the quantisation range and the fill level."""
    settings, method = reduced.settings, reduced.method
    split_shapes = reduced.model.split_shapes(settings.split)
    coded_shapes = method.coded_shapes(split_shapes)
    layout = method.layout(coded_shapes)
    width, height = padded_size(layout)
    spec = settings.range_spec
    if settings.sample_bits == 32:
        if not settings.codec.float_samples:
            raise FcmError("float32 samples (--bit-depth 32) can only be carried by the lossless codec")
        fixed_range: tuple[float, float] | None = (0.0, 1.0)  # unused: samples are not quantised
        fill = 0
    else:
        if spec.mode == "fixed":
            fixed_range = float32_range(spec.lo, spec.hi)
        elif spec.mode == "sequence":
            fixed_range = float32_range(*measure_range(reduced, progress))
        else:
            fixed_range = None  # per frame
        fill = zero_level(*fixed_range) if fixed_range is not None else MID_LEVEL
    fmt = FrameFormat(layout, width, height, settings.sample_bits, fill)
    return FramePlan(split_shapes, coded_shapes, layout, fmt, fixed_range)


def packed_frames(reduced: _Pass, plan: FramePlan, progress: ProgressFn | None = None):
    """The 10-bit frames the inner encoder is fed, one by one, with the range each was quantised
    with. Public so that a codec comparison (``make bench-codec``) codes exactly these frames."""
    source, timer = reduced.source, reduced.timer
    with torch.inference_mode():
        for coded, boxes in reduced:  # one frame size per sequence: FrameSource.frames checks it
            for b in range(len(boxes)):
                tensors = [t[b] for t in coded]
                with timer.stage("quantise_pack"):
                    lo_hi = plan.fixed_range or float32_range(*value_range(tensors))
                    frame = tensors_to_frame(tensors, plan.format, *lo_hi)
                yield frame, lo_hi
            if progress:
                progress("encoding", len(boxes), source.length)


def sequence_frames(source: FrameSource, model, method: FeatureMethod, settings: EncodeSettings, device: torch.device,
                    progress: ProgressFn | None = None):
    """(frame plan, the packed frames with their ranges) of a source, as :func:`encode_sequence`
    would code them; nothing is encoded."""
    reduced = _Pass(source, model, method, settings, device, StageTimer(device))
    plan = plan_frames(reduced, progress)
    return plan, packed_frames(reduced, plan, progress)


def code_frames(reduced: _Pass, plan: FramePlan, workdir: Path, progress: ProgressFn | None = None) -> CodedFrames:
    """Step 2: quantise and pack every frame and feed it to the inner encoder."""
    source, settings, timer = reduced.source, reduced.settings, reduced.timer
    encoder = settings.codec.open_encoder(plan.width, plan.height, settings.codec_params(source.fps), workdir)
    ranges: list[tuple[float, float]] = []
    frames = 0
    try:
        for frame, lo_hi in packed_frames(reduced, plan, progress):
            if plan.fixed_range is None:
                ranges.append(lo_hi)
            with timer.stage("encode"):
                encoder.write(frame)
            frames += 1
        with timer.stage("encode"):
            payload = encoder.finish()
    except BaseException:
        encoder.abort()
        raise
    if frames == 0:
        raise FcmError(f"{source.path}: no frames to encode")
    return CodedFrames(payload, frames, ranges, encoder.chunked)


def reconstruction_hash(codec: InnerCodec, coded: CodedFrames, header: bitstream.StreamHeader, workdir: Path) -> bytes:
    """Step 4: decode the payload as a decoder will and hash the header's fields and its frames."""
    digest = bitstream.frames_hash(header)
    for index, frame in enumerate(codec.decode(coded.payload, header.coded_width, header.coded_height, coded.frames,
                                               workdir, header.sample_bits)):
        check_decoded_frame(frame, header.sample_bits, index)
        bitstream.hash_frame(digest, frame)
    return bitstream.digest16(digest)


def stream_header(source: FrameSource, model, method: FeatureMethod, settings: EncodeSettings, plan: FramePlan,
                  coded: CodedFrames, recon_hash: bytes = bytes(bitstream.ID_BYTES)) -> bitstream.StreamHeader:
    """Step 3: everything the decoder needs (the reconstruction hash is filled in by step 4)."""
    return bitstream.StreamHeader(
        method=method.name,
        split=settings.split.name,
        codec=settings.codec.name,
        sample_bits=settings.sample_bits,
        qp=settings.qp,
        gop=settings.gop,
        intra_period=settings.intra_period,
        orig_width=source.width,
        orig_height=source.height,
        input_width=model.input_width,
        input_height=model.input_height,
        num_frames=coded.frames,
        fps=Fraction(source.fps).limit_denominator(1001),
        coded_width=plan.width,
        coded_height=plan.height,
        fused_channels=tuple(method.fused_channels(plan.split_shapes)),
        layout=plan.layout,
        ranges=coded.ranges if plan.fixed_range is None else [plan.fixed_range],
        fill_level=plan.format.fill_level,
        jde_id=bitstream.hex_id(model.weights_id),
        model_id=method.model_id,
        recon_hash=recon_hash,
        per_frame_range=plan.fixed_range is None,
        chunked=coded.chunked,
    )


def encode_sequence(
    source: FrameSource,
    model,
    method: FeatureMethod,
    settings: EncodeSettings,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> tuple[bytes, EncodeReport]:
    """Encode a frame source; returns the complete bitstream and a report."""
    timer = StageTimer(device)
    reduced = _Pass(source, model, method, settings, device, timer)
    plan = plan_frames(reduced, progress)
    with tempfile.TemporaryDirectory(prefix="fcm-enc-") as tmp:
        coded = code_frames(reduced, plan, Path(tmp), progress)
        header = stream_header(source, model, method, settings, plan, coded)
        with timer.stage("reconstruction_hash"):
            header.recon_hash = reconstruction_hash(settings.codec, coded, header, Path(tmp))
    data = bitstream.serialize(header, coded.payload)
    report = EncodeReport(
        frames=coded.frames,
        fps=float(header.fps),
        total_bytes=len(data),
        header_bytes=header.header_size,
        coded_width=plan.width,
        coded_height=plan.height,
        coded_channels=[k for k, _, _ in plan.coded_shapes],
        ranges=header.ranges,
        seconds=dict(timer.seconds),
        chunked=coded.chunked,
    )
    return data, report
