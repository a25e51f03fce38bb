"""The fcm decoder: bitstream -> inner decoder -> frames -> tensors -> method -> JDE part 2 -> tracks.

:func:`decode_stream` checks that the network and model are the encoder's, then takes each
decoded frame through unpacking, the method and JDE part 2 to the tracker. Everything needed
comes from the header (no side files). Decoded frames are checked (no sample a 10-bit encoder
cannot make, nothing that is not a finite number) and hashed with the header's fields as they
come; the hash is compared with the encoder's at the end, and only then are results released, so
a damaged payload or a re-signed header never produces an output file.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fcm_common.coding import bitstream
from fcm_common.coding.codecs import DECODER_CHOICES, InnerCodec, check_decoded_frame, decoder_codec
from fcm_common.coding.frame_coding import FrameFormat, frame_to_tensors
from fcm_common.coding.methods import FeatureMethod, method_for_decoding
from fcm_common.coding.rate import kbps
from fcm_common.core.errors import FcmError
from fcm_common.core.timing import StageTimer
from fcm_common.model.preprocess import Letterbox
from fcm_common.model.splits import SPLITS
from fcm_common.tracking.sequence import SequenceTracker
from fcm_decoder.checks import check_model, check_network
from fcm_decoder.stream_decoder import decode_units

DECODERS = DECODER_CHOICES  # fcm-decode --decoder: auto (the stream's codec) or a VVC decoder


@dataclass
class DecodeReport:
    header: bitstream.StreamHeader
    total_bytes: int
    seconds: dict[str, float]
    tracker: SequenceTracker
    features: dict[str, np.ndarray] | None = None
    method: FeatureMethod | None = None

    @property
    def kbps(self) -> float:
        return kbps(self.total_bytes, self.header.num_frames, float(self.header.fps))


def read_stream(path: str | Path) -> tuple[bitstream.StreamHeader, bytes, int]:
    """Header, payload and file size of a bitstream file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FcmError(f"bitstream not found: {path}") from None
    except IsADirectoryError:
        raise FcmError(f"{path} is a folder, not a bitstream") from None
    header, payload = bitstream.parse(data)
    return header, payload, len(data)


def decoded_frames(codec: InnerCodec, header: bitstream.StreamHeader, payload: bytes, workdir: Path, timer: StageTimer):
    """The inner decoder's frames, checked (sample range, finiteness) and hashed as they come; the
    hash (header fields and frames) is checked after the last one."""
    digest = bitstream.frames_hash(header)
    frames = iter(codec.decode(payload, header.coded_width, header.coded_height, header.num_frames, workdir,
                               header.sample_bits))
    index = 0
    with contextlib.closing(frames):
        while True:
            with timer.stage("decode"):
                frame = next(frames, None)
            if frame is None:
                break
            check_decoded_frame(frame, header.sample_bits, index)
            index += 1
            bitstream.hash_frame(digest, frame)
            yield frame
    if bitstream.digest16(digest) != header.recon_hash:
        raise FcmError(
            "the decoded frames do not match what the encoder produced (reconstruction hash mismatch): "
            "the payload or the header is damaged, or the VVC decoder does not conform"
        )


def decode_stream(
    header: bitstream.StreamHeader,
    payload: bytes,
    total_bytes: int,
    model,
    device: torch.device,
    method: FeatureMethod | None = None,
    model_path: str | None = None,
    decoder: str = "auto",
    vtm_dir: str | None = None,
    buffer_mode: str = "framework",
    keep_features: bool = False,
    progress: Callable[[int], None] | None = None,
    stream_key: bytes | None = None,
    **options,
) -> DecodeReport:
    """Decode a parsed bitstream and run JDE part 2 and the tracker.

    ``options`` (with ``model_path`` and ``vtm_dir``) are the command-line options of the methods
    and codecs: each takes its own. Results are released only once the reconstruction hash matched.
    ``stream_key``: a keyed stream's key (version 3); a stream without MACs is then refused.
    """
    if header.version == 3:  # a segmented stream: ``payload`` is the whole stream
        return _decode_segmented(header, payload, total_bytes, model, device, method, model_path, decoder, vtm_dir,
                                 buffer_mode, keep_features, progress, stream_key=stream_key, **options)
    if stream_key is not None:
        raise FcmError("a version-2 stream carries no MAC: refused with a key (--key-file)")
    options = {"model_path": model_path, "vtm_dir": vtm_dir, "model_id": header.model_id, **options}
    check_network(header, model)
    method = method or method_for_decoding(header.method, device, **options)
    check_model(header, method, model)
    codec = decoder_codec(header.codec, decoder, **options)
    fmt = FrameFormat(header.layout, header.coded_width, header.coded_height, header.sample_bits, header.fill_level)
    box = Letterbox(header.orig_width, header.orig_height, header.input_width, header.input_height)
    tracker = SequenceTracker(float(header.fps), buffer_mode)
    timer = StageTimer(device)
    saved: list[list[np.ndarray]] = []

    with tempfile.TemporaryDirectory(prefix="fcm-dec-") as tmp, torch.inference_mode(), \
            contextlib.closing(decoded_frames(codec, header, payload, Path(tmp), timer)) as frames:
        # closing: on any error the inner decoder (an ffmpeg process) is stopped before the folder goes
        for index, frame in enumerate(frames):
            with timer.stage("unpack_dequantise"):
                coded = [t[None] for t in frame_to_tensors(frame, fmt, *header.range_of(index), device=device)]
            with timer.stage("nn_part2"):
                features = method.restore(coded, header.fused_channels)
                rows = model.forward_part2(features, header.split)
            if not bool(torch.isfinite(rows).all()):
                raise FcmError(f"frame {index}: the network output is not finite (the header's quantisation ranges "
                               "or the payload are damaged)")
            if keep_features:
                saved.append([f[0].float().cpu().numpy() for f in features])
            with timer.stage("tracking"):
                tracker.push(rows[0], box)
            if progress:
                progress(1)
    features = None
    if keep_features:
        layers = SPLITS[header.split].layers
        features = {f"layer_{layer}": np.stack([s[i] for s in saved]) for i, layer in enumerate(layers)}
    return DecodeReport(header, total_bytes, dict(timer.seconds), tracker, features, method)


def _decode_segmented(header, data, total_bytes, model, device, method, model_path, decoder, vtm_dir, buffer_mode,
                      keep_features, progress, **options) -> DecodeReport:
    """A stored version-3 stream, decoded in full; any loss is an error (the library's contract: results
    only from a stream that decoded completely and matched its hashes)."""
    report = decode_units([data], model, device, method=method, model_path=model_path, decoder=decoder,
                          vtm_dir=vtm_dir, buffer_mode=buffer_mode, keep_features=keep_features,
                          on_frame=(lambda rows, number, latency: progress(1)) if progress else None, **options)
    if report.mismatches:
        raise FcmError(
            "the decoded frames do not match what the encoder produced (reconstruction hash mismatch): "
            "the payload or the header is damaged, or the VVC decoder does not conform"
        )
    if not report.ok or report.refusals:
        first = report.losses[0].describe() if report.losses else (report.refusals or report.unverified)[0]
        raise FcmError(f"the stream is damaged: {first}")
    features = None
    if keep_features:
        layers = SPLITS[header.split].layers
        features = {f"layer_{layer}": np.stack([s[i] for s in report.features]) for i, layer in enumerate(layers)}
    return DecodeReport(header, total_bytes, report.seconds, report.tracker, features, report.method)
