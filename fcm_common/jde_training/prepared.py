"""Prepared training data: every labelled picture of a run in one folder, ready to train on.

Gathering training data is slow (footage is decoded, teachers label it) and needs the original
footage; a prepared folder holds the result, so that a run on another machine (a GPU lent for a few
minutes) starts training at once. Layout::

    fcm-training-data.json   format, version, identities, the sources it was made from, picture origins
    images/000000.jpg ...    the pictures (JPEG, quality 80, original size)
    labels.npz               boxes, identities, ignore regions and teacher embeddings, by picture

Give the folder to ``fcm-train-jde`` as a SEQ; identities are renumbered after the other sources'.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from fcm_common.core.atomic import atomic_path
from fcm_common.jde_training.samples import LabelledImage, TrainingDataError

MARKER = "fcm-training-data.json"
FORMAT = "fcm-training-data"
VERSION = 1
JPEG_QUALITY = 80  # the pictures are already compressed footage; 80 keeps a 900-picture set near 25 MiB


def is_prepared(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def _stack(parts: list[np.ndarray], width: int, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, width), dtype)


def _shrink(im: LabelledImage, max_side: int) -> LabelledImage:
    """The picture scaled down (area interpolation) so that its longer side is ``max_side``, boxes with it."""
    h, w = im.image.shape[:2]
    if max(h, w) <= max_side:
        return im
    r = max_side / max(h, w)
    size = (round(w * r), round(h * r))
    fx, fy = size[0] / w, size[1] / h
    scale = np.array([fx, fy, fx, fy], np.float32)
    return LabelledImage(cv2.resize(im.image, size, interpolation=cv2.INTER_AREA), im.boxes * scale, im.ids,
                         im.ignore * scale, im.teacher, im.origin)


def save_prepared(images: list[LabelledImage], num_ids: int, summary: list[tuple[str, int, int]], folder: Path,
                  progress=None, max_side: int | None = None) -> int:
    """Write a prepared folder (refuses to overwrite one); returns its size in bytes. ``max_side``:
    larger pictures are scaled down to it (a smaller folder; the teachers labelled the originals)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise TrainingDataError(f"{folder} exists and is not empty: choose a new folder for the prepared data")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    owner = {"boxes": [], "ignore": []}
    parts = {"boxes": [], "ids": [], "ignore": [], "teacher": []}
    has_teacher = []
    for n, im in enumerate(images):
        if max_side:
            im = _shrink(im, max_side)
        ok, jpeg = cv2.imencode(".jpg", im.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise TrainingDataError(f"cannot encode picture {im.origin} as JPEG")
        (folder / "images" / f"{n:06d}.jpg").write_bytes(jpeg.tobytes())
        parts["boxes"].append(im.boxes.reshape(-1, 4))
        parts["ids"].append(im.ids)
        owner["boxes"].append(np.full(len(im.boxes), n))
        parts["ignore"].append(im.ignore.reshape(-1, 4))
        owner["ignore"].append(np.full(len(im.ignore), n))
        has_teacher.append(im.teacher is not None)
        if im.teacher is not None:
            parts["teacher"].append(im.teacher)
        if progress:
            progress(1)
    with atomic_path(folder / "labels.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, boxes=_stack(parts["boxes"], 4, np.float32), box_picture=np.concatenate(owner["boxes"] or [np.zeros(0)]).astype(np.int64),
                ids=np.concatenate(parts["ids"] or [np.zeros(0)]).astype(np.int64),
                ignore=_stack(parts["ignore"], 4, np.float32),
                ignore_picture=np.concatenate(owner["ignore"] or [np.zeros(0)]).astype(np.int64),
                teacher=_stack(parts["teacher"], 512, np.float16), has_teacher=np.array(has_teacher, bool))
    meta = {"format": FORMAT, "version": VERSION, "num_ids": num_ids, "pictures": len(images),
            "summary": [list(row) for row in summary], "origins": [im.origin for im in images]}
    with atomic_path(folder / MARKER) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1))
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def load_prepared(folder: Path, first_id: int = 0) -> tuple[list[LabelledImage], int, list[tuple[str, int, int]]]:
    """(pictures, identities, summary rows) of a prepared folder, identities numbered from ``first_id``."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{folder}: not a prepared training-data folder ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise TrainingDataError(f"{folder}: prepared data of format {meta.get('format')} v{meta.get('version')} "
                                f"is not supported (expected {FORMAT} v{VERSION})")
    try:
        labels = np.load(folder / "labels.npz")
        boxes, box_pic, ids = labels["boxes"], labels["box_picture"], labels["ids"]
        ignore, ignore_pic = labels["ignore"], labels["ignore_picture"]
        teacher, has_teacher = labels["teacher"].astype(np.float32), labels["has_teacher"]
    except (OSError, KeyError, ValueError) as exc:
        raise TrainingDataError(f"{folder}/labels.npz: cannot read the labels ({exc})") from None
    images, used = [], 0
    for n, origin in enumerate(meta["origins"]):
        path = folder / "images" / f"{n:06d}.jpg"
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise TrainingDataError(f"{path}: missing or not a picture")
        sel = box_pic == n
        emb = None
        if has_teacher[n]:
            emb = teacher[used:used + int(sel.sum())]
            used += int(sel.sum())
        pic_ids = ids[sel]
        pic_ids = np.where(pic_ids >= 0, pic_ids + first_id, -1)
        images.append(LabelledImage(np.ascontiguousarray(bgr[:, :, ::-1]), boxes[sel], pic_ids.astype(np.int64),
                                    ignore[ignore_pic == n], emb, origin))
    summary = [(f"{folder.name}/{row[0]}", int(row[1]), int(row[2])) for row in meta["summary"]]
    return images, int(meta["num_ids"]), summary
