"""From JDE's prediction rows to detections in original-frame pixels.

As JDE's tracker does it: keep rows with confidence > 0.5, class-agnostic greedy NMS at IoU 0.4
(torchvision's rule: continuous areas, suppress when IoU > threshold, survivors in descending
confidence), then undo the letterbox with the float padding of JDE's ``scale_coords`` and clamp at
0 only. Coordinates are not rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fcm_common.model.preprocess import Letterbox

CONF_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4


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


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS on (x1, y1, x2, y2) boxes; indices of the kept boxes by descending score."""
    order = torch.sort(scores, descending=True, stable=True).indices
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return torch.stack(keep)


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
    rows = rows[rows[:, 4] > conf_threshold]
    if rows.shape[0] == 0:
        return Detections.empty(rows.shape[1] - 6)
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
    kept = nms(boxes, rows[:, 4], nms_threshold)
    boxes = boxes[kept]
    rows = rows[kept]

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
