"""Pretrained teachers run with onnxruntime (the optional ``[train]`` extra): YOLOX-Nano person boxes
and OSNet person embeddings, to label footage that has no ground truth.

YOLOX-Nano (COCO, 416x416): BGR picture scaled to fit, pasted top-left on a 114-grey square, raw
0..255 samples; its 3549 outputs per picture are ``(dx, dy, log w, log h, objectness, 80 class
scores)`` on 52/26/13 grids (strides 8/16/32), decoded here; score = objectness x person score,
then non-maximum suppression. OSNet-x0.25 (MSMT17): RGB crop resized to 128x256, ImageNet mean and
standard deviation, one 512-d embedding.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fcm_common.core.errors import FcmError
from fcm_common.data.sources import open_source
from fcm_common.jde_training.samples import LabelledImage

try:  # optional: only training with teacher labels needs it
    import onnxruntime
except ImportError:  # pragma: no cover - depends on the installation
    onnxruntime = None

YOLOX_SIZE = 416
YOLOX_STRIDES = (8, 16, 32)
YOLOX_PAD = 114
PERSON = 0
OSNET_SIZE = (128, 256)  # (W, H)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class TeacherError(FcmError, RuntimeError):
    """A teacher network that cannot be run."""


def _session(path: Path):
    if onnxruntime is None:
        raise TeacherError("teacher labels need onnxruntime: pip install 'fcm[train]'")
    if not Path(path).is_file():
        raise TeacherError(f"teacher model not found: {path}")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (highest score first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(i)
        lo = np.maximum(boxes[i, :2], boxes[order[1:], :2])
        hi = np.minimum(boxes[i, 2:], boxes[order[1:], 2:])
        inter = np.clip(hi - lo, 0, None).prod(1)
        iou = inter / (areas[i] + areas[order[1:]] - inter + 1e-9)
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int64)


class PersonDetector:
    """YOLOX-Nano person boxes: ``detect(rgb) -> (boxes x1y1x2y2, scores)``."""

    def __init__(self, path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.45):
        self.session = _session(path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        grids, strides = [], []
        for s in YOLOX_STRIDES:
            n = YOLOX_SIZE // s
            ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
            strides.append(np.full((n * n, 1), s))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.stride = np.concatenate(strides).astype(np.float32)

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        r = min(YOLOX_SIZE / h, YOLOX_SIZE / w)
        canvas = np.full((YOLOX_SIZE, YOLOX_SIZE, 3), YOLOX_PAD, np.uint8)
        nh, nw = int(h * r), int(w * r)
        canvas[:nh, :nw] = cv2.resize(rgb[:, :, ::-1], (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]
        centre = (out[:, :2] + self.grid) * self.stride
        size = np.exp(out[:, 2:4]) * self.stride
        scores = out[:, 4] * out[:, 5 + PERSON]
        sel = scores >= self.score_threshold
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)[sel] / r
        scores = scores[sel]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        keep = nms(boxes, scores, self.nms_threshold)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)


class AppearanceEncoder:
    """OSNet person embeddings of boxes in a picture: ``embed(rgb, boxes) -> (N, 512)`` L2-normalised."""

    def __init__(self, path: Path):
        self.session = _session(path)
        self.batched = self.session.get_inputs()[0].shape[0] != 1

    def embed(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops = []
        h, w = rgb.shape[:2]
        for x1, y1, x2, y2 in boxes:
            x1, y1 = int(max(0, np.floor(x1))), int(max(0, np.floor(y1)))
            x2, y2 = int(min(w, np.ceil(x2))), int(min(h, np.ceil(y2)))
            crop = rgb[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
            crop = cv2.resize(crop, OSNET_SIZE, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
            crops.append(((crop - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
        if not crops:
            return np.zeros((0, 512), np.float32)
        name = self.session.get_inputs()[0].name
        if self.batched:
            feats = self.session.run(None, {name: np.stack(crops)})[0]
        else:
            feats = np.concatenate([self.session.run(None, {name: c[None]})[0] for c in crops])
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def label_footage(
    path: Path,
    step: int,
    detector: PersonDetector,
    encoder: AppearanceEncoder | None,
    cache: Path | None = None,
    progress=None,
    keep_score: float | None = None,
    first: int = 1,
    last: int | None = None,
) -> list[LabelledImage]:
    """Every ``step``-th frame of unlabelled footage (of its frames ``first..last``, 1-based, counted
    from ``first``), with teacher boxes (no identities) and, with an
    encoder, teacher embeddings. Boxes the detector scores below ``keep_score`` (default: its own
    threshold) become ignore regions: the teacher is unsure, so the student is taught neither way.
    Labels are cached in ``cache`` (an .npz) when given: the teachers run once per footage and
    setting, a resumed training reads them back."""
    source = open_source(path)
    keep_score = detector.score_threshold if keep_score is None else keep_score
    labels = _read_cache(cache) if cache is not None and cache.is_file() else None
    images, computed = [], {"frame": [], "boxes": [], "scores": [], "embeddings": []}
    for index, frame in enumerate(source.frames(), start=1):
        if last is not None and index > last:
            break
        if index < first or (index - first) % step:
            continue
        if labels is not None:
            boxes, scores, emb = labels.get(index, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                                    np.zeros((0, 512), np.float32)))
        else:
            boxes, scores = detector.detect(frame)
            emb = encoder.embed(frame, boxes) if encoder is not None else np.zeros((len(boxes), 512), np.float32)
            computed["frame"].append(np.full(len(boxes), index))
            computed["boxes"].append(boxes)
            computed["scores"].append(scores)
            computed["embeddings"].append(emb)
        sure = scores >= keep_score
        images.append(LabelledImage(frame.copy(), boxes[sure], np.full(int(sure.sum()), -1, np.int64), boxes[~sure],
                                    teacher=emb[sure] if encoder is not None else None, origin=f"{source.name}:{index}"))
        if progress:
            progress(1)
    if labels is None and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, frame=np.concatenate(computed["frame"] or [np.zeros(0)]),
                            boxes=np.concatenate(computed["boxes"] or [np.zeros((0, 4))]),
                            scores=np.concatenate(computed["scores"] or [np.zeros(0)]),
                            embeddings=np.concatenate(computed["embeddings"] or [np.zeros((0, 512))]))
    return images


def _read_cache(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    data = np.load(path)
    scores = data["scores"] if "scores" in data else np.ones(len(data["frame"]), np.float32)
    out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for frame in np.unique(data["frame"]).astype(int):
        sel = data["frame"] == frame
        out[int(frame)] = (data["boxes"][sel].astype(np.float32), scores[sel].astype(np.float32),
                           data["embeddings"][sel].astype(np.float32))
    return out
