"""The fcm encoder: frames -> JDE part 1 -> method -> 10-bit frames -> inner codec -> bitstream.

Frames stream through: nothing holds the whole sequence's features (a TVD/DN53 frame is 18.5 MB
of floats). The one exception is ``--range sequence``, which needs the feature range before the
first frame is quantised and therefore runs NN part 1 twice (a first pass only measures it).

After coding, the payload is decoded once more to hash the reconstructed frames into the header;
the decoder checks that hash, so a damaged payload or a non-conforming decoder cannot go unnoticed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from fcm_common.coding import bitstream
from fcm_common.coding.codecs import CodecParams, make_codec
from fcm_common.coding.frame_coding import FrameFormat, padded_size, tensors_to_frame
from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.methods.advmsfc import AdvMSFCMethod
from fcm_common.coding.methods.anchor import AnchorMethod
from fcm_common.coding.quantization import RangeSpec, float32_range, value_range, zero_level
from fcm_common.coding.rate import kbps
from fcm_common.core.errors import FcmError
from fcm_common.core.timing import StageTimer
from fcm_common.data.sources import FrameSource
from fcm_common.model.preprocess import network_inputs
from fcm_common.model.splits import get_split
from fcm_common.msfc.checkpoint import load_checkpoint
from fcm_common.msfc.qact import load_qact

ANCHOR_DEFAULT_RANGE = {"dn53": "tvd", "alt1": "hieve", "backbone": "frame"}


def build_method(name: str, split: str, qp: int, jde_weights_id: str, device, model_path=None, channels=None,
                 qact_path=None, checkpoint=None) -> FeatureMethod:
    """The feature method, advmsfc's kept-channel count k resolved (its QACT table, or ``channels``).

    ``checkpoint`` (an already loaded advMSFC checkpoint) saves reloading it for every QP.
    """
    if name == "anchor":
        if channels is not None or qact_path is not None:
            raise FcmError("--channels and --qact apply to --method advmsfc only")
        return AnchorMethod()
    if name != "advmsfc":
        raise FcmError(f"unknown method '{name}'")
    if checkpoint is None:
        if model_path is None:
            raise FcmError("--method advmsfc needs --model PATH (train one with fcm-train), or use --method anchor")
        checkpoint = load_checkpoint(model_path, split, jde_weights_id, device)
    table = load_qact(split, qact_path) if qact_path else checkpoint.qact
    keep = channels if channels is not None else table.channels_for(qp)
    if not 1 <= keep <= checkpoint.model.fused_channels:
        raise FcmError(f"{keep} kept channels: must be within 1..{checkpoint.model.fused_channels} for {split}")
    return AdvMSFCMethod(checkpoint, keep)


def range_spec(text: str | None, method: FeatureMethod, split: str) -> RangeSpec:
    """The quantisation range: ``text`` (see fcm-encode --range), or the default: the framework's
    dataset range for the anchor at dn53/alt1, the model's code range for advmsfc, else per frame.
    ``model`` names the advMSFC checkpoint's code range."""
    code_range = method.checkpoint.code_range if isinstance(method, AdvMSFCMethod) else None
    if text is None:
        if method.name == "anchor":
            return RangeSpec.parse(ANCHOR_DEFAULT_RANGE[split])
        text = "model" if code_range else "frame"
    if text.strip().lower() == "model":
        if not code_range:
            raise FcmError("--range model needs an advmsfc model that records its code range")
        return RangeSpec("fixed", code_range[0], code_range[1], "model")
    return RangeSpec.parse(text)


@dataclass
class EncodeSettings:
    split: str
    qp: int = 32
    codec: str = "vvenc"
    intra_period: int = 32
    preset: str = "medium"
    gop: str = "ld"
    range_spec: RangeSpec = field(default_factory=lambda: RangeSpec.parse("frame"))
    sample_bits: int = 10
    batch_size: int = 1
    threads: int = 0
    vtm_dir: str | None = None
    vtm_cfg: str | None = None
    vtm_jobs: int = 1


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


def _reduced_batches(model, method: FeatureMethod, source: FrameSource, split: str, device, batch_size: int, timer: StageTimer):
    """(coded tensors of a batch (B, k, H, W) each, their letterbox geometry), frame batch by batch."""
    for batch, boxes in network_inputs(source, model.input_width, model.input_height, batch_size):
        with timer.stage("nn_part1"):
            feats = model.forward_part1(batch.to(device), split)
            coded = method.reduce(feats)
        yield coded, boxes


def measure_range(model, method, source, split, device, batch_size, timer, progress: ProgressFn | None = None) -> tuple[float, float]:
    """Min and max of the coded tensors over the whole sequence (first pass of ``--range sequence``)."""
    lo, hi = float("inf"), float("-inf")
    with torch.inference_mode():
        for coded, boxes in _reduced_batches(model, method, source, split, device, batch_size, timer):
            batch_lo, batch_hi = value_range(coded)
            lo, hi = min(lo, batch_lo), max(hi, batch_hi)
            if progress:
                progress("measuring range", len(boxes), source.length)
    return lo, hi


def encode_sequence(
    source: FrameSource,
    model,
    method: FeatureMethod,
    settings: EncodeSettings,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> tuple[bytes, EncodeReport]:
    """Encode a frame source; returns the complete bitstream and a report."""
    split = get_split(settings.split).name
    codec = make_codec(settings.codec, settings.vtm_dir, settings.vtm_cfg, settings.vtm_jobs)
    split_shapes = model.split_shapes(split)
    coded_shapes = method.coded_shapes(split_shapes)
    layout = method.layout(coded_shapes)
    coded_width, coded_height = padded_size(layout)
    timer = StageTimer(device)
    spec = settings.range_spec

    if settings.sample_bits == 32:
        if settings.codec != "lossless":
            raise FcmError("float32 samples (--bit-depth 32) can only be carried by the lossless codec")
        fixed_range: tuple[float, float] | None = (0.0, 1.0)  # unused: samples are not quantised
    elif spec.mode == "fixed":
        fixed_range = float32_range(spec.lo, spec.hi)
    elif spec.mode == "sequence":
        fixed_range = float32_range(*measure_range(model, method, source, split, device, settings.batch_size, timer, progress))
    else:
        fixed_range = None  # per frame
    if settings.sample_bits == 32:
        fill = 0
    elif fixed_range is not None:
        fill = zero_level(*fixed_range)
    else:
        fill = 512  # per-frame ranges have no single zero level: unused tiles are mid-grey
    fmt = FrameFormat(layout, coded_width, coded_height, settings.sample_bits, fill)
    params = CodecParams(
        qp=settings.qp, fps=source.fps, intra_period=settings.intra_period, preset=settings.preset,
        gop=settings.gop, threads=settings.threads, sample_bits=settings.sample_bits,
    )

    ranges: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="fcm-enc-") as tmp:
        workdir = Path(tmp)
        encoder = codec.open_encoder(coded_width, coded_height, params, workdir)
        frames = 0
        try:
            with torch.inference_mode():
                for coded, boxes in _reduced_batches(model, method, source, split, device, settings.batch_size, timer):
                    for b, box in enumerate(boxes):
                        if (box.orig_width, box.orig_height) != (source.width, source.height):
                            raise FcmError(
                                f"{source.path}: frame {frames + 1} is {box.orig_width}x{box.orig_height}, "
                                f"the first was {source.width}x{source.height} (one size per sequence)"
                            )
                        tensors = [t[b] for t in coded]
                        with timer.stage("quantise_pack"):
                            lo_hi = fixed_range or float32_range(*value_range(tensors))
                            if fixed_range is None:
                                ranges.append(lo_hi)
                            frame = tensors_to_frame(tensors, fmt, *lo_hi)
                        with timer.stage("encode"):
                            encoder.write(frame)
                        frames += 1
                    if progress:
                        progress("encoding", len(boxes), source.length)
            with timer.stage("encode"):
                payload = encoder.finish()
        except BaseException:
            encoder.abort()
            raise
        if frames == 0:
            raise FcmError(f"{source.path}: no frames to encode")
        with timer.stage("reconstruction_hash"):
            digest = bitstream.frames_hash()
            for frame in codec.decode(payload, coded_width, coded_height, frames, workdir, settings.sample_bits):
                bitstream.hash_frame(digest, frame)
        chunked = encoder.chunked

    header = bitstream.StreamHeader(
        method=method.name,
        split=split,
        codec=settings.codec,
        sample_bits=settings.sample_bits,
        qp=settings.qp,
        gop=settings.gop,
        intra_period=settings.intra_period,
        orig_width=source.width,
        orig_height=source.height,
        input_width=model.input_width,
        input_height=model.input_height,
        num_frames=frames,
        fps=Fraction(source.fps).limit_denominator(1001),
        coded_width=coded_width,
        coded_height=coded_height,
        fused_channels=tuple(method.fused_channels(split_shapes)),
        layout=layout,
        ranges=ranges if fixed_range is None else [fixed_range],
        fill_level=fmt.fill_level,
        jde_id=bitstream.hex_id(model.weights_id),
        model_id=method.model_id,
        recon_hash=bitstream.digest16(digest),
        per_frame_range=fixed_range is None,
        chunked=chunked,
    )
    data = bitstream.serialize(header, payload)
    report = EncodeReport(
        frames=frames,
        fps=float(header.fps),
        total_bytes=len(data),
        header_bytes=header.header_size,
        coded_width=coded_width,
        coded_height=coded_height,
        coded_channels=[k for k, _, _ in coded_shapes],
        ranges=header.ranges,
        seconds=dict(timer.seconds),
        chunked=chunked,
    )
    return data, report
