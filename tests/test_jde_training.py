"""JDE training: anchor targets, loss terms, a short run, checkpoints that the tools load."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcm_common.core.resources import BUNDLED_JDE_CFG, cfg_file
from fcm_common.jde_training.augment import Jitter, make_sample
from fcm_common.jde_training.losses import UncertaintyWeights, embedding_scale, head_loss
from fcm_common.jde_training.samples import LabelledImage, SequenceSpec, read_training_gt
from fcm_common.jde_training.targets import build_head_targets
from fcm_common.jde_training.trainer import (
    JDETrainer,
    JDETrainSettings,
    export_for_inference,
    load_training_checkpoint,
)
from fcm_common.model.jde import load_jde

ANCHORS = torch.tensor([[2.0, 4.0], [1.0, 1.0]])  # grid units


def _targets(cx, cy, w, h, ident=7):
    """One box given in grid units on a 4x4 grid."""
    box = torch.tensor([[cx / 4, cy / 4, w / 4, h / 4]])
    return build_head_targets([box], [torch.tensor([ident])], 4, 4, ANCHORS)


def test_anchor_assignment_by_iou():
    t, matched = _targets(2.24, 2.0, 2.0, 4.0)
    conf = t.conf[0]
    # anchor 0 (2x4) at column 2: IoU (2-0.24)/(2+0.24) = 0.786 -> foreground
    assert conf[0, 2, 2] == 1 and t.ids[0, 0, 2, 2] == 7 and matched[0, 0, 2, 2] == 0
    # column 3: IoU (2-0.76)/(2+0.76) = 0.449 -> ignored (between 0.4 and 0.5), no identity
    assert conf[0, 2, 3] == -1 and t.ids[0, 0, 2, 3] == -1
    # column 1: IoU (2-1.24)/(2+1.24) = 0.235 -> background
    assert conf[0, 2, 1] == 0
    # row 1, column 2: x overlap 1.76, y overlap 3 -> 5.28 / (16 - 5.28) = 0.493 -> ignored
    assert conf[0, 1, 2] == -1
    # the small anchor inside the box: IoU 1/8 -> background everywhere
    assert (t.conf[0, 1] == 0).all()
    assert int((t.conf == 1).sum()) == 1 and int((t.ids >= 0).sum()) == 1
    dx, dy, dw, dh = t.deltas[0, 0, 2, 2].tolist()
    assert dx == pytest.approx(0.24 / 2) and dy == 0 and dw == pytest.approx(0) and dh == pytest.approx(0)


def test_deltas_are_in_grid_units_with_log_sizes():
    t, _ = _targets(2.0, 2.2, 2.4, 3.6, ident=3)
    fg = t.conf[0] == 1
    assert fg[0, 2, 2]
    dx, dy, dw, dh = t.deltas[0, 0, 2, 2].tolist()
    assert dx == pytest.approx(0) and dy == pytest.approx(0.2 / 4)
    assert dw == pytest.approx(math.log(2.4 / 2)) and dh == pytest.approx(math.log(3.6 / 4))


def test_box_centres_are_clamped_to_the_grid():
    t, _ = _targets(3.9, 2.0, 2.0, 4.0)  # centre beyond the last cell index 3 -> clamped to 3
    assert t.conf[0, 0, 2, 3] == 1
    assert t.deltas[0, 0, 2, 3, 0].item() == pytest.approx(0.0)


def _head(deltas, conf_logits, emb):
    """(B, 24+E, H, W) head input from per-anchor deltas (B,A,H,W,4), logits (B,A,H,W,2), emb (B,H,W,E)."""
    b, a, h, w, _ = deltas.shape
    det = torch.cat([deltas, conf_logits], -1).permute(0, 1, 4, 2, 3).reshape(b, a * 6, h, w)
    return torch.cat([det, emb.permute(0, 3, 1, 2)], 1)


def test_each_loss_term_on_a_synthetic_batch():
    torch.manual_seed(0)
    anchors4 = torch.tensor([[2.0, 4.0], [1.0, 1.0], [3.0, 3.0], [0.5, 0.5]])
    boxes = [torch.tensor([[0.5, 0.5, 0.5, 1.0]]), torch.tensor([[0.25, 0.25, 0.25, 0.25]])]
    targets, _ = build_head_targets(boxes, [torch.tensor([0]), torch.tensor([1])], 4, 4, anchors4)
    deltas = torch.randn(2, 4, 4, 4, 4) * 0.3
    logits = torch.randn(2, 4, 4, 4, 2)
    emb = torch.randn(2, 4, 4, 8)
    head = _head(deltas, logits, emb)
    weights = UncertaintyWeights()
    classifier = torch.nn.Linear(8, 3)
    scale = embedding_scale(3)
    terms = head_loss(head, targets, weights, classifier, scale)

    fg = targets.conf == 1
    assert int(fg.sum()) >= 2
    assert terms.box == pytest.approx(F.smooth_l1_loss(deltas[fg], targets.deltas[fg]).item(), rel=1e-6)
    keep = targets.conf >= 0
    ce = F.cross_entropy(logits[keep], targets.conf[keep]).item()
    assert terms.conf == pytest.approx(ce, rel=1e-5)
    cells = fg.any(1)
    ids = targets.ids.max(1).values[cells]
    vec = scale * F.normalize(emb[cells], dim=-1)
    assert terms.ident == pytest.approx(F.cross_entropy(classifier(vec), ids).item(), rel=1e-5)
    s_c, s_r, s_id = -4.15, -4.85, -2.3
    expected = 0.5 * (math.exp(-s_r) * terms.box + math.exp(-s_c) * terms.conf + math.exp(-s_id) * terms.ident
                      + s_r + s_c + s_id)
    assert terms.total.item() == pytest.approx(expected, rel=1e-5)
    assert scale == pytest.approx(math.sqrt(2) * math.log(2))


def test_perfect_predictions_have_no_box_or_confidence_loss():
    anchors4 = torch.tensor([[2.0, 4.0], [1.0, 1.0], [3.0, 3.0], [0.5, 0.5]])
    targets, _ = build_head_targets([torch.tensor([[0.5, 0.5, 0.5, 1.0]])], [torch.tensor([0])], 4, 4, anchors4)
    logits = torch.stack([(targets.conf != 1).float() * 30, (targets.conf == 1).float() * 30], -1)
    head = _head(targets.deltas.clone(), logits, torch.randn(1, 4, 4, 8))
    terms = head_loss(head, targets, UncertaintyWeights(), None, 1.0)
    assert terms.box == 0 and terms.conf < 1e-9 and terms.ident == 0


def test_training_gt_layouts(tmp_path):
    mot15 = tmp_path / "a.txt"
    mot15.write_text("1,3,11,21,10,30,1,-4.1,2.2,0\n1,4,50,50,10,30,0,-1,-1,0\n2,3,12,21,10,30,1,-1,-1,0\n")
    gt = read_training_gt(mot15)
    boxes, ids, ignore = gt[1]
    np.testing.assert_allclose(boxes, [[10, 20, 20, 50]])  # 1-based pixels -> 0-based corners
    assert ids.tolist() == [3] and ignore.shape == (1, 4)  # the flag-0 row is an ignore region
    mot17 = tmp_path / "b.txt"
    mot17.write_text("1,1,11,21,10,30,1,1,0.9\n1,2,30,30,10,30,1,7,1.0\n1,5,60,30,10,30,0,1,1.0\n")
    boxes, ids, ignore = read_training_gt(mot17)[1]
    assert ids.tolist() == [1] and len(ignore) == 2  # a static person (class 7) and a flag-0 row


def test_sequence_spec_ranges():
    spec = SequenceSpec.parse("../x/PETS09-S2L1:1-550")
    assert spec.path.name == "PETS09-S2L1" and spec.keeps(550) and not spec.keeps(551)
    assert SequenceSpec.parse("clip.mp4").keeps(10_000)


def test_jitter_keeps_boxes_on_people():
    image = np.full((180, 320, 3), 90, np.uint8)
    image[40:120, 100:130] = 250  # a bright "person"
    item = LabelledImage(image, np.array([[100, 40, 130, 120]], np.float32), np.array([4]))
    sample = make_sample(item, 192, 128, Jitter.none(), np.random.default_rng(0))
    cx, cy, w, h = sample.boxes[0] * [192, 128, 192, 128]
    assert sample.image.shape == (128, 192, 3)
    patch = sample.image[int(cy - h / 2) + 2:int(cy + h / 2) - 2, int(cx - w / 2) + 2:int(cx + w / 2) - 2]
    assert patch.min() > 200  # the box still sits on the bright region after letterboxing
    rng = np.random.default_rng(3)
    for _ in range(20):
        s = make_sample(item, 192, 128, Jitter(), rng)
        for cx, _cy, w, h in s.boxes * [192, 128, 192, 128]:
            assert 0 <= cx - w / 2 - 1e-3 and cx + w / 2 <= 192 + 1e-3 and w > 2 and h > 2


@pytest.fixture(scope="module")
def tiny_cfg_text():
    """The bundled cfg at 128x64 with an eighth of its widths: same graph, fast enough to train in a test."""
    text = cfg_file(BUNDLED_JDE_CFG).read_text().replace("width=576", "width=128").replace("height=320", "height=64")
    text = text.replace("embedding_dim=128", "embedding_dim=16")
    return re.sub(r"filters=(\d+)", lambda m: f"filters={m.group(1) if m.group(1) == '24' else max(4, int(m.group(1)) // 8)}", text)


def _synthetic_images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(60, 120, (96, 192, 3), dtype=np.uint8)
        boxes = []
        for _ in range(2):
            x, y = rng.integers(10, 150), rng.integers(5, 40)
            image[y:y + 48, x:x + 20] = 230
            boxes.append([x, y, x + 20, y + 48])
        out.append(LabelledImage(image, np.array(boxes, np.float32), np.array([2 * i % 5, (2 * i + 1) % 5])))
    return out


def test_a_short_training_run_lowers_the_loss(tiny_cfg_text):
    torch.manual_seed(0)
    settings = JDETrainSettings(steps=40, batch_size=4, lr=3e-3, warmup=2, jitter=vars(Jitter.none()) | {"flip": 0.0})
    trainer = JDETrainer(tiny_cfg_text, _synthetic_images(), 5, settings, torch.device("cpu"))
    fixed = trainer.batch(0)
    with torch.no_grad():
        _, before = trainer.loss(fixed)
    for _ in range(40):
        trainer.train_step()
    with torch.no_grad():
        _, after = trainer.loss(fixed)
    assert after["conf"] < 0.7 * before["conf"]
    assert after["box"] < before["box"]


def test_checkpoints_resume_and_load_in_the_tools(tiny_cfg_text, tmp_path):
    settings = JDETrainSettings(steps=4, batch_size=2, warmup=1, checkpoint_every=2)
    out = tmp_path / "jde.pt"
    first = JDETrainer(tiny_cfg_text, _synthetic_images(), 5, settings, torch.device("cpu"))
    first.run(out)
    ckpt = load_training_checkpoint(out)
    assert ckpt["epoch"] == 4 and "module_list.85.yolo_85.s_c" in ckpt["model"] and "classifier.weight" in ckpt["model"]
    # a run stopped after step 2 and resumed replays steps 3-4 exactly
    half = JDETrainer(tiny_cfg_text, _synthetic_images(), 5, settings, torch.device("cpu"))
    half.train_step()
    half.train_step()
    half.save(tmp_path / "half.pt")
    resumed = JDETrainer(tiny_cfg_text, _synthetic_images(), 5, settings, torch.device("cpu"))
    resumed.restore(load_training_checkpoint(tmp_path / "half.pt"))
    resumed.run(tmp_path / "resumed.pt")
    a = load_jde(out)
    b = load_jde(tmp_path / "resumed.pt")
    assert a.weights_id == b.weights_id
    assert (a.input_width, a.input_height, a.embedding_dim) == (128, 64, 16)  # the cfg travelled in the file
    x = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        assert a(x).shape == (1, 4 * (2 * 4 + 4 * 8 + 8 * 16), 6 + 16)


def test_export_keeps_only_inference_weights_in_half_precision(tiny_cfg_text, tmp_path):
    settings = JDETrainSettings(steps=2, batch_size=2, warmup=1)
    trainer = JDETrainer(tiny_cfg_text, _synthetic_images(), 5, settings, torch.device("cpu"))
    trainer.run(tmp_path / "run.pt")
    size = export_for_inference(load_training_checkpoint(tmp_path / "run.pt"), tmp_path / "small.pt")
    assert size < (tmp_path / "run.pt").stat().st_size / 3
    exported = torch.load(tmp_path / "small.pt", weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in exported["model"].values())
    assert not any("classifier" in k or "yolo_" in k for k in exported["model"])
    full, half = load_jde(tmp_path / "run.pt"), load_jde(tmp_path / "small.pt")
    x = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        a, b = full(x), half(x)
    assert torch.allclose(a[..., :4], b[..., :4], atol=0.5)  # boxes within half a pixel
    assert torch.allclose(a[..., 4], b[..., 4], atol=2e-3)  # confidences


def test_every_box_makes_its_best_shaped_anchor_foreground():
    from fcm_common.jde_training.targets import best_anchors

    anchors = torch.tensor([[1.0, 3.0], [3.0, 3.0]])  # grid units on an 8x8 grid: a standing and a square shape
    wide = torch.tensor([[0.5, 0.5, 0.75, 0.1875]])  # 6 x 1.5 cells: IoU 0.14 and 0.33 with the anchors
    ids = torch.tensor([3])
    plain, _ = build_head_targets([wide], [ids], 8, 8, anchors)
    assert not (plain.conf == 1).any()
    best = best_anchors(wide[:, 2:] * 8, anchors)
    assert best.tolist() == [1]
    forced, which = build_head_targets([wide], [ids], 8, 8, anchors, force=[best])
    assert (forced.conf == 1).sum() == 1 and forced.conf[0, 1, 4, 4] == 1  # at the centre cell
    assert which[0, 1, 4, 4] == 0 and forced.ids[0, 1, 4, 4] == 3
    assert forced.deltas[0, 1, 4, 4] == pytest.approx(torch.tensor([0.0, 0.0, math.log(2.0), math.log(0.5)]))
    # a box that has a foreground anchor by IoU gets nothing more; -1 forces nothing
    tall = torch.tensor([[0.5, 0.5, 0.125, 0.375]])
    normal, _ = build_head_targets([tall], [ids], 8, 8, anchors)
    again, _ = build_head_targets([tall], [ids], 8, 8, anchors, force=[torch.tensor([1])])
    assert torch.equal(normal.conf, again.conf)
    none, _ = build_head_targets([wide], [ids], 8, 8, anchors, force=[torch.tensor([-1])])
    assert torch.equal(none.conf, plain.conf)
