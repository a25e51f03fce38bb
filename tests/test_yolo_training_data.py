"""YOLO-format labelled pictures as JDE training data and validation; sampling weights; footage ranges."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch

from fcm_common.core.resources import BUNDLED_JDE_CFG, cfg_file
from fcm_common.data.sources import SourceError
from fcm_common.data.yolo_labels import is_yolo_folder, read_yolo_folder, read_yolo_labels, yolo_pictures
from fcm_common.jde_training.augment import Jitter
from fcm_common.jde_training.data import TeacherSettings, gather_training_data, load_yolo_folder
from fcm_common.jde_training.samples import LabelledImage, SequenceSpec, TrainingDataError
from fcm_common.jde_training.teachers import label_footage
from fcm_common.jde_training.trainer import JDETrainer, JDETrainSettings, TrainingSamples


@pytest.fixture(scope="module")
def tiny_cfg_text():
    """The bundled cfg at 128x64 with an eighth of its widths (as in test_jde_training)."""
    text = cfg_file(BUNDLED_JDE_CFG).read_text().replace("width=576", "width=128").replace("height=320", "height=64")
    text = text.replace("embedding_dim=128", "embedding_dim=16")
    return re.sub(r"filters=(\d+)", lambda m: f"filters={m.group(1) if m.group(1) == '24' else max(4, int(m.group(1)) // 8)}", text)


def _yolo_folder(root, pictures=3, width=160, height=90):
    """images/ + labels/ like a Roboflow export: two classes of people, one picture without a label file."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for n in range(pictures):
        image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
        image[10:70, 20 + 10 * n:40 + 10 * n] = 250
        cv2.imwrite(str(root / "images" / f"p{n:02d}.jpg"), image)
        if n == pictures - 1:
            continue  # no label file: nobody in it
        rows = [f"0 {(30 + 10 * n) / width:.6f} {40 / height:.6f} {20 / width:.6f} {60 / height:.6f}",
                "1 0.9 0.5 0.1 0.4", ""]
        (root / "labels" / f"p{n:02d}.txt").write_text("\n".join(rows))
    (root / "images" / "notes.txt").write_text("not a picture")
    return root


def test_reading_a_yolo_folder(tmp_path):
    folder = _yolo_folder(tmp_path / "set" / "train")
    assert is_yolo_folder(folder) and not is_yolo_folder(tmp_path)
    pictures = yolo_pictures(folder)
    assert [p.name for p in pictures] == ["p00.jpg", "p01.jpg", "p02.jpg"] and pictures[2].label_path is None
    items = list(read_yolo_folder(folder))
    index, picture, image, boxes = items[1]
    assert index == 2 and image.shape == (90, 160, 3) and image[40, 35].min() > 200  # RGB pixels
    assert boxes == pytest.approx(np.array([[30, 10, 50, 70], [136, 27, 152, 63]]), abs=1e-3)  # pixels, x1y1x2y2
    assert len(items[2][3]) == 0
    only_patients = read_yolo_labels(picture.label_path, 160, 90, classes=[0])
    assert len(only_patients) == 1
    assert [i for i, *_ in read_yolo_folder(folder, first=2, last=3)] == [2, 3]


def test_malformed_yolo_rows_are_refused(tmp_path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(SourceError, match="a.txt:1"):
        read_yolo_labels(label, 100, 100)
    label.write_text("0 0.5 0.5 -0.2 0.1\n")
    with pytest.raises(SourceError, match="not a box"):
        read_yolo_labels(label, 100, 100)
    with pytest.raises(SourceError, match="not a YOLO-format folder"):
        yolo_pictures(tmp_path)
    # a box reaching past the picture is clipped to it
    label.write_text("0 0.95 0.5 0.2 0.2\n")
    assert read_yolo_labels(label, 100, 100) == pytest.approx(np.array([[85, 40, 100, 60]]))


class FakeEncoder:
    """Stands in for OSNet: a fixed unit vector per box, counted."""

    def __init__(self):
        self.calls = 0

    def embed(self, rgb, boxes):
        self.calls += 1
        out = np.zeros((len(boxes), 512), np.float32)
        out[:, 0] = 1
        return out


def test_yolo_pictures_become_training_pictures_without_identities(tmp_path):
    folder = _yolo_folder(tmp_path / "set" / "train")
    data = gather_training_data([SequenceSpec.parse(f"{folder}:2-3@2")], [], None, None)
    assert data.num_ids == 0 and len(data.images) == 2
    first = data.images[0]
    assert first.origin == "set/train:2" and first.weight == 2.0
    assert list(first.ids) == [-1, -1] and first.teacher is None and len(first.ignore) == 0
    assert data.summary == [(f"{folder}:2-3@2 (YOLO labels)", 2, 2)]
    # with the teacher's embedder: one embedding per box, cached; read back without running it
    encoder = FakeEncoder()
    cache = tmp_path / "cache.npz"
    images = load_yolo_folder(SequenceSpec(folder), encoder, cache)
    assert encoder.calls == 3 and [im.teacher.shape for im in images] == [(2, 512), (2, 512), (0, 512)]
    again = FakeEncoder()
    images2 = load_yolo_folder(SequenceSpec(folder, 1, 2), again, cache)
    assert again.calls == 0 and len(images2) == 2 and np.array_equal(images2[1].teacher, images[1].teacher)
    # YOLO folders and identities of sequences mix: teacher settings with an embedder only
    with pytest.raises(TrainingDataError, match="teacher detector"):
        gather_training_data([], [tmp_path / "clip.mp4"], TeacherSettings(None, None), None)


def test_yolo_pictures_train_detection_and_distillation_only(tmp_path, tiny_cfg_text):
    folder = _yolo_folder(tmp_path / "set" / "train")
    encoder = FakeEncoder()
    images = load_yolo_folder(SequenceSpec(folder), encoder)
    named = LabelledImage(images[0].image, images[0].boxes, np.array([0, 1]), origin="seq:1")
    settings = JDETrainSettings(steps=1, batch_size=4, warmup=1, jitter=vars(Jitter.none()) | {"flip": 0.0})
    trainer = JDETrainer(tiny_cfg_text, images, 0, settings, torch.device("cpu"))
    assert trainer.heads.classifier is None and trainer.settings.distill_weight > 0
    with torch.no_grad():
        _, terms = trainer.loss(trainer.batch(0))
    assert terms["distill"] > 0 and terms["ident"] == 0 and terms["conf"] > 0
    mixed = JDETrainer(tiny_cfg_text, [*images, named], 2, settings, torch.device("cpu"))
    with torch.no_grad():
        _, terms = mixed.loss(mixed.batch(0))
    assert terms["distill"] > 0 and mixed.heads.classifier is not None


def test_sampling_weights_and_specs():
    spec = SequenceSpec.parse("../x/PETS09-S2L1:1-550@1.5")
    assert (spec.first, spec.last, spec.weight, str(spec)) == (1, 550, 1.5, "../x/PETS09-S2L1:1-550@1.5")
    assert SequenceSpec.parse("clip.mp4@2").weight == 2 and SequenceSpec.parse("a.mp4").weight == 1
    with pytest.raises(TrainingDataError):
        SequenceSpec.parse("a.mp4@0")
    image = np.zeros((32, 32, 3), np.uint8)
    empty = np.zeros((0, 4), np.float32)
    pictures = ([LabelledImage(image, empty, np.zeros(0, np.int64), origin=f"a:{i}", weight=3.0) for i in range(10)]
                + [LabelledImage(image, empty, np.zeros(0, np.int64), origin=f"b:{i}") for i in range(10)])
    samples = TrainingSamples(pictures, 32, 32, [], [], Jitter.none(), seed=0)
    drawn = np.array([samples.picture(g) for g in range(4000)])
    assert 0.7 < (drawn < 10).mean() < 0.8  # 3 : 1
    plain = TrainingSamples(pictures[10:], 32, 32, [], [], Jitter.none(), seed=0)
    assert sorted(plain.picture(g) for g in range(10)) == list(range(10))  # unweighted: a permutation per pass


class FakeDetector:
    score_threshold = 0.5

    def detect(self, rgb):
        return np.array([[1, 1, 9, 15]], np.float32), np.array([0.9], np.float32)


def test_footage_ranges(tmp_path):
    for n in range(12):
        cv2.imwrite(str(tmp_path / f"{n:03d}.png"), np.full((16, 16, 3), n, np.uint8))
    images = label_footage(tmp_path, 3, FakeDetector(), None, first=4, last=10)
    assert [im.origin.rsplit(":", 1)[1] for im in images] == ["4", "7", "10"]
    assert images[0].image[0, 0, 0] == 3  # frame 4 is the fourth picture


def test_validation_on_a_yolo_folder_reports_ap50(tmp_path, small_jde):
    from fcm_common.cli.train_jde import validate

    folder = _yolo_folder(tmp_path / "set" / "valid")
    scores = validate(small_jde, [folder], torch.device("cpu"))
    assert set(scores) == {"AP50", "P@0.5", "R@0.5"}
    assert 0.0 <= scores["AP50"] <= 1.0 and 0.0 <= scores["R@0.5"] <= 1.0
