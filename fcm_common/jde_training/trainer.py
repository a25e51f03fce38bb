"""The JDE training loop: seeded, resumable, logged.

A checkpoint has the official layout (``{'epoch', 'model', 'optimizer'}``; ``model`` holds the
network, the per-head ``yolo_<i>.{s_c,s_r,s_id}`` and the identity ``classifier``) so that any JDE
tool reads it, plus an ``fcm`` entry with what fcm needs: the Darknet cfg text (so the network can be
rebuilt without a side file), the step, the training settings, the random-number states and the
training-only distillation projection. :func:`fcm_common.model.jde.load_jde` reads such a file with
no ``--jde-cfg``. Checkpoints are written atomically every ``checkpoint_every`` steps and at the end;
``resume`` continues from the step it recorded, with the same data order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fcm_common.core.atomic import atomic_path
from fcm_common.core.errors import FcmError
from fcm_common.jde_training.augment import Jitter, NetworkSample, make_sample
from fcm_common.jde_training.losses import (
    NUM_DET_CHANNELS,
    UncertaintyWeights,
    embedding_scale,
    head_loss,
)
from fcm_common.jde_training.samples import LabelledImage
from fcm_common.jde_training.targets import anchor_boxes, box_iou_cxcywh, build_head_targets
from fcm_common.model.darknet_cfg import parse_cfg_text
from fcm_common.model.jde import JDE

CHECKPOINT_FORMAT = "fcm-jde"
CHECKPOINT_VERSION = 1
TEACHER_DIM = 512
FG_PRIOR = 0.01  # initial foreground probability of every anchor (a stable start from scratch)


class TrainingError(FcmError, RuntimeError):
    """Training that cannot start or continue."""


@dataclass
class JDETrainSettings:
    steps: int = 6000
    batch_size: int = 8
    optimizer: str = "adamw"  # or "sgd" (JDE's: momentum 0.9)
    lr: float = 2e-3
    lr_min_ratio: float = 0.02
    warmup: int = 300
    weight_decay: float = 5e-4
    grad_clip: float = 10.0
    distill_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    jitter: dict = field(default_factory=lambda: asdict(Jitter()))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepLog:
    step: int
    lr: float
    loss: float
    box: float
    conf: float
    ident: float
    distill: float
    seconds: float


class TrainingHeads(nn.Module):
    """Everything trained beside the network: uncertainty weights per head, identity classifier,
    teacher projection. Keys follow the official checkpoint (``module_list.<i>.yolo_<i>.s_c``)."""

    def __init__(self, model: JDE, num_ids: int, seed: int = 0):
        super().__init__()
        self.yolo_layers = model.yolo_layers
        self.weights = nn.ModuleDict({str(i): UncertaintyWeights() for i in model.yolo_layers})
        self.classifier = nn.Linear(model.embedding_dim, num_ids) if num_ids > 0 else None
        self.distill = nn.Linear(model.embedding_dim, TEACHER_DIM)
        gen = torch.Generator().manual_seed(seed + 1)  # seeded like the network, not from torch's global state
        with torch.no_grad():
            for layer in (self.classifier, self.distill):
                if layer is not None:
                    bound = 1 / math.sqrt(layer.in_features)
                    layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
                    layer.bias.zero_()

    def official_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for i, w in self.weights.items():
            for name in ("s_c", "s_r", "s_id"):
                state[f"module_list.{i}.yolo_{i}.{name}"] = getattr(w, name).detach().cpu().clone()
        if self.classifier is not None:
            state["classifier.weight"] = self.classifier.weight.detach().cpu().clone()
            state["classifier.bias"] = self.classifier.bias.detach().cpu().clone()
        return state

    def load_official_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for i, w in self.weights.items():
                for name in ("s_c", "s_r", "s_id"):
                    getattr(w, name).copy_(state[f"module_list.{i}.yolo_{i}.{name}"])
            if self.classifier is not None:
                self.classifier.weight.copy_(state["classifier.weight"])
                self.classifier.bias.copy_(state["classifier.bias"])


def init_from_scratch(model: JDE, seed: int) -> None:
    """He-initialised convs; each residual branch closes with a zero batch-norm scale (the block
    starts as the identity); prediction convs start small with a 1% foreground prior."""
    gen = torch.Generator().manual_seed(seed)
    closers = {model.layer_inputs[i][0] for i, kind in enumerate(model.layer_types) if kind == "shortcut"}
    with torch.no_grad():
        for i, seq in enumerate(model.module_list):
            for module in seq:
                if isinstance(module, nn.Conv2d):
                    fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                    std = (2.0 / (1 + 0.1**2) / fan_in) ** 0.5
                    if module.bias is not None:  # linear prediction convs
                        std = 0.01
                    module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                    if module.bias is not None:
                        module.bias.zero_()
                        if module.out_channels == NUM_DET_CHANNELS:
                            module.bias[5::6] = math.log(FG_PRIOR / (1 - FG_PRIOR))
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_parameters()
                    if i in closers:
                        module.weight.zero_()


def learning_rate(step: int, s: JDETrainSettings) -> float:
    """Warm-up ((step/warmup)^4 as JDE does), then cosine decay to lr * lr_min_ratio."""
    if step < s.warmup:
        return s.lr * ((step + 1) / s.warmup) ** 4
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.lr_min_ratio + (1 - s.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(params: list[tuple[str, nn.Parameter]], s: JDETrainSettings) -> torch.optim.Optimizer:
    """Weight decay on conv and linear weights only (not on batch norm, biases or s_*)."""
    decay = [p for n, p in params if p.ndim > 1]
    rest = [p for n, p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=0.9)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=s.lr)
    raise TrainingError(f"unknown optimizer '{s.optimizer}' (sgd or adamw)")


def _batch_tensors(samples: list[NetworkSample], device) -> torch.Tensor:
    images = np.stack([s.image for s in samples]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(255.0)


def _ignore_regions(conf: torch.Tensor, ignore: list[np.ndarray], anchors: torch.Tensor) -> None:
    """Anchors that overlap an ignore region (IoU > 0.4) and are not foreground become ignored."""
    grid_h, grid_w = conf.shape[2:]
    scale = torch.tensor([grid_w, grid_h, grid_w, grid_h], dtype=torch.float32)
    flat = anchor_boxes(grid_h, grid_w, anchors.float()).reshape(-1, 4)
    for b, regions in enumerate(ignore):
        if len(regions) == 0:
            continue
        iou = box_iou_cxcywh(flat, torch.from_numpy(regions) * scale).max(1).values.view(conf.shape[1:])
        conf[b][(iou > 0.4) & (conf[b] == 0)] = -1


def _teacher_targets(samples: list[NetworkSample], which: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 512) teacher embedding of the box each cell's foreground anchor matched, NaN elsewhere."""
    b, a, h, w = fg.shape
    out = torch.full((b, h, w, TEACHER_DIM), float("nan"))
    for i, sample in enumerate(samples):
        if sample.teacher is None or len(sample.teacher) == 0:
            continue
        idx = torch.where(fg[i], which[i], torch.full_like(which[i], -1)).max(0).values  # (H, W)
        cells = idx >= 0
        out[i][cells] = torch.from_numpy(sample.teacher).float()[idx[cells]]
    return out


class JDETrainer:
    """Owns the network, the training heads, the optimiser and the data order."""

    def __init__(self, cfg_text: str, images: list[LabelledImage], num_ids: int, settings: JDETrainSettings,
                 device: torch.device):
        self.cfg_text = cfg_text
        self.images = images
        self.num_ids = num_ids
        self.settings = settings
        self.device = device
        self.model = JDE(parse_cfg_text(cfg_text))
        init_from_scratch(self.model, settings.seed)
        self.heads = TrainingHeads(self.model, num_ids, settings.seed)
        self.model.to(device).train()
        self.heads.to(device).train()
        params = list(self.model.named_parameters()) + list(self.heads.named_parameters())
        self.optimizer = make_optimizer(params, settings)
        self.jitter = Jitter(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.jitter.items()})
        self.rng = np.random.default_rng(settings.seed)
        self.order: list[int] = []
        self.step = 0
        self.emb_scale = embedding_scale(num_ids)
        self.head_layers = [self.model.layer_inputs[y][0] for y in self.model.yolo_layers]
        self.anchors = [self.model.module_list[y][0].anchor_grid.detach().cpu() for y in self.model.yolo_layers]
        if not any(im.teacher is not None for im in images):
            self.settings.distill_weight = 0.0

    # ------------------------------------------------------------------ data
    def _next_indices(self) -> list[int]:
        """The next batch of picture indices; a fresh shuffled order every pass over the data."""
        out = []
        while len(out) < self.settings.batch_size:
            if not self.order:
                self.order = list(self.rng.permutation(len(self.images)))
            out.append(int(self.order.pop()))
        return out

    def _samples(self) -> list[NetworkSample]:
        w, h = self.model.input_width, self.model.input_height
        return [make_sample(self.images[i], w, h, self.jitter, self.rng) for i in self._next_indices()]

    # ------------------------------------------------------------------ one step
    def loss(self, samples: list[NetworkSample]) -> tuple[torch.Tensor, dict[str, float]]:
        x = _batch_tensors(samples, self.device)
        heads = self.model.forward_part1(x, self.head_layers)
        total = x.new_zeros(())
        terms = {"box": 0.0, "conf": 0.0, "ident": 0.0, "distill": 0.0}
        boxes = [torch.from_numpy(s.boxes) for s in samples]
        ids = [torch.from_numpy(s.ids) for s in samples]
        for y, head, anchors in zip(self.model.yolo_layers, heads, self.anchors):
            gh, gw = head.shape[2:]
            targets, which = build_head_targets(boxes, ids, gh, gw, anchors)
            _ignore_regions(targets.conf, [s.ignore for s in samples], anchors)
            teacher = None
            if self.settings.distill_weight > 0:
                teacher = (_teacher_targets(samples, which, targets.conf > 0).to(self.device), self.heads.distill)
            targets.conf, targets.deltas, targets.ids = (
                targets.conf.to(self.device), targets.deltas.to(self.device), targets.ids.to(self.device))
            part = head_loss(head, targets, self.heads.weights[str(y)], self.heads.classifier, self.emb_scale,
                             teacher, self.settings.distill_weight)
            total = total + part.total
            for key in terms:
                terms[key] += getattr(part, key) / len(heads)
        return total, terms

    def train_step(self) -> StepLog:
        start = time.perf_counter()
        lr = learning_rate(self.step, self.settings)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, terms = self.loss(self._samples())
        if not torch.isfinite(loss):
            raise TrainingError(f"step {self.step + 1}: the loss is {float(loss)} (lower --lr?)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        self.optimizer.step()
        self.step += 1
        return StepLog(self.step, lr, loss.item(), terms["box"], terms["conf"], terms["ident"], terms["distill"],
                       time.perf_counter() - start)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        model_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        model_state.update(self.heads.official_state())
        return {
            "epoch": self.step,
            "model": model_state,
            "optimizer": self.optimizer.state_dict(),
            "fcm": {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "cfg": self.cfg_text,
                "step": self.step,
                "num_ids": self.num_ids,
                "settings": self.settings.to_dict(),
                "order": [int(i) for i in self.order],
                "rng": json.dumps(self.rng.bit_generator.state),
                "torch_rng": torch.get_rng_state(),
                "distill": {k: v.detach().cpu().clone() for k, v in self.heads.distill.state_dict().items()},
            },
        }

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    def restore(self, ckpt: dict) -> None:
        fcm = ckpt.get("fcm") or {}
        if fcm.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError("cannot resume: the file was not written by fcm-train-jde")
        if fcm["cfg"] != self.cfg_text:
            raise TrainingError("cannot resume: the checkpoint was trained with another cfg")
        if fcm["num_ids"] != self.num_ids:
            raise TrainingError(f"cannot resume: the checkpoint has {fcm['num_ids']} identities, the data {self.num_ids}")
        state = ckpt["model"]
        self.model.load_state_dict({k: v for k, v in state.items() if k in self.model.state_dict()})
        self.heads.load_official_state(state)
        self.heads.distill.load_state_dict(fcm["distill"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(fcm["step"])
        self.order = list(fcm["order"])
        self.rng.bit_generator.state = json.loads(fcm["rng"])
        torch.set_rng_state(fcm["torch_rng"])

    def run(self, out: Path, on_step: Callable[[StepLog], None] | None = None,
            on_checkpoint: Callable[[int], None] | None = None) -> None:
        """Train up to ``settings.steps``, checkpointing to ``out`` as it goes."""
        while self.step < self.settings.steps:
            log = self.train_step()
            if on_step:
                on_step(log)
            if self.step % self.settings.checkpoint_every == 0 or self.step == self.settings.steps:
                self.save(out)
                if on_checkpoint:
                    on_checkpoint(self.step)


def load_training_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        raise TrainingError(f"cannot read {path} as a training checkpoint ({type(exc).__name__})") from None


def export_for_inference(ckpt: dict, target: Path, half: bool = True) -> int:
    """Write what inference needs of a training checkpoint: the network's weights (float16 when
    ``half``: half the size, detections unchanged to well below a pixel) and the cfg, no optimiser,
    classifier or uncertainty weights. Returns the file size in bytes."""
    fcm = ckpt.get("fcm") or {}
    if fcm.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError("cannot export: the file was not written by fcm-train-jde")
    model = JDE(parse_cfg_text(fcm["cfg"]))
    keep = set(model.state_dict())
    state = {}
    for key, value in ckpt["model"].items():
        if key in keep and not key.endswith("num_batches_tracked"):
            state[key] = value.half() if half and value.is_floating_point() else value.clone()
    data = {
        "epoch": ckpt.get("epoch"),
        "model": state,
        "fcm": {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "cfg": fcm["cfg"], "step": fcm["step"],
                "num_ids": fcm["num_ids"], "settings": fcm["settings"], "inference_only": True},
    }
    with atomic_path(target) as tmp:
        torch.save(data, tmp)
    return target.stat().st_size
