"""Training pictures as the network sees them: letterboxed, then jittered like JDE's data loader.

JDE letterboxes to the network size first, then applies a random affine warp (scale, rotation,
translation, shear; grey borders), colour jitter on saturation and value in HSV, and a horizontal
flip. Boxes follow the warp (the enclosing box of the warped corners), are clipped to the picture,
and are dropped when too little of them is left. Everything is drawn from one numpy generator, so
a seeded run sees the same pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fcm_common.jde_training.samples import LabelledImage
from fcm_common.model.preprocess import PAD_VALUE, letterbox

MIN_SIDE = 2.0  # pixels: smaller boxes are dropped after the warp
MIN_KEPT_AREA = 0.25  # a box clipped to less than this share of its warped area is dropped


@dataclass(frozen=True)
class Jitter:
    scale: tuple[float, float] = (0.5, 1.2)
    degrees: float = 5.0
    translate: float = 0.1
    shear: float = 2.0
    saturation: float = 0.5
    value: float = 0.5
    flip: float = 0.5

    @classmethod
    def none(cls) -> Jitter:
        return cls((1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass
class NetworkSample:
    image: np.ndarray  # (H, W, 3) RGB uint8 at the network size
    boxes: np.ndarray  # (N, 4) normalised (cx, cy, w, h)
    ids: np.ndarray
    ignore: np.ndarray  # (M, 4) normalised (cx, cy, w, h)
    teacher: np.ndarray | None


def _warp_boxes(boxes: np.ndarray, matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    if len(boxes) == 0:
        return boxes.reshape(0, 4), np.zeros(0, bool)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], 1)  # N,4,2
    ones = np.ones((*corners.shape[:2], 1), np.float32)
    warped = np.concatenate([corners, ones], -1) @ matrix.T  # N,4,2
    lo, hi = warped.min(1), warped.max(1)
    area = (hi - lo).prod(1)
    lo_c = np.clip(lo, 0, [width, height])
    hi_c = np.clip(hi, 0, [width, height])
    side = hi_c - lo_c
    keep = (side.min(1) > MIN_SIDE) & (side.prod(1) > MIN_KEPT_AREA * np.maximum(area, 1e-9))
    return np.concatenate([lo_c, hi_c], 1).astype(np.float32), keep


def _to_cxcywh(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    return (np.concatenate([centre, size], 1) / [width, height, width, height]).astype(np.float32)


def make_sample(item: LabelledImage, width: int, height: int, jitter: Jitter, rng: np.random.Generator) -> NetworkSample:
    """Letterbox + jitter one labelled picture to the network size."""
    padded, box = letterbox(item.image, width, height)
    left, _, top, _ = box.padding
    to_input = np.array([[box.gain, 0, left], [0, box.gain, top]], np.float32)

    angle = rng.uniform(-jitter.degrees, jitter.degrees)
    scale = rng.uniform(*jitter.scale)
    rot = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    shear = np.eye(3, dtype=np.float32)
    shear[0, 1] = np.tan(np.radians(rng.uniform(-jitter.shear, jitter.shear)))
    shear[1, 0] = np.tan(np.radians(rng.uniform(-jitter.shear, jitter.shear)))
    move = np.eye(3, dtype=np.float32)
    move[0, 2] = rng.uniform(-jitter.translate, jitter.translate) * width
    move[1, 2] = rng.uniform(-jitter.translate, jitter.translate) * height
    affine = (move @ shear @ np.vstack([rot, [0, 0, 1]]).astype(np.float32))[:2]
    image = cv2.warpAffine(padded, affine, (width, height), flags=cv2.INTER_LINEAR,
                           borderValue=(PAD_VALUE,) * 3)
    full = (np.vstack([affine, [0, 0, 1]]) @ np.vstack([to_input, [0, 0, 1]]))[:2].astype(np.float32)

    if jitter.saturation or jitter.value:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= 1 + rng.uniform(-jitter.saturation, jitter.saturation)
        hsv[..., 2] *= 1 + rng.uniform(-jitter.value, jitter.value)
        image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)

    boxes, keep = _warp_boxes(item.boxes, full, width, height)
    ignore, keep_ignore = _warp_boxes(item.ignore, full, width, height)
    boxes, ids = boxes[keep], item.ids[keep]
    teacher = item.teacher[keep] if item.teacher is not None else None
    ignore = ignore[keep_ignore]
    if rng.random() < jitter.flip:
        image = np.ascontiguousarray(image[:, ::-1])
        boxes = boxes.copy()
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
        ignore = ignore.copy()
        ignore[:, [0, 2]] = width - ignore[:, [2, 0]]
    return NetworkSample(image, _to_cxcywh(boxes, width, height), ids, _to_cxcywh(ignore, width, height), teacher)
