"""Our tracker against recorded outputs of the official JDE tracker, bit for bit.

``tests/data/jde_tracker_reference.json`` holds what the public Towards-Realtime-MOT tracker
(``tracker/multitracker.py`` ``JDETracker.update`` with its ``matching.py``, ``kalman_filter.py``
and ``lap.lapjv``; only the network, NMS and ``cython_bbox`` stubbed, the latter by a line-by-line
port) returned for the detection streams made by :func:`detection_stream` below. The official code
was fed each frame's detections as its post-NMS ``dets`` rows ``(x1, y1, x2, y2, score, 0,
embedding)``; nothing of it is in this repository, only its outputs.

Per frame the file records the ids of the output tracks (after ``track.py``'s area/aspect filter),
the ids in the lost list, and a digest of the output boxes' float64 bytes; per stream a digest of
the generated detections, so that a changed generator is told apart from a changed tracker.

The streams are built to be hard: crossing paths, occlusions shorter and longer than the track
buffer, misses, false positives, boxes cut at the frame's left/top edge, appearance drift, and
pairs of identical "twins" (same box, embedding and score) that later part, so that the
assignment meets exact ties and must break them as ``lap.lapjv`` does.

Bit-identity holds on one machine: the official code and ours call the same numpy/scipy/lap
routines in the same order, but BLAS kernels (small matrix products, Cholesky solves) may round
differently on another CPU family than the one that recorded the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fcm_common.tracking.detections import Detections
from fcm_common.tracking.tracker import JDETracker, TrackState

REFERENCE = Path(__file__).parent / "data" / "jde_tracker_reference.json"


# ------------------------------------------------------------------------------ the generator
def _unit(v: np.ndarray) -> np.ndarray:
    """float64 unit vector, normalised with an exactly rounded sum (the same on every machine)."""
    return v / math.sqrt(math.fsum(float(x) * float(x) for x in v))


class _Person:
    def __init__(self, rng: np.random.Generator, frames: int, width: int, height: int, dim: int):
        self.start = int(rng.integers(1, max(2, frames - 10)))
        self.end = min(frames, self.start + int(rng.integers(15, frames + 1)))
        self.h = float(rng.uniform(45.0, 360.0))
        self.aspect = float(rng.uniform(0.32, 0.52))
        self.cx = float(rng.uniform(-0.05, 1.05) * width)
        self.cy = float(rng.uniform(0.25, 0.85) * height)
        self.vx = float(rng.uniform(-7.0, 7.0))
        self.vy = float(rng.uniform(-1.5, 1.5))
        self.jitter = float(rng.uniform(0.005, 0.04))  # box noise, fraction of the height
        self.look = _unit(rng.uniform(-1.0, 1.0, dim))
        self.drift = float(rng.uniform(0.05, 0.45))  # appearance noise per frame
        self.miss = float(rng.uniform(0.0, 0.12))
        # occlusions: (first frame, length), some longer than the 30-frame buffer
        self.hidden = set()
        for _ in range(int(rng.integers(0, 4))):
            first = int(rng.integers(self.start, self.end + 1))
            length = int(rng.choice([int(rng.integers(1, 12)), int(rng.integers(25, 45))]))
            self.hidden.update(range(first, first + length))

    def step(self, rng: np.random.Generator) -> None:
        if rng.random() < 0.03:  # turns
            self.vx = float(rng.uniform(-7.0, 7.0))
            self.vy = float(rng.uniform(-1.5, 1.5))
        self.cx += self.vx
        self.cy += self.vy
        self.h *= 1.0 + 0.002 * self.vy  # closer to the camera when walking down

    def box(self, rng: np.random.Generator) -> list[float]:
        w = self.aspect * self.h
        n = self.jitter * self.h
        x1, y1 = self.cx - w / 2 + rng.uniform(-n, n), self.cy - self.h / 2 + rng.uniform(-n, n)
        x2, y2 = self.cx + w / 2 + rng.uniform(-n, n), self.cy + self.h / 2 + rng.uniform(-n, n)
        return [x1, y1, x2, y2]

    def embedding(self, rng: np.random.Generator) -> np.ndarray:
        return _unit(self.look + rng.uniform(-self.drift, self.drift, self.look.shape))


def detection_stream(
    seed: int, frames: int, people: int = 14, twins: int = 2, width: int = 1920, height: int = 1080, dim: int = 128
) -> list[Detections]:
    """A deterministic stream of post-NMS detections, as ``postprocess`` would hand them over.

    Only uniform draws of numpy's PCG64 and IEEE arithmetic are used (no transcendental functions,
    no BLAS), so every machine generates the same float32 values.
    """
    rng = np.random.default_rng(seed)
    persons = [_Person(rng, frames, width, height, dim) for _ in range(people)]
    # twins: the same person twice for a while (identical rows), then they part
    pairs = []
    for _ in range(twins):
        a = _Person(rng, frames, width, height, dim)
        pairs.append((a, int(rng.integers(3, 25)), float(rng.uniform(2.0, 6.0))))
    out = []
    for f in range(1, frames + 1):
        rows = []
        for p in persons:
            p.step(rng)
            if p.start <= f <= p.end and f not in p.hidden and rng.random() >= p.miss:
                rows.append((p.box(rng), float(rng.uniform(0.501, 0.999)), p.embedding(rng)))
        for a, together, speed in pairs:
            a.step(rng)
            if not a.start <= f <= a.end or f in a.hidden:
                continue
            box, score, emb = a.box(rng), float(rng.uniform(0.501, 0.999)), a.embedding(rng)
            apart = max(0, f - a.start - together) * speed  # parted horizontally after `together` frames
            rows.append(([box[0] - apart, box[1], box[2] - apart, box[3]], score, emb))
            rows.append(([box[0] + apart, box[1], box[2] + apart, box[3]], score, emb.copy()))
        for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.15 else 0):  # false positives
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            w, h = rng.uniform(8, 200), rng.uniform(8, 160)  # some small, some wide
            rows.append(([x, y, x + w, y + h], float(rng.uniform(0.501, 0.8)), _unit(rng.uniform(-1, 1, dim))))
        if rng.random() < 0.02:
            rows = []  # a frame without detections
        # NMS order (descending score, stable), clamped at 0 like postprocess; never zero height
        rows.sort(key=lambda r: -r[1])
        tlbr = np.maximum(np.array([r[0] for r in rows], np.float64).reshape(-1, 4), 0.0)
        tlbr[:, 3] = np.maximum(tlbr[:, 3], tlbr[:, 1] + 1.0)
        tlbr[:, 2] = np.maximum(tlbr[:, 2], tlbr[:, 0] + 1.0)
        out.append(
            Detections(
                tlbr.astype(np.float32),
                np.array([r[1] for r in rows], np.float32),
                np.array([r[2] for r in rows], np.float32).reshape(-1, dim),
            )
        )
    return out


def stream_digest(stream: list[Detections]) -> str:
    h = hashlib.sha256()
    for d in stream:
        for a in (d.tlbr, d.scores, d.embeddings):
            h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
        h.update(b"|")
    return h.hexdigest()[:32]


def boxes_digest(rows: list[tuple[int, tuple[float, float, float, float]]]) -> str:
    """Digest of one frame's output: ids and tlwh as little-endian float64."""
    h = hashlib.sha256()
    for track_id, tlwh in rows:
        h.update(np.array([track_id], "<i8").tobytes() + np.array(tlwh, "<f8").tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ the test
def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


def _run_ours(stream: list[Detections], frame_rate: float, buffer_mode: str) -> list[dict]:
    tracker = JDETracker(frame_rate=frame_rate, buffer_mode=buffer_mode)
    frames = []
    for dets in stream:
        out = tracker.update(dets)
        rows = [(t.track_id, t.tlwh) for t in out]
        frames.append(
            {
                "ids": [i for i, _ in rows],
                "lost": [t.track_id for t in tracker.lost],
                "removed_in_lost": [t.track_id for t in tracker.lost if t.state == TrackState.REMOVED],
                "boxes": boxes_digest(rows),
            }
        )
    return frames


@pytest.mark.parametrize("name", sorted(_reference()["streams"]))  # a missing file: a collection error
def test_tracker_reproduces_the_official_jde_tracker_bit_for_bit(name):
    ref = _reference()["streams"][name]
    cfg = ref["config"]
    stream = detection_stream(**cfg["generator"])
    assert stream_digest(stream) == ref["detections"], "the generator no longer makes the recorded stream"
    ours = _run_ours(stream, cfg["frame_rate"], cfg["buffer_mode"])
    assert len(ours) == len(ref["frames"])
    for f, (mine, theirs) in enumerate(zip(ours, ref["frames"]), start=1):
        assert mine == theirs, f"{name}: frame {f} differs: ours {mine}, official {theirs}"


def test_the_recording_covers_both_buffer_modes_and_several_frame_rates():
    streams = _reference()["streams"].values()
    assert len(streams) >= 3
    assert {s["config"]["buffer_mode"] for s in streams} == {"framework", "jde"}
    assert len({s["config"]["frame_rate"] for s in streams}) >= 3
    assert all(len(s["frames"]) >= 50 for s in streams)
