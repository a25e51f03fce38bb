"""Synthetic pedestrian-like sequences with ground truth, for tests, demos and smoke runs.

Nothing here pretends to be real data: a smooth textured background with upright, textured boxes
("walkers") moving at constant speed, written as a MOTChallenge sequence folder (``img1/``,
``gt/gt.txt``, ``seqinfo.ini``) or as an mp4. It gives every part of fcm (JDE with random weights,
the codecs, the tracker and the evaluation) inputs with structure and a known answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np


@dataclass
class Walker:
    x: float
    y: float
    w: float
    h: float
    vx: float
    vy: float
    colour: np.ndarray
    stripe: int


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    coarse = rng.uniform(40, 200, size=(4, 6, 3)).astype(np.float32)
    base = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(rng.normal(0, 12, size=(height, width, 3)).astype(np.float32), (0, 0), 2)
    return np.clip(base + texture, 0, 255)


def _walkers(rng: np.random.Generator, count: int, width: int, height: int) -> list[Walker]:
    walkers = []
    for _ in range(count):
        h = rng.uniform(0.25, 0.45) * height
        w = h * rng.uniform(0.35, 0.45)
        walkers.append(
            Walker(
                x=rng.uniform(0, width - w),
                y=rng.uniform(0.2 * height, height - h),
                w=w,
                h=h,
                vx=rng.uniform(-0.012, 0.012) * width,
                vy=rng.uniform(-0.002, 0.002) * height,
                colour=rng.uniform(0, 255, size=3),
                stripe=int(rng.integers(4, 12)),
            )
        )
    return walkers


def render_sequence(
    num_frames: int = 8, width: int = 640, height: int = 360, num_walkers: int = 4, seed: int = 0
) -> tuple[list[np.ndarray], list[tuple[int, int, float, float, float, float]]]:
    """Frames (RGB uint8) and ground-truth rows ``(frame, id, x, y, w, h)`` (1-based frames)."""
    rng = np.random.default_rng(seed)
    background = _background(rng, width, height)
    walkers = _walkers(rng, num_walkers, width, height)
    frames, truth = [], []
    for f in range(num_frames):
        img = background.copy()
        for wid, wk in enumerate(walkers, start=1):
            x, y = wk.x + wk.vx * f, wk.y + wk.vy * f
            x0, y0 = int(round(x)), int(round(y))
            x1, y1 = int(round(x + wk.w)), int(round(y + wk.h))
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            rows = np.arange(cy0, cy1)[:, None]
            shade = 0.75 + 0.25 * (((rows - y0) // wk.stripe) % 2)
            img[cy0:cy1, cx0:cx1] = wk.colour * shade[..., None]
            # a darker "head" band for some vertical structure
            head = min(cy0 + max(int(wk.h * 0.18), 1), cy1)
            img[cy0:head, cx0:cx1] *= 0.55
            truth.append((f + 1, wid, float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames, truth


def write_mot_sequence(
    folder: str | Path,
    num_frames: int = 8,
    width: int = 640,
    height: int = 360,
    fps: float = 30,
    num_walkers: int = 4,
    seed: int = 0,
    name: str | None = None,
) -> Path:
    """Write a MOTChallenge sequence folder; returns its path."""
    folder = Path(folder)
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(exist_ok=True)
    frames, truth = render_sequence(num_frames, width, height, num_walkers, seed)
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / "img1" / f"{i:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with open(folder / "gt" / "gt.txt", "w") as fh:
        for f, tid, x, y, w, h in truth:
            # MOTChallenge gt: 1-based pixels, conf/mark 1, class 1 (pedestrian), visibility 1
            fh.write(f"{f},{tid},{x + 1:.0f},{y + 1:.0f},{w:.0f},{h:.0f},1,1,1\n")
    (folder / "seqinfo.ini").write_text(
        "[Sequence]\n"
        f"name={name or folder.name}\n"
        "imDir=img1\n"
        f"frameRate={fps:g}\n"
        f"seqLength={num_frames}\n"
        f"imWidth={width}\n"
        f"imHeight={height}\n"
        "imExt=.png\n"
    )
    return folder


def write_video(path: str | Path, num_frames: int = 8, width: int = 640, height: int = 360, fps: float = 30, seed: int = 0) -> Path:
    """Write the synthetic sequence as a losslessly coded video (FFV1 in .mkv, or .avi/.mp4 by name)."""
    path = Path(path)
    frames, _ = render_sequence(num_frames, width, height, seed=seed)
    codec = "libx264rgb" if path.suffix == ".mp4" else "ffv1"
    params = ["-qp", "0"] if codec == "libx264rgb" else []
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec=codec, pix_fmt_in="rgb24",
        pix_fmt_out="rgb24" if codec == "libx264rgb" else "bgr0", output_params=params, macro_block_size=1,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path
