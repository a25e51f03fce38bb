"""JDE's test-time proposal selection: the confidence threshold and greedy NMS.

Shared by the tracker's post-processing (:mod:`fcm_common.tracking.detections`) and the backbone
split's detection code (:mod:`fcm_common.msfc.detection_code`), which keeps exactly the proposals
this selection keeps: one rule, so the two cannot drift apart.
"""

from __future__ import annotations

import torch

CONF_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4


def tlbr(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2), as JDE's prediction rows give and NMS takes them."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


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


def select(rows: torch.Tensor, conf_threshold: float = CONF_THRESHOLD, nms_threshold: float = NMS_THRESHOLD) -> torch.Tensor:
    """Indices, in NMS order (descending confidence), of the ``(N, 6 + E)`` prediction rows of one
    frame that JDE keeps: confidence above the threshold, then greedy NMS."""
    above = torch.nonzero(rows[:, 4] > conf_threshold).flatten()
    if above.numel() == 0:
        return above
    return above[nms(tlbr(rows[above, :4]), rows[above, 4], nms_threshold)]
