"""Pictures labelled in the YOLO format (Ultralytics, Roboflow exports): person boxes without identities.

Layout: a folder with ``images/`` (pictures of any size) and ``labels/`` (one ``NAME.txt`` per picture
``NAME.jpg``, one row ``class cx cy w h`` per box, the four numbers normalised to the picture's width
and height). A picture without a label file, or with an empty one, has no people. ``classes`` keeps the
rows of these class numbers only (default: every class is a person, as in a person-only data set with
several kinds of people).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcm_common.data.sources import IMAGE_EXTENSIONS, SourceError, read_image


@dataclass(frozen=True)
class YoloPicture:
    image_path: Path
    label_path: Path | None  # None: no label file (no people)

    @property
    def name(self) -> str:
        return self.image_path.name


def is_yolo_folder(path: str | Path) -> bool:
    """A folder with ``images/`` and ``labels/`` (and no MOTChallenge ``img1/``)."""
    path = Path(path)
    return (path / "images").is_dir() and (path / "labels").is_dir() and not (path / "img1").is_dir()


def yolo_pictures(folder: str | Path) -> list[YoloPicture]:
    """The pictures of a YOLO folder in file-name order, each with its label file (if any)."""
    folder = Path(folder)
    if not is_yolo_folder(folder):
        raise SourceError(f"{folder}: not a YOLO-format folder (images/ and labels/ expected)")
    images = sorted(p for p in (folder / "images").iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise SourceError(f"{folder}/images: no pictures")
    out = []
    for image in images:
        label = folder / "labels" / f"{image.stem}.txt"
        out.append(YoloPicture(image, label if label.is_file() else None))
    return out


def read_yolo_labels(path: Path | None, width: int, height: int, classes: Iterable[int] | None = None) -> np.ndarray:
    """(N, 4) float32 boxes (x1, y1, x2, y2) in pixels of a ``width`` x ``height`` picture; rows of
    other classes than ``classes`` (when given) are left out. A malformed row is an error."""
    keep = None if classes is None else {int(c) for c in classes}
    boxes = []
    if path is not None:
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 5:
                    raise ValueError(f"{len(fields)} fields")
                cls = int(fields[0])
                cx, cy, w, h = (float(v) for v in fields[1:])
            except ValueError as exc:
                raise SourceError(f"{path}:{number}: not a YOLO box row 'class cx cy w h' ({exc})") from None
            if not all(np.isfinite([cx, cy, w, h])) or w < 0 or h < 0:
                raise SourceError(f"{path}:{number}: not a box ({line.strip()})")
            if keep is not None and cls not in keep:
                continue
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
    out = np.array(boxes, np.float32).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def read_yolo_folder(folder: str | Path, classes: Iterable[int] | None = None,
                     first: int | None = None, last: int | None = None) -> Iterator[tuple[int, YoloPicture, np.ndarray, np.ndarray]]:
    """(1-based position, picture, RGB uint8 pixels, boxes x1y1x2y2) of every picture of a YOLO folder,
    from position ``first`` to ``last`` (both included) when given."""
    for index, picture in enumerate(yolo_pictures(folder), start=1):
        if (first is not None and index < first) or (last is not None and index > last):
            continue
        image = read_image(picture.image_path)
        yield index, picture, image, read_yolo_labels(picture.label_path, image.shape[1], image.shape[0], classes)
