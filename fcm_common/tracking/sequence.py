"""Glue between frames, JDE and the tracker: the uncompressed reference run of a sequence.

The encoder and decoder use the same pieces split in two (part 1 on frames; part 2, detections and
the tracker on decoded features), so that a lossless feature codec reproduces this run exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from fcm_common.data.mot_format import MotRow
from fcm_common.data.sources import FrameSource
from fcm_common.model.preprocess import Letterbox, network_inputs, preprocess
from fcm_common.tracking.detections import CONF_THRESHOLD, Detections, postprocess
from fcm_common.tracking.tracker import JDETracker


@dataclass
class SequenceTracker:
    """Detections -> tracks for one sequence; collects MOTChallenge rows frame by frame."""

    frame_rate: float
    buffer_mode: str = "framework"
    tracker: JDETracker = field(init=False)
    rows: list[MotRow] = field(default_factory=list)
    frames_done: int = 0
    detections: int = 0
    # per frame: (N, 5) float32 [x1, y1, x2, y2, score] of the detections fed to the tracker
    frame_detections: list = field(default_factory=list)
    last_rows: list[MotRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tracker = JDETracker(frame_rate=self.frame_rate, buffer_mode=self.buffer_mode)

    # 1-based number of the next frame in the source; frames_done counts the frames tracked
    frame_number: int = 1

    def push(self, predictions: torch.Tensor, box: Letterbox) -> Detections:
        """Feed one frame's prediction rows ``(N, 6 + E)``; returns its detections. Its tracks are
        added to ``rows`` (and ``last_rows``) under the frame's number in the source."""
        dets = postprocess(predictions, box)
        self.frames_done += 1
        self.detections += len(dets)
        self.frame_detections.append(np.concatenate([dets.tlbr, dets.scores[:, None]], axis=1))
        self.last_rows = [MotRow(self.frame_number, t.track_id, *t.tlwh, t.score) for t in self.tracker.update(dets)]
        self.rows.extend(self.last_rows)
        self.frame_number += 1
        return dets

    def skip(self, frames: int) -> None:
        """``frames`` frames of the source a live encoder skipped (it was behind): time passes for the
        tracker (:meth:`JDETracker.skip`: motion predicted over the gap, no track lost for want of a
        detection) and the next frame keeps its number in the source."""
        self.tracker.skip(frames)
        self.frame_number += frames

    def gap(self, frames: int, embedding_dim: int = 512) -> None:
        """``frames`` frames of the source that never arrived (a lost segment of a live stream): time
        passes for the tracker (its tracks are predicted on and may be lost), nothing is detected."""
        for _ in range(frames):
            self.tracker.update(Detections.empty(embedding_dim))
            self.frame_number += 1


def track_source(
    model,
    source: FrameSource,
    device: torch.device,
    batch_size: int = 1,
    buffer_mode: str = "framework",
    on_frame: Callable[[int], None] | None = None,
) -> SequenceTracker:
    """Run the whole JDE on every frame and track; the uncompressed reference."""
    seq = SequenceTracker(source.fps, buffer_mode)
    with torch.inference_mode():
        for batch, boxes in network_inputs(source, model.input_width, model.input_height, batch_size):
            preds = model(batch.to(device))
            for rows, box in zip(preds, boxes):
                seq.push(rows, box)
                if on_frame:
                    on_frame(1)
    return seq


def detect_picture(model, image: np.ndarray, device: torch.device, conf_threshold: float = CONF_THRESHOLD) -> Detections:
    """JDE's detections of one RGB picture of any size (letterboxed to the network's input as
    tracking does), kept from ``conf_threshold`` on (low for a precision / recall curve)."""
    x, box = preprocess(image, model.input_width, model.input_height)
    with torch.inference_mode():
        rows = model(x[None].to(device))[0]
    return postprocess(rows, box, conf_threshold)
