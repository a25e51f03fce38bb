"""Association costs and assignment for the JDE tracker.

- IoU with the Fast R-CNN "+1 pixel" convention (what JDE's ``cython_bbox`` computes).
- Appearance cost: Euclidean distance between unit embeddings (JDE asks for "cosine" but calls
  ``cdist`` without the metric, so the Euclidean distance is what it uses).
- Motion fusion: entries whose squared Mahalanobis distance exceeds the chi-square gate become
  infinite, the rest ``0.98 * appearance + 0.02 * mahalanobis``.
- Assignment with a cost limit L: ``lap.lapjv(extend_cost=True, cost_limit=L)``, the solver the
  official tracker calls. It embeds the n x m cost matrix in an (n+m) x (n+m) one whose other
  entries are L/2 (bottom-right block 0), and a pair is matched only if the optimum of that bigger
  problem uses it. This is not "Hungarian, then drop pairs above L": the cut changes which pairs the
  optimum picks. Another solver of the same extended problem (scipy's) finds an optimum of the same
  cost, but breaks exact ties differently: two identical tracks would swap ids.
"""

from __future__ import annotations

import lap
import numpy as np
from scipy.spatial.distance import cdist

from fcm_common.tracking.kalman import CHI2_95_4DOF, KalmanFilter


def iou_plus1(a_tlbr: np.ndarray, b_tlbr: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (x1, y1, x2, y2) boxes, areas counted as (x2 - x1 + 1) * (y2 - y1 + 1)."""
    a = np.asarray(a_tlbr, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_tlbr, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def iou_distance(a_tlbr: np.ndarray, b_tlbr: np.ndarray) -> np.ndarray:
    return 1.0 - iou_plus1(a_tlbr, b_tlbr)


def embedding_distance(track_features: np.ndarray, det_features: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64) between track and detection embeddings, clipped at 0."""
    if len(track_features) == 0 or len(det_features) == 0:
        return np.zeros((len(track_features), len(det_features)))
    tracks = np.asarray(track_features, dtype=np.float64)
    dets = np.asarray(det_features, dtype=np.float64)
    return np.maximum(0.0, cdist(tracks, dets))


def fuse_motion(
    kf: KalmanFilter,
    cost: np.ndarray,
    means: list[np.ndarray],
    covariances: list[np.ndarray],
    measurements: np.ndarray,
    weight: float = 0.98,
) -> np.ndarray:
    """Gate an appearance cost by motion and mix in the squared Mahalanobis distance."""
    if cost.size == 0:
        return cost
    cost = cost.copy()
    for row, (mean, cov) in enumerate(zip(means, covariances)):
        gating = kf.gating_distance(mean, cov, measurements)
        cost[row, gating > CHI2_95_4DOF] = np.inf
        cost[row] = weight * cost[row] + (1 - weight) * gating
    return cost


def linear_assignment(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost matching with a per-pair cost limit, solved by lapjv on the extended cost matrix.

    Returns (matches as (row, col) pairs in row order, unmatched rows, unmatched columns).
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    _, row_to_col, col_to_row = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    matches = [(r, int(c)) for r, c in enumerate(row_to_col) if c >= 0]
    return (
        matches,
        [int(r) for r in np.where(row_to_col < 0)[0]],
        [int(c) for c in np.where(col_to_row < 0)[0]],
    )
