"""JDE's online multi-object tracker (``JDETracker.update``), behaviour for behaviour.

Per frame:
1. Associate tracked and lost tracks (Kalman-predicted) with detections on appearance fused with
   motion (cost limit 0.7); matched lost tracks are re-found with their old id.
2. Associate the remaining *tracked* tracks with the remaining detections on IoU (limit 0.5);
   tracks still unmatched become lost.
3. Associate tracks born last frame ("unconfirmed") with what is left on IoU (limit 0.7); a
   match confirms them, no match removes them.
4. Start a track for every remaining detection (it is output from its second matched frame on).
5. Remove lost tracks older than the buffer, with JDE's bookkeeping order (an expired track stays
   in the lost list one more frame), and drop tracked/lost duplicates (IoU distance < 0.15).

Arithmetic and assignment follow the official code operation for operation (see
:mod:`fcm_common.tracking.kalman` and :mod:`fcm_common.tracking.matching`, ``lap.lapjv`` included):
on recorded streams our outputs equal the official tracker's bit for bit
(``tests/test_tracker_parity.py``).

Differences from the reference, deliberately:
- track ids restart at 1 for each tracker (JDE's counter is global to the process; metrics do not
  change);
- detections with zero height are dropped. The official tracker turns one into a track with an
  infinite aspect ratio and a NaN box: it is never output, never matched (its IoU is 0, its
  Mahalanobis distance infinite) and is removed on the next frame, but it takes a track id, so
  the ids of later tracks are offset by the number of such detections (the metrics do not change).
  A detection with zero width and height would even put NaN costs into the assignment.

Track buffer: the MPEG framework keeps lost tracks 30 frames whatever the frame rate
(``buffer_mode="framework"``, the default, for comparable numbers); the original JDE scales the
buffer by fps/30 (``buffer_mode="jde"``) with the frame rate rounded to an integer first, as its
demo does (``int(round(CAP_PROP_FPS))``; ``track.py`` reads integer rates from ``seqinfo.ini``):
29.97 fps keeps lost tracks 30 frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fcm_common.tracking import matching
from fcm_common.tracking.detections import Detections
from fcm_common.tracking.kalman import KalmanFilter

EMBEDDING_MOMENTUM = 0.9
FIRST_ASSOCIATION_LIMIT = 0.7
SECOND_ASSOCIATION_LIMIT = 0.5
UNCONFIRMED_ASSOCIATION_LIMIT = 0.7
DUPLICATE_IOU_DISTANCE = 0.15
MIN_BOX_AREA = 200.0
MAX_ASPECT = 1.6
BUFFER_MODES = ("framework", "jde")
BUFFER_HELP = "Lost-track buffer: 30 frames (MPEG framework) or 30 * fps / 30 (original JDE)."


class TrackState(IntEnum):
    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


class Track:
    """One tracklet: Kalman state, smoothed appearance, life-cycle bookkeeping."""

    def __init__(self, tlwh: np.ndarray, score: float, feature: np.ndarray):
        self._tlwh = np.asarray(tlwh, dtype=np.float64)
        self.score = score
        self.mean: np.ndarray | None = None
        self.covariance: np.ndarray | None = None
        self.track_id = 0
        self.state = TrackState.NEW
        self.is_activated = False
        self.frame_id = 0
        self.start_frame = 0
        self.tracklet_len = 0
        self.smooth_feat: np.ndarray | None = None
        self.curr_feat: np.ndarray | None = None
        self.update_features(np.array(feature, dtype=np.float32))

    # -- appearance
    def update_features(self, feat: np.ndarray) -> None:
        feat /= np.linalg.norm(feat)
        self.curr_feat = feat
        if self.smooth_feat is None:
            self.smooth_feat = feat  # shared with curr_feat, as in the reference
        else:
            self.smooth_feat = EMBEDDING_MOMENTUM * self.smooth_feat + (1 - EMBEDDING_MOMENTUM) * feat
        self.smooth_feat /= np.linalg.norm(self.smooth_feat)

    # -- geometry
    @property
    def tlwh(self) -> np.ndarray:
        if self.mean is None:
            return self._tlwh.copy()
        ret = self.mean[:4].copy()
        ret[2] *= ret[3]
        ret[:2] -= ret[2:] / 2
        return ret

    @property
    def tlbr(self) -> np.ndarray:
        ret = self.tlwh
        ret[2:] += ret[:2]
        return ret

    @staticmethod
    def tlwh_to_xyah(tlwh: np.ndarray) -> np.ndarray:
        ret = np.asarray(tlwh, dtype=np.float64).copy()
        ret[:2] += ret[2:] / 2
        ret[2] /= ret[3]
        return ret

    @property
    def end_frame(self) -> int:
        return self.frame_id

    # -- life cycle
    def activate(self, kf: KalmanFilter, track_id: int, frame_id: int) -> None:
        self.track_id = track_id
        self.mean, self.covariance = kf.initiate(self.tlwh_to_xyah(self._tlwh))
        self.tracklet_len = 0
        self.state = TrackState.TRACKED
        self.frame_id = frame_id
        self.start_frame = frame_id

    def re_activate(self, kf: KalmanFilter, det: Track, frame_id: int) -> None:
        self.mean, self.covariance = kf.update(self.mean, self.covariance, self.tlwh_to_xyah(det.tlwh))
        self.update_features(det.curr_feat)
        self.tracklet_len = 0
        self.state = TrackState.TRACKED
        self.is_activated = True
        self.frame_id = frame_id

    def update(self, kf: KalmanFilter, det: Track, frame_id: int) -> None:
        self.frame_id = frame_id
        self.tracklet_len += 1
        self.mean, self.covariance = kf.update(self.mean, self.covariance, self.tlwh_to_xyah(det.tlwh))
        self.state = TrackState.TRACKED
        self.is_activated = True
        self.score = det.score
        self.update_features(det.curr_feat)


@dataclass(frozen=True)
class TrackBox:
    """One output row: a confirmed track's box (tlwh, original-frame pixels) in one frame."""

    track_id: int
    tlwh: tuple[float, float, float, float]
    score: float


def buffer_frames(frame_rate: float, track_buffer: int = 30, mode: str = "framework") -> int:
    """How many frames a lost track is kept."""
    if mode not in BUFFER_MODES:
        raise ValueError(f"unknown buffer mode '{mode}' (choose from {', '.join(BUFFER_MODES)})")
    rate = 30 if mode == "framework" else int(round(frame_rate))
    return int(rate / 30.0 * track_buffer)


def _join(a: list[Track], b: list[Track]) -> list[Track]:
    seen = {t.track_id for t in a}
    out = list(a)
    for t in b:
        if t.track_id not in seen:
            seen.add(t.track_id)
            out.append(t)
    return out


def _subtract(a: list[Track], b: list[Track]) -> list[Track]:
    drop = {t.track_id for t in b}
    return [t for t in a if t.track_id not in drop]


def _remove_duplicates(a: list[Track], b: list[Track]) -> tuple[list[Track], list[Track]]:
    if not a or not b:
        return a, b
    dist = matching.iou_distance(np.array([t.tlbr for t in a]), np.array([t.tlbr for t in b]))
    drop_a, drop_b = set(), set()
    for p, q in zip(*np.where(dist < DUPLICATE_IOU_DISTANCE)):
        age_p = a[p].frame_id - a[p].start_frame
        age_q = b[q].frame_id - b[q].start_frame
        if age_p > age_q:
            drop_b.add(q)
        else:
            drop_a.add(p)
    return [t for i, t in enumerate(a) if i not in drop_a], [t for i, t in enumerate(b) if i not in drop_b]


class JDETracker:
    """Online tracker fed with one frame's :class:`Detections` at a time."""

    def __init__(
        self,
        frame_rate: float = 30.0,
        track_buffer: int = 30,
        buffer_mode: str = "framework",
        det_threshold: float = 0.5,
        min_box_area: float = MIN_BOX_AREA,
        max_aspect: float = MAX_ASPECT,
    ):
        self.max_time_lost = buffer_frames(frame_rate, track_buffer, buffer_mode)
        self.det_threshold = det_threshold
        self.min_box_area = min_box_area
        self.max_aspect = max_aspect
        self.kf = KalmanFilter()
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.removed: list[Track] = []
        self.frame_id = 0
        self._next_id = 0

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _predict(self, tracks: list[Track]) -> None:
        if not tracks:
            return
        means = np.asarray([t.mean.copy() for t in tracks])
        covs = np.asarray([t.covariance for t in tracks])
        for i, t in enumerate(tracks):
            if t.state != TrackState.TRACKED:
                means[i][7] = 0  # a lost track keeps drifting but stops changing height
        means, covs = self.kf.multi_predict(means, covs)
        for t, mean, cov in zip(tracks, means, covs):
            t.mean, t.covariance = mean, cov

    def update(self, detections: Detections) -> list[TrackBox]:
        """Advance one frame; returns the confirmed tracks that pass the output filter."""
        self.frame_id += 1
        frame = self.frame_id
        dets = []
        for tlbr, score, emb in zip(detections.tlbr, detections.scores, detections.embeddings):
            tlwh = tlbr.copy()
            tlwh[2:] -= tlwh[:2]  # in float32, as the reference converts its rows
            if tlwh[3] > 0:
                dets.append(Track(tlwh, float(score), emb))

        activated, refound, lost, removed = [], [], [], []
        unconfirmed = [t for t in self.tracked if not t.is_activated]
        confirmed = [t for t in self.tracked if t.is_activated]

        # 1. appearance + motion, over tracked and lost tracks
        pool = _join(confirmed, self.lost)
        self._predict(pool)
        cost = matching.embedding_distance([t.smooth_feat for t in pool], [d.curr_feat for d in dets])
        if cost.size:
            measurements = np.asarray([d.tlwh_to_xyah(d.tlwh) for d in dets])
            cost = matching.fuse_motion(
                self.kf, cost, [t.mean for t in pool], [t.covariance for t in pool], measurements
            )
        matches, u_track, u_det = matching.linear_assignment(cost, FIRST_ASSOCIATION_LIMIT)
        self._apply_matches(matches, pool, dets, frame, activated, refound)

        # 2. IoU, over the remaining tracked (not lost) tracks
        dets = [dets[i] for i in u_det]
        remaining = [pool[i] for i in u_track if pool[i].state == TrackState.TRACKED]
        cost = self._iou_cost(remaining, dets)
        matches, u_track, u_det = matching.linear_assignment(cost, SECOND_ASSOCIATION_LIMIT)
        self._apply_matches(matches, remaining, dets, frame, activated, refound)
        for it in u_track:
            track = remaining[it]
            if track.state != TrackState.LOST:
                track.state = TrackState.LOST
                lost.append(track)

        # 3. tracks born last frame, on IoU with their birth box
        dets = [dets[i] for i in u_det]
        cost = self._iou_cost(unconfirmed, dets)
        matches, u_unconfirmed, u_det = matching.linear_assignment(cost, UNCONFIRMED_ASSOCIATION_LIMIT)
        for it, idet in matches:
            unconfirmed[it].update(self.kf, dets[idet], frame)
            activated.append(unconfirmed[it])
        for it in u_unconfirmed:
            unconfirmed[it].state = TrackState.REMOVED
            removed.append(unconfirmed[it])

        # 4. new tracks
        for idet in u_det:
            det = dets[idet]
            if det.score < self.det_threshold:
                continue
            det.activate(self.kf, self._new_id(), frame)
            activated.append(det)

        # 5. expiry and bookkeeping (order as in the reference)
        for track in self.lost:
            if frame - track.end_frame > self.max_time_lost:
                track.state = TrackState.REMOVED
                removed.append(track)
        self.tracked = [t for t in self.tracked if t.state == TrackState.TRACKED]
        self.tracked = _join(self.tracked, activated)
        self.tracked = _join(self.tracked, refound)
        self.lost = _subtract(self.lost, self.tracked)
        self.lost.extend(lost)
        self.lost = _subtract(self.lost, self.removed)
        self.removed.extend(removed)
        self.tracked, self.lost = _remove_duplicates(self.tracked, self.lost)

        return self._output()

    def skip(self, frames: int) -> None:
        """``frames`` frames of the source that were never seen (a live encoder skipped them): time
        passes (the frame counter, the Kalman prediction of tracked and lost tracks, one step a frame,
        as ``update`` predicts them; lost tracks age) but no track is lost, confirmed or removed for
        want of a detection: the next frame associates as if these frames had not existed, with the
        motion of the whole gap. (A frame without detections would remove every track born on the
        frame before and mark the others lost: a stream that skips every other frame would then
        confirm no new track.) Not in the reference tracker, which sees every frame."""
        if frames <= 0:
            return
        pool = _join([t for t in self.tracked if t.is_activated], self.lost)
        # at most the track buffer's length in steps: a long gap stays cheap, and a track unmatched after it
        # is past the buffer anyway
        for _ in range(min(frames, self.max_time_lost + 1)):
            self._predict(pool)
        self.frame_id += frames

    def _apply_matches(self, matches, tracks, dets, frame, activated, refound) -> None:
        """A matched tracked track is updated; a matched lost one is re-found with its old id."""
        for it, idet in matches:
            track = tracks[it]
            if track.state == TrackState.TRACKED:
                track.update(self.kf, dets[idet], frame)
                activated.append(track)
            else:
                track.re_activate(self.kf, dets[idet], frame)
                refound.append(track)

    @staticmethod
    def _iou_cost(tracks: list[Track], dets: list[Track]) -> np.ndarray:
        if not tracks or not dets:
            return np.zeros((len(tracks), len(dets)))
        return matching.iou_distance(np.array([t.tlbr for t in tracks]), np.array([d.tlbr for d in dets]))

    def _output(self) -> list[TrackBox]:
        out = []
        for track in self.tracked:
            if not track.is_activated:
                continue
            x, y, w, h = (float(v) for v in track.tlwh)
            if w * h > self.min_box_area and not w / h > self.max_aspect:
                out.append(TrackBox(track.track_id, (x, y, w, h), float(track.score)))
        return out
