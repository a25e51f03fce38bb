"""One rate point: encode a sequence, decode it, track, and measure rate and accuracy.

(It sits above the encoder and the decoder: it is what the experiment commands, fcm-calibrate
and fcm-ctc, run.)

Shared by ``fcm-calibrate`` (QACT) and ``fcm-ctc`` (common test conditions), so that both measure
exactly what ``fcm-encode`` + ``fcm-decode`` produce: the bitstream is the same bytes, the rate is
the file size over the sequence duration, and the tracks go through the same evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from fcm_common.coding import bitstream
from fcm_common.coding.methods import FeatureMethod
from fcm_common.coding.rate import framework_anchor_bytes, kbps
from fcm_common.core.atomic import write_bytes_atomic
from fcm_common.data.mot_format import MotRow, write_rows
from fcm_common.data.sources import FrameSource
from fcm_common.evaluation.mot_metrics import SequenceResult, evaluate
from fcm_decoder.decoder import decode_stream
from fcm_encoder.encoder import encode_sequence


@dataclass
class PointResult:
    sequence: str
    qp: int
    channels: int
    frames: int
    fps: float
    bytes: int
    kbps: float
    seconds: dict[str, float]
    rows: list[MotRow] = field(default_factory=list, repr=False)
    metrics: dict[str, float] = field(default_factory=dict)
    # anchor streams: the rate the MPEG framework reports for the same payload (its own header)
    framework_bytes: int | None = None
    framework_kbps: float | None = None


def code_and_track(
    source: FrameSource, jde, method: FeatureMethod, settings, device: torch.device,
    stream_path: Path | None = None, tracks_path: Path | None = None, progress=None,
) -> PointResult:
    """Encode + decode + track one sequence at one setting (``settings``: EncodeSettings)."""
    data, report = encode_sequence(source, jde, method, settings, device, progress)
    if stream_path is not None:
        write_bytes_atomic(stream_path, data)
    header, payload = bitstream.parse(data)
    decoded = decode_stream(header, payload, len(data), jde, device, method=method)
    if tracks_path is not None:
        write_rows(tracks_path, decoded.tracker.rows)
    seconds = {
        "nn_part1": report.seconds.get("nn_part1", 0.0),
        "encode": report.seconds.get("quantise_pack", 0.0) + report.seconds.get("encode", 0.0),
        "decode": decoded.seconds.get("decode", 0.0) + decoded.seconds.get("unpack_dequantise", 0.0),
        "nn_part2": decoded.seconds.get("nn_part2", 0.0) + decoded.seconds.get("tracking", 0.0),
    }
    framework = framework_anchor_bytes(len(payload), report.frames) if header.method == "anchor" else None
    return PointResult(
        sequence=source.name, qp=settings.qp, channels=sum(header.coded_channels), frames=report.frames,
        fps=report.fps, bytes=len(data), kbps=report.kbps, seconds=seconds, rows=decoded.tracker.rows,
        framework_bytes=framework, framework_kbps=None if framework is None else kbps(framework, report.frames, report.fps),
    )


def evaluate_point(
    result: PointResult, gt_path: Path, mode: str, seqinfo: Path | None, max_frame: int | None = None
) -> dict[str, float]:
    """MOTA & co. of one point (fills ``result.metrics``)."""
    summary = evaluate([SequenceResult(result.sequence, gt_path, result.rows, seqinfo, max_frame, mode=mode)])
    row = summary.loc[result.sequence]
    result.metrics = {k: float(row[k]) for k in ("MOTA", "IDF1", "MOTP", "FP", "FN", "IDs", "GT")}
    return result.metrics
