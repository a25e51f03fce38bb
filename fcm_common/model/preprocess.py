"""JDE input pre-processing, as the MPEG framework (and JDE's ``track.py``) does it.

Letterbox to the network size keeping the aspect ratio: resize with OpenCV's area interpolation to
``round(W*r) x round(H*r)``, ``r = min(608/H, 1088/W)``, and pad with grey. JDE asks OpenCV for a
127.5 border, which OpenCV saturates to 128 in uint8, so 128 is what the network sees. Then RGB,
CHW, float32 / 255, no mean or standard deviation. A 1920x1080 or 1280x720 frame becomes
1081x608 content with a 3-pixel bar on the left and a 4-pixel bar on the right.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from fcm_common.data.sources import FrameSource

PAD_VALUE = 128


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox operation (all that is needed to map boxes back)."""

    orig_width: int
    orig_height: int
    input_width: int = 1088
    input_height: int = 608

    @property
    def gain(self) -> float:
        return min(self.input_height / self.orig_height, self.input_width / self.orig_width)

    @property
    def content_size(self) -> tuple[int, int]:
        """(width, height) of the resized picture inside the padded frame."""
        return round(self.orig_width * self.gain), round(self.orig_height * self.gain)

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) grey bars, split as JDE splits odd paddings."""
        new_w, new_h = self.content_size
        dw = (self.input_width - new_w) / 2
        dh = (self.input_height - new_h) / 2
        return round(dw - 0.1), round(dw + 0.1), round(dh - 0.1), round(dh + 0.1)


def letterbox(image: np.ndarray, input_width: int = 1088, input_height: int = 608) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an (H, W, 3) uint8 image; returns the padded image and its geometry."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    box = Letterbox(image.shape[1], image.shape[0], input_width, input_height)
    new_w, new_h = box.content_size
    left, right, top, bottom = box.padding
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, box


def to_tensor(padded_rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    chw = np.ascontiguousarray(padded_rgb.transpose(2, 0, 1), dtype=np.float32)
    chw /= 255.0
    return torch.from_numpy(chw)


def preprocess(image_rgb: np.ndarray, input_width: int = 1088, input_height: int = 608) -> tuple[torch.Tensor, Letterbox]:
    """One RGB frame -> JDE input tensor (3, H, W) and its letterbox geometry."""
    padded, box = letterbox(image_rgb, input_width, input_height)
    return to_tensor(padded), box


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def network_inputs(
    source: FrameSource, input_width: int = 1088, input_height: int = 608, batch_size: int = 1
) -> Iterator[tuple[torch.Tensor, list[Letterbox]]]:
    """Batches of letterboxed frames ``(B, 3, H, W)`` with the geometry of each frame."""
    for frames in batched(source.frames(), batch_size):
        pairs = [preprocess(f, input_width, input_height) for f in frames]
        yield torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]
