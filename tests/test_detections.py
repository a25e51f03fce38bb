import numpy as np
import pytest
import torch

from fcm_common.model.preprocess import Letterbox
from fcm_common.model.proposals import nms
from fcm_common.tracking.detections import postprocess


def _reference_greedy_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    suppressed, keep = set(), []
    for n, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[n + 1:]:
            xx1, yy1 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            xx2, yy2 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0.0, xx2 - xx1) * max(0.0, yy2 - yy1)
            area_i = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            area_j = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (area_i + area_j - inter) > thr:
                suppressed.add(j)
    return keep


def test_nms_matches_the_greedy_definition(rng):
    xy = rng.uniform(0, 200, size=(300, 2))
    wh = rng.uniform(5, 60, size=(300, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0.5, 1, size=300).astype(np.float32)
    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4).tolist()
    assert kept == _reference_greedy_nms(boxes.tolist(), scores.tolist(), 0.4)
    assert 10 < len(kept) < 300


def test_nms_suppresses_only_above_the_threshold():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert nms(boxes, torch.tensor([0.6, 0.9, 0.7]), 0.4).tolist() == [1, 2]
    # IoU exactly 0.4 is kept (the rule is IoU > threshold)
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 4, 10]], dtype=torch.float32)
    assert nms(a, torch.tensor([0.9, 0.8]), 0.4).tolist() == [0, 1]


def test_postprocess_filters_and_maps_back_to_the_frame():
    rows = torch.zeros(4, 6 + 4)
    # cx, cy, w, h (network pixels), conf
    rows[0, :5] = torch.tensor([544.0, 304.0, 100.0, 200.0, 0.9])
    rows[1, :5] = torch.tensor([548.0, 304.0, 100.0, 200.0, 0.8])  # overlaps row 0 -> suppressed
    rows[2, :5] = torch.tensor([100.0, 100.0, 20.0, 40.0, 0.5])  # not > 0.5
    rows[3, :5] = torch.tensor([2.0, 300.0, 10.0, 40.0, 0.7])  # left edge, clamped at 0
    rows[:, 6] = 1.0
    box = Letterbox(1920, 1080)
    dets = postprocess(rows, box)
    assert len(dets) == 2
    gain = min(608 / 1080, 1088 / 1920)
    pad_x = (1088 - 1920 * gain) / 2
    expect0 = [(494 - pad_x) / gain, 204 / gain, (594 - pad_x) / gain, 404 / gain]
    assert np.allclose(dets.tlbr[0], expect0, rtol=1e-6)
    assert dets.tlbr[1][0] == 0.0 and dets.tlbr[1][2] > 0
    assert dets.scores.tolist() == pytest.approx([0.9, 0.7])
    assert dets.embeddings.shape == (2, 4)


def test_postprocess_without_detections():
    dets = postprocess(torch.zeros(10, 518), Letterbox(640, 480))
    assert len(dets) == 0 and dets.embeddings.shape == (0, 512)
