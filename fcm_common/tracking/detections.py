"""From JDE's prediction rows to detections in original-frame pixels.

As JDE's tracker does it: keep rows with confidence > 0.5, class-agnostic greedy NMS at IoU 0.4
(torchvision's rule: continuous areas, suppress when IoU > threshold, survivors in descending
confidence; :mod:`fcm_common.model.proposals`), then undo the letterbox with the float padding of
JDE's ``scale_coords`` and clamp at 0 only. Coordinates are not rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fcm_common.model.preprocess import Letterbox
from fcm_common.model.proposals import CONF_THRESHOLD, NMS_THRESHOLD, select, tlbr


@dataclass
class Detections:
    """Detections of one frame, in NMS order (descending confidence).

    ``tlbr`` are float32 (x1, y1, x2, y2) in original-frame pixels, ``scores`` float32, and
    ``embeddings`` the float32 L2-normalised appearance vectors.
    """

    tlbr: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, embedding_dim: int = 512) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, embedding_dim), np.float32)
        )


def postprocess(
    rows: torch.Tensor,
    letterbox: Letterbox,
    conf_threshold: float = CONF_THRESHOLD,
    nms_threshold: float = NMS_THRESHOLD,
) -> Detections:
    """Detections of one frame from its ``(N, 6 + E)`` prediction rows."""
    if rows.dim() != 2:
        raise ValueError(f"expected the (N, 6+E) rows of one frame, got {tuple(rows.shape)}")
    rows = rows.detach().float()
    rows = rows[select(rows, conf_threshold, nms_threshold)]
    if rows.shape[0] == 0:
        return Detections.empty(rows.shape[1] - 6)
    boxes = tlbr(rows[:, :4])

    # Undo the letterbox: JDE uses the float padding, not the integer one actually applied.
    gain = letterbox.gain
    pad_x = (letterbox.input_width - letterbox.orig_width * gain) / 2
    pad_y = (letterbox.input_height - letterbox.orig_height * gain) / 2
    boxes[:, [0, 2]] -= pad_x
    boxes[:, [1, 3]] -= pad_y
    boxes /= gain
    boxes = boxes.clamp(min=0)
    return Detections(
        tlbr=boxes.cpu().numpy().astype(np.float32),
        scores=rows[:, 4].cpu().numpy().astype(np.float32),
        embeddings=rows[:, 6:].cpu().numpy().astype(np.float32),
    )
