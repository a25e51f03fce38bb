"""Detection average precision (AP) of person boxes at one IoU threshold (AP50 at 0.5).

Per picture, detections are taken by descending score and each is matched to the not yet matched
ground-truth box it overlaps most, if that IoU is at least the threshold (COCO's greedy rule); a
matched detection is a true positive, any other a false positive. All pictures' detections are
then pooled and sorted by score (ties keep picture order), giving the precision / recall curve; AP
is the area under its upper envelope, every point counted (PASCAL VOC 2010+ "all-point"
interpolation: precision at recall r is the best precision at any recall >= r).

Ground truth may carry *ignore* regions (crowds, people the benchmark does not score): a detection
left unmatched whose IoU with an ignore region reaches the threshold is neither true nor false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (x1, y1, x2, y2) boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class APResult:
    ap: float  # all-point interpolated average precision
    num_gt: int
    num_det: int  # detections scored (ignored ones left out)
    precision: np.ndarray  # along the curve, by descending score
    recall: np.ndarray
    scores: np.ndarray

    def at_score(self, threshold: float) -> tuple[float, float]:
        """(precision, recall) of the detections scored at least ``threshold`` (1, 0 if there are none)."""
        n = int((self.scores >= threshold).sum())
        if n == 0:
            return 1.0, 0.0
        return float(self.precision[n - 1]), float(self.recall[n - 1])


def match_picture(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5,
                  ignore: np.ndarray | None = None) -> np.ndarray:
    """Per detection (in the given order): 1 true positive, 0 false positive, -1 ignored."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    out = np.zeros(len(boxes), np.int8)
    iou = box_iou(boxes, gt)
    taken = np.zeros(len(gt), bool)
    ign = box_iou(boxes, ignore) if ignore is not None and len(ignore) else np.zeros((len(boxes), 0))
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if len(gt):
            cand = np.where(taken, -1.0, iou[i])
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                taken[j] = True
                out[i] = 1
                continue
        if ign.shape[1] and ign[i].max() >= iou_threshold:
            out[i] = -1
    return out


def average_precision(detections: Sequence[tuple[np.ndarray, np.ndarray]], ground_truth: Sequence[np.ndarray],
                      iou_threshold: float = 0.5, ignore: Sequence[np.ndarray] | None = None) -> APResult:
    """AP of ``detections`` (per picture: boxes (N, 4) x1y1x2y2 and scores (N,)) against
    ``ground_truth`` (per picture: boxes (M, 4)), and optional ``ignore`` regions per picture."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} pictures of detections, {len(ground_truth)} of ground truth")
    all_scores, all_hits = [], []
    num_gt = 0
    for n, ((boxes, scores), gt) in enumerate(zip(detections, ground_truth)):
        gt = np.asarray(gt).reshape(-1, 4)
        num_gt += len(gt)
        hits = match_picture(boxes, scores, gt, iou_threshold, None if ignore is None else ignore[n])
        keep = hits >= 0
        all_scores.append(np.asarray(scores, np.float64).reshape(-1)[keep])
        all_hits.append(hits[keep])
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    hits = np.concatenate(all_hits) if all_hits else np.zeros(0, np.int8)
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order].astype(np.float64)
    tp = np.cumsum(hits)
    fp = np.cumsum(1 - hits)
    recall = tp / num_gt if num_gt else np.zeros_like(tp)
    precision = tp / np.maximum(tp + fp, 1e-12)
    if num_gt == 0 or len(scores) == 0:
        return APResult(0.0, num_gt, len(scores), precision, recall, scores)
    # all-point interpolation: the precision envelope (best precision at this recall or beyond)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return APResult(float((steps * envelope).sum()), num_gt, len(scores), precision, recall, scores)
