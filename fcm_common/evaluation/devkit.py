"""The MOTChallenge devkit's CLEAR-MOT matching, frame by frame, as motmetrics events.

The devkit (``clearMOTMex``) differs from motmetrics' accumulator in three ways that change counts:

1. a correspondence is kept from the *previous frame* only (motmetrics keeps the last one ever);
2. the remaining pairs are solved by a shortest-augmenting-path min-cost matching whose costs
   carry a tie-breaker of 1e-9 per candidate pair, numbered over (ground-truth id, result id) in
   ascending order;
3. an identity switch is counted only for an object present in the previous frame.

This module reproduces those rules and records the outcome as motmetrics events (RAW distances
for every candidate pair, then MATCH / SWITCH / MISS / FP), so that motmetrics computes MOTA, MOTP,
IDF1 and the rest from them exactly as for its own accumulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

_INF = 1e9  # the devkit's "no edge"
_TIE = 1e-9  # the devkit's tie-breaker per candidate pair
_SLACK = 1e-10  # the devkit's tolerance for tight edges


def min_cost_matching(cost: Sequence[Sequence[float]]) -> list[int]:
    """Left-to-right assignment of a square cost matrix: the devkit's shortest augmenting paths.

    Dual variables start at the row minima and the column minima of the reduced costs; tight
    edges are taken greedily in row order; each still unmatched row (in order) is then matched along
    a shortest augmenting path (Dijkstra on reduced costs, the first closest column first).
    """
    n = len(cost)
    u = [min(row) for row in cost]
    v = [min(cost[i][j] - u[i] for i in range(n)) for j in range(n)]
    left, right = [-1] * n, [-1] * n
    mated = 0
    for i in range(n):
        for j in range(n):
            if right[j] == -1 and abs(cost[i][j] - u[i] - v[j]) < _SLACK:
                left[i], right[j] = j, i
                mated += 1
                break
    while mated < n:
        s = left.index(-1)
        dist = [cost[s][k] - u[s] - v[k] for k in range(n)]
        dad = [-1] * n
        seen = [False] * n
        while True:
            j = -1
            for k in range(n):
                if not seen[k] and (j == -1 or dist[k] < dist[j]):
                    j = k
            seen[j] = True
            if right[j] == -1:
                break
            i = right[j]
            for k in range(n):
                if not seen[k]:
                    candidate = dist[j] + cost[i][k] - u[i] - v[k]
                    if dist[k] > candidate:
                        dist[k] = candidate
                        dad[k] = j
        for k in range(n):
            if k != j and seen[k]:
                i = right[k]
                v[k] += dist[k] - dist[j]
                u[i] -= dist[k] - dist[j]
        u[s] += dist[j]
        while dad[j] >= 0:
            d = dad[j]
            right[j] = right[d]
            left[right[j]] = j
            j = d
        right[j] = s
        left[s] = j
        mated += 1
    return left


def clear_mot_events(acc, frames: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """Fill motmetrics accumulator ``acc`` with the devkit's events.

    ``frames`` maps a frame number to (ground-truth ids, result ids, distance matrix 1 - IoU with
    NaN where IoU < 0.5); ids must be unique within a frame. Frames absent from it are empty.
    """
    previous: dict[int, int] = {}  # object -> result matched in the previous frame
    previous_frame = None
    previous_objects: set[int] = set()
    last_match: dict[int, int] = {}  # object -> result of its last match, whenever it was
    for frame in sorted(frames):
        oids, hids, dist = frames[frame]
        oids = np.asarray(oids, dtype=np.int64)
        hids = np.asarray(hids, dtype=np.int64)
        dist = np.asarray(dist, dtype=float).reshape(len(oids), len(hids))
        consecutive = previous_frame is not None and frame == previous_frame + 1
        row = {int(o): i for i, o in enumerate(oids)}
        col = {int(h): j for j, h in enumerate(hids)}

        eid = 0

        def event(kind, oid, hid, d):
            nonlocal eid
            acc._append_to_indices(frame, eid)
            acc._append_to_events(kind, oid, hid, d)
            eid += 1

        event("RAW", np.nan, np.nan, np.nan)
        finite_i, finite_j = np.where(np.isfinite(dist))
        for i, j in zip(finite_i, finite_j):
            event("RAW", oids[i], hids[j], dist[i, j])
        for i in np.setdiff1d(np.arange(len(oids)), finite_i):
            event("RAW", oids[i], np.nan, np.nan)
        for j in np.setdiff1d(np.arange(len(hids)), finite_j):
            event("RAW", np.nan, hids[j], np.nan)

        # 1. correspondences of the previous frame that still overlap
        current: dict[int, int] = {}
        if consecutive:
            for o in sorted(previous):
                h = previous[o]
                if o in row and h in col and np.isfinite(dist[row[o], col[h]]):
                    current[o] = h
        # 2. the rest: min-cost matching with the devkit's tie-breaker
        free_o = sorted(o for o in row if o not in current)
        taken = set(current.values())
        free_h = sorted(h for h in col if h not in taken)
        size = max(len(free_o), len(free_h))
        if free_o and free_h:
            cost = [[_INF] * size for _ in range(size)]
            uid = 0
            for a, o in enumerate(free_o):
                for b, h in enumerate(free_h):
                    d = dist[row[o], col[h]]
                    if np.isfinite(d):
                        cost[a][b] = d + _TIE * uid
                        uid += 1
            for a, b in enumerate(min_cost_matching(cost)):
                if a < len(free_o) and b < len(free_h) and cost[a][b] != _INF:
                    current[free_o[a]] = free_h[b]
        # 3. events: a switch needs the object in the previous frame and an earlier, other match
        for o in sorted(current):
            h = current[o]
            switched = consecutive and o in previous_objects and o in last_match and last_match[o] != h
            event("SWITCH" if switched else "MATCH", o, h, dist[row[o], col[h]])
            last_match[o] = h
        for o in oids:
            if int(o) not in current:
                event("MISS", o, np.nan, np.nan)
        matched = set(current.values())
        for h in hids:
            if int(h) not in matched:
                event("FP", np.nan, h, np.nan)
        previous, previous_frame, previous_objects = current, frame, set(row)
    acc.dirty_events = True
    return acc
