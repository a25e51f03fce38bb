"""Detection average precision (AP50): hand-worked cases and an independent VOC-style reference."""

from __future__ import annotations

import numpy as np
import pytest

from fcm_common.evaluation.detection_ap import average_precision, box_iou, match_picture

GT = np.array([[0, 0, 10, 20], [50, 0, 60, 20]], np.float32)


def test_box_iou():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert iou == pytest.approx(np.array([[1.0, 50 / 150, 0.0]]))
    assert box_iou(np.zeros((0, 4)), GT).shape == (0, 2)


def test_perfect_detections_give_one_and_none_give_zero():
    assert average_precision([(GT, np.array([0.9, 0.8]))], [GT]).ap == pytest.approx(1.0)
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], [GT]).ap == 0.0
    assert average_precision([(GT, np.array([0.9, 0.8]))], [np.zeros((0, 4))]).ap == 0.0


def test_a_false_positive_between_two_hits():
    # scores 0.9 hit, 0.8 miss, 0.7 hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # the envelope at recall 1 is 2/3, so AP = 1/2 * 1 + 1/2 * 2/3
    boxes = np.array([[0, 0, 10, 20], [100, 100, 110, 120], [50, 0, 60, 20]], np.float32)
    result = average_precision([(boxes, np.array([0.9, 0.8, 0.7]))], [GT])
    assert result.ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert result.precision == pytest.approx([1, 0.5, 2 / 3])
    assert result.recall == pytest.approx([0.5, 0.5, 1.0])
    assert result.at_score(0.75) == pytest.approx((0.5, 0.5))
    assert result.at_score(0.95) == (1.0, 0.0)


def test_a_late_false_positive_costs_nothing_and_a_miss_caps_recall():
    boxes = np.array([[0, 0, 10, 20], [100, 100, 110, 120]], np.float32)
    assert average_precision([(boxes, np.array([0.9, 0.1]))], [GT]).ap == pytest.approx(0.5)


def test_each_person_is_found_once_and_iou_must_reach_the_threshold():
    twice = np.array([[0, 0, 10, 20], [0, 0, 10, 19]], np.float32)
    assert list(match_picture(twice, np.array([0.9, 0.95]), GT)) == [0, 1]  # the higher score takes it
    shifted = np.array([[5, 0, 15, 20]], np.float32)  # IoU 1/3 with the first person
    assert list(match_picture(shifted, np.array([0.9]), GT)) == [0]
    assert list(match_picture(shifted, np.array([0.9]), GT, iou_threshold=0.3)) == [1]
    # a detection between two people goes to the one it overlaps most that is still free
    both = np.array([[0, 0, 10, 20], [1, 0, 11, 20]], np.float32)
    assert list(match_picture(both, np.array([0.9, 0.8]), np.array([[0, 0, 10, 20], [2, 0, 12, 20]]))) == [1, 1]


def test_pictures_are_pooled_by_score_and_ignore_regions_are_neutral():
    a = (np.array([[0, 0, 10, 20]], np.float32), np.array([0.5]))  # hit in picture 1
    b = (np.array([[0, 0, 10, 20], [200, 0, 210, 20]], np.float32), np.array([0.9, 0.8]))  # miss, hit
    gt_b = np.array([[200, 0, 210, 20]], np.float32)
    result = average_precision([a, b], [GT[:1], gt_b])
    assert result.scores == pytest.approx([0.9, 0.8, 0.5])
    # miss (0.9), hit (0.8): precision 1/2 at recall 1/2; hit (0.5): 2/3 at recall 1, which the envelope
    # carries back to recall 1/2
    assert result.ap == pytest.approx(2 / 3)
    ignored = average_precision([a, b], [GT[:1], gt_b], ignore=[np.zeros((0, 4)), np.array([[0, 0, 10, 20]])])
    assert ignored.num_det == 2 and ignored.ap == pytest.approx(1.0)
    with pytest.raises(ValueError):
        average_precision([a], [GT, GT])


def _voc_reference(dets, gts, thr=0.5):
    """PASCAL VOC's devkit algorithm (voc_eval / voc_ap, use_07_metric=False), written independently:
    detections of all pictures sorted by score, each matched to the ground truth of highest IoU."""
    rows = sorted(((s, i, b) for i, (boxes, scores) in enumerate(dets) for b, s in zip(boxes, scores)),
                  key=lambda r: -r[0])
    used = [np.zeros(len(g), bool) for g in gts]
    tp = []
    for _, i, b in rows:
        g = gts[i]
        if len(g) == 0:
            tp.append(0)
            continue
        ix1, iy1 = np.maximum(g[:, 0], b[0]), np.maximum(g[:, 1], b[1])
        ix2, iy2 = np.minimum(g[:, 2], b[2]), np.minimum(g[:, 3], b[3])
        inter = np.maximum(ix2 - ix1, 0) * np.maximum(iy2 - iy1, 0)
        union = (b[2] - b[0]) * (b[3] - b[1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
        overlaps = inter / union
        j = int(np.argmax(overlaps))
        if overlaps[j] >= thr and not used[i][j]:
            used[i][j] = True
            tp.append(1)
        else:
            tp.append(0)
    tp = np.array(tp, float)
    npos = sum(len(g) for g in gts)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rec, prec = ctp / npos, ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for k in range(mpre.size - 1, 0, -1):
        mpre[k - 1] = max(mpre[k - 1], mpre[k])
    k = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[k + 1] - mrec[k]) * mpre[k + 1]))


def test_agrees_with_the_voc_devkit_on_scattered_people():
    # people far apart (no detection overlaps two of them), so VOC's rule (best IoU, taken or not) and
    # COCO's (best IoU among the free ones) agree; random jitter, misses, duplicates and false alarms
    rng = np.random.default_rng(0)
    for _ in range(20):
        dets, gts = [], []
        for _ in range(rng.integers(1, 6)):
            n = int(rng.integers(0, 6))
            g = np.array([[100 * k, 0, 100 * k + 30, 80] for k in range(n)], np.float64).reshape(-1, 4)
            boxes = []
            for box in g:
                for _ in range(rng.integers(0, 3)):  # missed, found, found twice
                    boxes.append(box + rng.normal(0, 6, 4))
            for _ in range(rng.integers(0, 3)):  # false alarms
                x = rng.uniform(0, 600)
                boxes.append([x, 200, x + 30, 280])
            boxes = np.array(boxes, np.float64).reshape(-1, 4)
            dets.append((boxes, rng.random(len(boxes))))
            gts.append(g)
        if sum(len(g) for g in gts) == 0:
            continue
        assert average_precision(dets, gts).ap == pytest.approx(_voc_reference(dets, gts), abs=1e-12)
