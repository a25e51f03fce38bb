import numpy as np
import pytest

from fcm_common.tracking.detections import Detections
from fcm_common.tracking.kalman import KalmanFilter
from fcm_common.tracking.matching import iou_plus1, linear_assignment
from fcm_common.tracking.tracker import JDETracker, TrackState, buffer_frames


def _embedding(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    return v / np.linalg.norm(v)


def _frame(objects) -> Detections:
    """objects: list of (x, y, w, h, embedding) in original-frame pixels."""
    if not objects:
        return Detections.empty()
    tlbr = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in objects], np.float32)
    return Detections(tlbr, np.full(len(objects), 0.9, np.float32), np.stack([e for *_, e in objects]))


def test_a_steadily_moving_object_keeps_its_id_across_a_short_occlusion():
    walker, standing = _embedding(1), _embedding(2)
    tracker = JDETracker(frame_rate=30)
    outputs, lost = [], []
    for f in range(1, 16):
        objects = [(400.0, 300.0, 40.0, 110.0, standing)]
        if not 8 <= f <= 10:  # hidden on frames 8-10
            objects.append((100.0 + 6 * f, 200.0, 40.0, 100.0, walker))
        outputs.append({t.track_id: t.tlwh for t in tracker.update(_frame(objects))})
        lost.append([t.track_id for t in tracker.lost if t.state == TrackState.LOST])
    assert outputs[0] == {}  # nothing is output on the first frame
    assert sorted(outputs[1]) == [1, 2]  # confirmed on the second
    assert all(sorted(o) == [1, 2] for o in outputs[1:7])
    walker_id = next(i for i, b in outputs[6].items() if b[0] < 300)
    for f in (8, 9, 10):
        assert walker_id not in outputs[f - 1]
        assert lost[f - 1] == [walker_id]
    assert lost[10] == []
    # re-found by appearance and motion, with the same id, where it should be
    assert sorted(outputs[10]) == [1, 2]
    assert outputs[14][walker_id][0] == pytest.approx(100 + 6 * 15, abs=3)


def test_lost_tracks_expire_one_frame_late_as_in_the_reference():
    person = _embedding(3)
    tracker = JDETracker(frame_rate=50)  # framework buffer: 30 frames whatever the frame rate
    assert tracker.max_time_lost == 30
    for _ in range(1, 13):
        tracker.update(_frame([(300.0, 200.0, 50.0, 120.0, person)]))
    for _ in range(13, 44):
        tracker.update(Detections.empty())
    # frame 43: 43 - 12 = 31 > 30, marked removed, but still in the lost list for one more frame
    assert [t.track_id for t in tracker.lost] == [1]
    assert tracker.lost[0].state == TrackState.REMOVED
    tracker.update(Detections.empty())  # frame 44
    assert tracker.lost == []
    # a reappearance now starts a new track
    tracker.update(_frame([(300.0, 200.0, 50.0, 120.0, person)]))
    out = tracker.update(_frame([(300.0, 200.0, 50.0, 120.0, person)]))
    assert [t.track_id for t in out] == [2]


def test_a_track_expired_on_this_frame_can_still_be_refound_on_the_next():
    person = _embedding(4)
    tracker = JDETracker()
    for _ in range(1, 13):
        tracker.update(_frame([(300.0, 200.0, 50.0, 120.0, person)]))
    for _ in range(13, 44):
        tracker.update(Detections.empty())
    out = tracker.update(_frame([(300.0, 200.0, 50.0, 120.0, person)]))  # frame 44
    assert [t.track_id for t in out] == [1]


def test_output_filter_drops_small_and_wide_boxes():
    tracker = JDETracker()
    objects = [
        (10.0, 10.0, 10.0, 19.0, _embedding(5)),  # area 190 <= 200
        (100.0, 100.0, 80.0, 40.0, _embedding(6)),  # w/h = 2 > 1.6
        (300.0, 100.0, 30.0, 80.0, _embedding(7)),
    ]
    tracker.update(_frame(objects))
    out = tracker.update(_frame(objects))
    assert len(out) == 1 and out[0].tlwh == pytest.approx((300, 100, 30, 80), abs=1e-6)
    assert len(tracker.tracked) == 3


def test_buffer_modes():
    assert buffer_frames(50, mode="framework") == 30
    assert buffer_frames(50, mode="jde") == 50
    assert buffer_frames(29.97, mode="jde") == 30  # rounded, as the official demo does
    assert buffer_frames(12.5, mode="jde") == 12  # Python rounds half to even
    with pytest.raises(ValueError, match="unknown buffer mode"):
        buffer_frames(30, mode="nope")
    assert JDETracker(frame_rate=50, buffer_mode="jde").max_time_lost == 50


def test_iou_uses_the_plus_one_pixel_convention():
    a = np.array([[0, 0, 9, 9]], float)  # 10 x 10 pixels
    b = np.array([[5, 0, 14, 9]], float)  # overlaps 5 x 10
    assert iou_plus1(a, b)[0, 0] == pytest.approx(50 / 150)
    assert iou_plus1(a, np.array([[10, 10, 20, 20]], float))[0, 0] == 0.0


def test_linear_assignment_solves_the_extended_cost_matrix(rng):
    """Without ties, the optimum of the (n+m) x (n+m) matrix with L/2 outside the costs."""
    from scipy.optimize import linear_sum_assignment

    for trial in range(200):
        n, m = rng.integers(1, 7, size=2)
        cost = rng.uniform(0, 1.2, size=(n, m))
        cost[rng.uniform(size=(n, m)) < 0.2] = np.inf
        limit = float(rng.choice([0.5, 0.7]))
        matches, u_rows, u_cols = linear_assignment(cost, limit)
        extended = np.full((n + m, n + m), limit / 2)
        extended[n:, m:] = 0
        extended[:n, :m] = cost
        rows, cols = linear_sum_assignment(extended)
        assert matches == [(int(r), int(c)) for r, c in zip(rows, cols) if r < n and c < m], (trial, cost, limit)
        assert sorted(u_rows + [r for r, _ in matches]) == list(range(n))
        assert sorted(u_cols + [c for _, c in matches]) == list(range(m))


def test_exact_ties_are_broken_as_lapjv_breaks_them():
    # two identical tracks (equal rows): lapjv gives the first track the first column here, and
    # crosses them when every entry is equal; scipy's solver does the opposite in both cases
    assert linear_assignment(np.array([[0.3, 0.5], [0.3, 0.5]]), 0.7)[0] == [(0, 0), (1, 1)]
    assert linear_assignment(np.array([[0.2, 0.2], [0.2, 0.2]]), 0.7)[0] == [(0, 1), (1, 0)]


def test_assignment_is_not_hungarian_then_threshold():
    # Hungarian on the raw costs picks (0,1) + (1,0) = 0.6 + 0.6 = 1.2 over (0,0) + (1,1) = 0.1 + 1.5
    # and would keep both pairs (each <= 0.7). With the cost limit the optimum is (0,0) alone.
    cost = np.array([[0.1, 0.6], [0.6, 1.5]])
    matches, u_rows, u_cols = linear_assignment(cost, 0.7)
    assert matches == [(0, 0)] and u_rows == [1] and u_cols == [1]


def test_kalman_filter_follows_constant_velocity():
    kf = KalmanFilter()
    mean, cov = kf.initiate(np.array([100.0, 50.0, 0.4, 100.0]))
    for step in range(1, 20):
        means, covs = kf.multi_predict(mean[None], cov[None])
        mean, cov = kf.update(means[0], covs[0], np.array([100.0 + 5 * step, 50.0, 0.4, 100.0]))
    assert mean[4] == pytest.approx(5.0, abs=0.3)
    assert kf.gating_distance(mean, cov, np.array([[mean[0], 50, 0.4, 100], [mean[0] + 80, 50, 0.4, 100]])).tolist()[0] < 1
    assert kf.gating_distance(mean, cov, np.array([[mean[0] + 80, 50, 0.4, 100]]))[0] > 9.4877
