"""Everything a JDE training run learns from: labelled sequences, prepared folders, YOLO-format labelled
pictures and teacher-labelled footage.

Pictures without identities (teacher-labelled footage, YOLO-format folders) carry boxes with identity
-1 and, when an OSNet teacher is given, its embedding of every box: they train the detection heads and
the appearance distillation, not the identity classifier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcm_common.data.yolo_labels import is_yolo_folder, read_yolo_folder, yolo_pictures
from fcm_common.jde_training.prepared import is_prepared, load_prepared
from fcm_common.jde_training.samples import LabelledImage, SequenceSpec, TrainingDataError, load_sequence
from fcm_common.jde_training.teachers import AppearanceEncoder, PersonDetector, label_footage


@dataclass(frozen=True)
class TeacherSettings:
    detector: Path | None  # None: only an embedder (for labelled pictures without identities)
    embedder: Path | None = None
    score: float = 0.5
    step: int = 5  # label every step-th frame of the footage
    uncertain: float = 0.25  # boxes scored in [uncertain, score) become ignore regions, not background


@dataclass
class TrainingData:
    images: list[LabelledImage]
    num_ids: int
    summary: list[tuple[str, int, int]]  # (source, pictures, boxes)


def _cache_name(path: Path, teacher: TeacherSettings, first: int | None = None, last: int | None = None) -> str:
    """Labels depend on the footage, the frames labelled and every teacher setting: all go into the
    cache file's name."""
    stat = path.stat()
    parts = [str(path.resolve()), str(stat.st_size), str(int(stat.st_mtime)), str(teacher.score), str(teacher.step),
             str(teacher.uncertain)]
    for model in (teacher.detector, teacher.embedder):
        parts.append(hashlib.sha256(model.read_bytes()).hexdigest() if model else "-")
    if first is not None:
        parts.append(f"{first}-{last}")
    return f"{path.stem}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]}.npz"


def _yolo_cache_name(folder: Path, embedder: Path) -> str:
    """Embeddings of a YOLO folder's boxes depend on its pictures, its labels and the embedder."""
    parts = [str(folder.resolve()), hashlib.sha256(embedder.read_bytes()).hexdigest()]
    for picture in yolo_pictures(folder):
        stat = picture.image_path.stat()
        label = picture.label_path.read_bytes() if picture.label_path else b""
        parts += [picture.name, str(stat.st_size), str(int(stat.st_mtime)), hashlib.sha256(label).hexdigest()]
    return f"yolo-{folder.name}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]}.npz"


def load_yolo_folder(spec: SequenceSpec, encoder: AppearanceEncoder | None = None, cache: Path | None = None,
                     progress=None) -> list[LabelledImage]:
    """The pictures of a YOLO-format folder (``fcm_common.data.yolo_labels``; every class a person), in
    file-name order (``spec``'s range by position): boxes without identities, as teacher-labelled
    footage has them, and with an ``encoder`` the teacher's embedding of every box (cached in
    ``cache``, an .npz, when given)."""
    folder = Path(spec.path)
    stored = None
    if encoder is not None and cache is not None and cache.is_file():
        data = np.load(cache)
        stored = {int(i): data["embeddings"][data["picture"] == i].astype(np.float32) for i in np.unique(data["picture"])}
    images, computed = [], {"picture": [], "embeddings": []}
    for index, picture, image, boxes in read_yolo_folder(folder):
        emb = None
        if encoder is not None:
            if stored is not None:
                emb = stored.get(index, np.zeros((0, 512), np.float32))
                if len(emb) != len(boxes):
                    raise TrainingDataError(f"{cache}: embeddings of {picture.name} do not match its labels; delete the cache")
            else:
                emb = encoder.embed(image, boxes).astype(np.float32)
                computed["picture"].append(np.full(len(boxes), index))
                computed["embeddings"].append(emb)
        if spec.keeps(index):
            images.append(LabelledImage(image, boxes, np.full(len(boxes), -1, np.int64), teacher=emb,
                                        origin=f"{folder.parent.name}/{folder.name}:{index}", weight=spec.weight))
        if progress:
            progress(1)
    if encoder is not None and stored is None and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, picture=np.concatenate(computed["picture"] or [np.zeros(0)]).astype(np.int64),
                            embeddings=np.concatenate(computed["embeddings"] or [np.zeros((0, 512))]).astype(np.float16))
    if not images:
        raise TrainingDataError(f"{spec}: no pictures in that range")
    return images


def gather_training_data(
    sequences: list[SequenceSpec],
    footage: list[Path | SequenceSpec],
    teacher: TeacherSettings | None,
    cache_dir: Path | None,
    progress=None,
) -> TrainingData:
    """Load the sequences (identities numbered across them), the YOLO-format folders (with the
    teacher's embeddings when it has an embedder) and label the footage with the teachers. Footage
    is a path or a :class:`SequenceSpec` (frames FIRST..LAST, a sampling weight)."""
    if not sequences and not footage:
        raise TrainingDataError("no training data: give MOTChallenge sequences and/or --teacher-video footage")
    images: list[LabelledImage] = []
    summary: list[tuple[str, int, int]] = []
    num_ids = 0
    encoder = AppearanceEncoder(teacher.embedder) if teacher is not None and teacher.embedder else None
    for spec in sequences:
        if is_prepared(spec.path):
            if spec.first is not None:
                raise TrainingDataError(f"{spec}: a prepared folder is used whole (no frame range)")
            part, count, rows = load_prepared(spec.path, num_ids)
            for im in part:
                im.weight = spec.weight
            summary.extend(rows)
        elif is_yolo_folder(spec.path):
            cache = cache_dir / _yolo_cache_name(spec.path, teacher.embedder) if cache_dir and encoder else None
            part, count = load_yolo_folder(spec, encoder, cache, progress), 0
            summary.append((f"{spec} (YOLO labels)", len(part), sum(len(im.boxes) for im in part)))
        else:
            part, count = load_sequence(spec, num_ids)
            summary.append((str(spec), len(part), sum(len(im.boxes) for im in part)))
        num_ids += count
        images.extend(part)
    if footage:
        if teacher is None or teacher.detector is None:
            raise TrainingDataError("unlabelled footage needs a teacher detector (--teacher-detector)")
        detector = PersonDetector(teacher.detector, min(teacher.score, teacher.uncertain))
        for item in footage:
            spec = item if isinstance(item, SequenceSpec) else SequenceSpec(Path(item))
            cache = cache_dir / _cache_name(spec.path, teacher, spec.first, spec.last) if cache_dir else None
            part = label_footage(spec.path, teacher.step, detector, encoder, cache, progress, keep_score=teacher.score,
                                 first=spec.first or 1, last=spec.last)
            for im in part:
                im.weight = spec.weight
            images.extend(part)
            summary.append((f"{spec} (teacher labels)", len(part), sum(len(im.boxes) for im in part)))
    return TrainingData(images, num_ids, summary)
