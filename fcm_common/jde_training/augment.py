"""Training pictures as the network sees them: letterboxed, then jittered like JDE's data loader,
and beyond it so that one scene teaches people of every size.

JDE letterboxes to the network size first, then applies a random affine warp (scale, rotation,
translation, shear; grey borders), colour jitter on saturation and value in HSV, and a horizontal
flip. Boxes follow the warp (the enclosing box of the warped corners), are clipped to the picture,
and are dropped when too little of them is left (what is dropped becomes an ignore region: a
person cut by the border is neither taught as a person nor as background).

What fcm adds, because its training footage is a few static cameras:

- **zoom to a person size**: most of the time the scale is chosen so that the picture's median
  person ends up ``target_height`` pixels tall (log-uniform, 16..320 by default: every anchor of
  every head sees positives), and the translation puts a random person at a random place, so that a
  zoom-in shows people rather than empty ground. Zoom-outs are resampled with area interpolation
  (as inference letterboxes) before the warp; zoom-ins are warped once from the original pixels.
- a small **perspective** distortion (other camera heights and tilts);
- **blur** (defocus or motion) and sensor **noise**;
- **night**: darker, bluer, noisier pictures; and sometimes **grey** ones.

Every draw comes from the generator passed in, so a seeded run sees the same pictures; the
trainer gives each sample its own generator (seeded by the run's seed and the sample's number), so
the pictures do not depend on how many worker processes prepare them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from fcm_common.jde_training.samples import LabelledImage
from fcm_common.model.preprocess import PAD_VALUE, Letterbox, letterbox

MIN_SIDE = 2.0  # pixels: smaller boxes are dropped after the warp
MIN_KEPT_AREA = 0.25  # a box clipped to less than this share of its warped area is dropped (ignored)
MIN_PERSON_HEIGHT = 12.0  # pixels: smaller people match no anchor (the smallest is 16 px tall): ignored


@dataclass(frozen=True)
class Jitter:
    scale: tuple[float, float] = (0.5, 1.2)
    degrees: float = 5.0
    translate: float = 0.1
    shear: float = 2.0
    saturation: float = 0.5
    value: float = 0.5
    flip: float = 0.5
    # fcm's additions (all off in JDE's own jitter, see `jde`)
    zoom: float = 0.0  # probability of choosing the scale by a target person height
    target_height: tuple[float, float] = (16.0, 320.0)  # pixels at the network input, log-uniform
    zoom_limits: tuple[float, float] = (0.2, 6.0)  # the scale a zoom may take
    perspective: float = 0.0  # corner displacement, share of the picture size
    blur: float = 0.0  # probability of a defocus or motion blur
    night: float = 0.0  # probability of a night-time picture
    grey: float = 0.0  # probability of a grey picture
    noise: float = 0.0  # probability of sensor noise

    @classmethod
    def none(cls) -> Jitter:
        return cls((1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def jde(cls) -> Jitter:
        """JDE's own data loader jitter (what fcm used before the size and scene augmentation)."""
        return cls()

    @classmethod
    def wide(cls) -> Jitter:
        """Every size from 16 to 320 pixels, other camera angles, blur, night and grey pictures."""
        return cls(scale=(0.5, 1.5), zoom=0.75, perspective=0.04, blur=0.15, night=0.15, grey=0.05, noise=0.15)

    @classmethod
    def mild(cls) -> Jitter:
        """Between the two, for fine-tuning beside a scene that must be kept: JDE's scales most of
        the time (a scene's own person sizes stay the common case), the zoom to a person size a
        third of the time, and the scene changes of ``wide`` more rarely."""
        return cls(scale=(0.5, 1.2), zoom=0.35, perspective=0.02, blur=0.08, night=0.05, grey=0.05, noise=0.08)

    @classmethod
    def from_dict(cls, d: dict) -> Jitter:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class NetworkSample:
    image: np.ndarray  # (H, W, 3) RGB uint8 at the network size
    boxes: np.ndarray  # (N, 4) normalised (cx, cy, w, h)
    ids: np.ndarray
    ignore: np.ndarray  # (M, 4) normalised (cx, cy, w, h)
    teacher: np.ndarray | None


def _warp_boxes(boxes: np.ndarray, matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x1, y1, x2, y2) through a 3x3 projective matrix: the enclosing box of the warped
    corners, clipped to the picture; also which boxes keep enough of themselves to be kept."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), np.zeros(0, bool)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], 1)  # N,4,2
    ones = np.ones((*corners.shape[:2], 1), np.float64)
    warped = np.concatenate([corners, ones], -1) @ np.asarray(matrix, np.float64).T  # N,4,3
    warped = warped[..., :2] / warped[..., 2:3]
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


def _scale_and_move(item: LabelledImage, gain: float, width: int, height: int, jitter: Jitter,
                    rng: np.random.Generator) -> tuple[float, float, float]:
    """(scale about the picture centre, x and y translation in pixels)."""
    heights = (item.boxes[:, 3] - item.boxes[:, 1]) * gain if len(item.boxes) else np.zeros(0)
    zoomed = len(heights) > 0 and rng.random() < jitter.zoom
    if zoomed:
        lo, hi = (math.log(v) for v in jitter.target_height)
        target = math.exp(rng.uniform(lo, hi))
        scale = float(np.clip(target / max(float(np.median(heights)), 1.0), *jitter.zoom_limits))
    else:
        scale = rng.uniform(*jitter.scale)
    if zoomed and scale > 1:
        # put one person (its centre after scaling about the picture centre) somewhere in view
        x1, y1, x2, y2 = item.boxes[rng.integers(len(item.boxes))] * gain
        cx = ((x1 + x2) / 2 + (width - item.image.shape[1] * gain) / 2 - width / 2) * scale + width / 2
        cy = ((y1 + y2) / 2 + (height - item.image.shape[0] * gain) / 2 - height / 2) * scale + height / 2
        return scale, rng.uniform(0.1, 0.9) * width - cx, rng.uniform(0.1, 0.9) * height - cy
    reach = abs(scale - 1) / 2 if zoomed else 0.0
    tx = rng.uniform(-(jitter.translate + reach), jitter.translate + reach) * width
    ty = rng.uniform(-(jitter.translate + reach), jitter.translate + reach) * height
    return scale, tx, ty


def _perspective(width: int, height: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    if amount <= 0:
        return np.eye(3)
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    dst = src + rng.uniform(-amount, amount, (4, 2)).astype(np.float32) * [width, height]
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32)).astype(np.float64)


def _render(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """The original picture through ``matrix`` (original pixels -> network pixels). A shrinking
    matrix first resamples with area interpolation (as the letterbox does), then warps the rest."""
    gain = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if gain < 0.8:
        small = cv2.resize(image, None, fx=gain, fy=gain, interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
        image, matrix = small, matrix @ np.diag([1 / fx, 1 / fy, 1.0])
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderValue=(PAD_VALUE,) * 3)


def _blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.8))
    length = int(rng.integers(3, 9))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))


def _colour(image: np.ndarray, jitter: Jitter, rng: np.random.Generator) -> np.ndarray:
    if jitter.saturation or jitter.value:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= 1 + rng.uniform(-jitter.saturation, jitter.saturation)
        hsv[..., 2] *= 1 + rng.uniform(-jitter.value, jitter.value)
        image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    noisy = False
    if jitter.night and rng.random() < jitter.night:
        x = (image.astype(np.float32) / 255.0) ** rng.uniform(1.4, 2.6) * rng.uniform(0.45, 0.9)
        x *= np.array([rng.uniform(0.75, 0.95), rng.uniform(0.85, 1.0), 1.0], np.float32)  # bluer
        image = np.clip(x * 255.0, 0, 255).astype(np.uint8)
        noisy = True
    if jitter.grey and rng.random() < jitter.grey:
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if noisy or (jitter.noise and rng.random() < jitter.noise):
        sigma = rng.uniform(2.0, 8.0)
        image = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
    return image


def make_sample(item: LabelledImage, width: int, height: int, jitter: Jitter, rng: np.random.Generator) -> NetworkSample:
    """Letterbox + jitter one labelled picture to the network size."""
    box = Letterbox(item.image.shape[1], item.image.shape[0], width, height)
    left, _, top, _ = box.padding
    new_w, new_h = box.content_size
    to_input = np.array([[new_w / box.orig_width, 0, left], [0, new_h / box.orig_height, top], [0, 0, 1]])

    scale, tx, ty = _scale_and_move(item, box.gain, width, height, jitter, rng)
    angle = rng.uniform(-jitter.degrees, jitter.degrees)
    rot = np.vstack([cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale), [0, 0, 1]])
    shear = np.eye(3)
    shear[0, 1] = math.tan(math.radians(rng.uniform(-jitter.shear, jitter.shear)))
    shear[1, 0] = math.tan(math.radians(rng.uniform(-jitter.shear, jitter.shear)))
    move = np.eye(3)
    move[0, 2], move[1, 2] = tx, ty
    matrix = _perspective(width, height, jitter.perspective, rng) @ move @ shear @ rot @ to_input
    if np.allclose(matrix, to_input):  # no geometric jitter: exactly the letterbox of inference
        image = letterbox(item.image, width, height)[0]
    else:
        image = _render(item.image, matrix, width, height)
    if jitter.blur and rng.random() < jitter.blur:
        image = _blur(image, rng)
    image = _colour(image, jitter, rng)

    boxes, keep = _warp_boxes(item.boxes, matrix, width, height)
    ignore, keep_ignore = _warp_boxes(item.ignore, matrix, width, height)
    keep &= (boxes[:, 3] - boxes[:, 1]) >= MIN_PERSON_HEIGHT
    cut = boxes[~keep]  # people the border cut too much, or too small for any anchor: ignored, not background
    cut = cut[(cut[:, 2] - cut[:, 0] > 1) & (cut[:, 3] - cut[:, 1] > 1)]
    boxes, ids = boxes[keep], item.ids[keep]
    teacher = item.teacher[keep] if item.teacher is not None else None
    ignore = np.concatenate([ignore[keep_ignore], cut]).astype(np.float32)
    if rng.random() < jitter.flip:
        image = np.ascontiguousarray(image[:, ::-1])
        boxes = boxes.copy()
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
        ignore = ignore.copy()
        ignore[:, [0, 2]] = width - ignore[:, [2, 0]]
    return NetworkSample(image, _to_cxcywh(boxes, width, height), ids, _to_cxcywh(ignore, width, height), teacher)
