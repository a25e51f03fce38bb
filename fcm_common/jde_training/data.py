"""Everything a JDE training run learns from: labelled sequences, prepared folders and teacher-labelled footage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fcm_common.jde_training.prepared import is_prepared, load_prepared
from fcm_common.jde_training.samples import LabelledImage, SequenceSpec, TrainingDataError, load_sequence
from fcm_common.jde_training.teachers import AppearanceEncoder, PersonDetector, label_footage


@dataclass(frozen=True)
class TeacherSettings:
    detector: Path
    embedder: Path | None = None
    score: float = 0.5
    step: int = 5  # label every step-th frame of the footage
    uncertain: float = 0.25  # boxes scored in [uncertain, score) become ignore regions, not background


@dataclass
class TrainingData:
    images: list[LabelledImage]
    num_ids: int
    summary: list[tuple[str, int, int]]  # (source, pictures, boxes)


def _cache_name(path: Path, teacher: TeacherSettings) -> str:
    """Labels depend on the footage and every teacher setting: all go into the cache file's name."""
    stat = path.stat()
    parts = [str(path.resolve()), str(stat.st_size), str(int(stat.st_mtime)), str(teacher.score), str(teacher.step),
             str(teacher.uncertain)]
    for model in (teacher.detector, teacher.embedder):
        parts.append(hashlib.sha256(model.read_bytes()).hexdigest() if model else "-")
    return f"{path.stem}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]}.npz"


def gather_training_data(
    sequences: list[SequenceSpec],
    footage: list[Path],
    teacher: TeacherSettings | None,
    cache_dir: Path | None,
    progress=None,
) -> TrainingData:
    """Load the sequences (identities numbered across them) and label the footage with the teachers."""
    if not sequences and not footage:
        raise TrainingDataError("no training data: give MOTChallenge sequences and/or --teacher-video footage")
    images: list[LabelledImage] = []
    summary: list[tuple[str, int, int]] = []
    num_ids = 0
    for spec in sequences:
        if is_prepared(spec.path):
            if spec.first is not None:
                raise TrainingDataError(f"{spec}: a prepared folder is used whole (no frame range)")
            part, count, rows = load_prepared(spec.path, num_ids)
            summary.extend(rows)
        else:
            part, count = load_sequence(spec, num_ids)
            summary.append((str(spec), len(part), sum(len(im.boxes) for im in part)))
        num_ids += count
        images.extend(part)
    if footage:
        if teacher is None:
            raise TrainingDataError("unlabelled footage needs a teacher detector (--teacher-detector)")
        detector = PersonDetector(teacher.detector, min(teacher.score, teacher.uncertain))
        encoder = AppearanceEncoder(teacher.embedder) if teacher.embedder else None
        for path in footage:
            cache = cache_dir / _cache_name(path, teacher) if cache_dir else None
            part = label_footage(path, teacher.step, detector, encoder, cache, progress, keep_score=teacher.score)
            images.extend(part)
            summary.append((f"{path} (teacher labels)", len(part), sum(len(im.boxes) for im in part)))
    return TrainingData(images, num_ids, summary)
