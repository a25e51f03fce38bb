"""The JDE training loop: seeded, resumable, logged.

A checkpoint has the official layout (``{'epoch', 'model', 'optimizer'}``; ``model`` holds the
network, the per-head ``yolo_<i>.{s_c,s_r,s_id}`` and the identity ``classifier``) so that any JDE
tool reads it, plus an ``fcm`` entry with what fcm needs: the Darknet cfg text (so the network can be
rebuilt without a side file), the step, the training settings, the foreground anchors seen per head
and the training-only distillation projection. :func:`fcm_common.model.jde.load_jde` reads such a file with
no ``--jde-cfg``. Checkpoints are written atomically every ``checkpoint_every`` steps and at the end;
``resume`` continues from the step it recorded, with the same data: the batch of a step is a
function of the seed and the step (:class:`TrainingSamples`), so worker processes can prepare
batches in parallel (``workers``) and a resumed run sees what an unbroken one would have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
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
from fcm_common.jde_training.targets import (
    HeadTargets,
    anchor_boxes,
    best_anchors,
    box_iou_cxcywh,
    build_head_targets,
)
from fcm_common.model.darknet_cfg import parse_cfg_text
from fcm_common.model.jde import JDE, load_state

CHECKPOINT_FORMAT = "fcm-jde"
CHECKPOINT_VERSION = 2  # 2: data order by sample number (1: one generator for the whole run)
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
    jitter: dict = field(default_factory=lambda: asdict(Jitter.wide()))
    workers: int = 0  # processes preparing batches (0: in the training process)
    precision: str = "fp32"  # or "bf16" (CUDA autocast; the loss stays fp32)
    time_budget_steps: int = 0  # the step count a time budget fixed (0: none)
    balance: float = 0.0  # sources drawn ~ n ** (1 - balance) instead of ~ n (their picture counts)
    every_box: bool = False  # a box no anchor overlaps by > 0.5 makes its best-shaped anchor foreground
    init: str = ""  # weights the network started from (file and weights id), "" = from scratch

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


# ---------------------------------------------------------------------------------- samples
def _ignore_regions(conf: torch.Tensor, regions: np.ndarray, flat_anchors: torch.Tensor, scale: torch.Tensor) -> None:
    """Anchors of one picture that overlap an ignore region (IoU > 0.4) and are not foreground
    become ignored (``conf`` (A, H, W) is changed in place)."""
    if len(regions) == 0:
        return
    iou = box_iou_cxcywh(flat_anchors, torch.from_numpy(regions) * scale).max(1).values.view(conf.shape)
    conf[(iou > 0.4) & (conf == 0)] = -1


class TrainingSamples(torch.utils.data.Dataset):
    """Sample number ``g`` of a run -> one jittered picture and its targets on every head.

    Sample ``g`` is picture ``permutation_e[g mod N]`` of pass ``e = g // N`` over the data (a fresh
    seeded permutation per pass), jittered with a generator seeded by ``(seed, g)``: what a step
    sees depends on the seed and the step alone, not on the worker processes that prepare it or on
    where a run was resumed.

    The pictures' pixels live in one shared-memory tensor, so that worker processes (started with
    ``spawn``: a forked copy of a process that has run parallel torch code can deadlock) receive a
    handle to them rather than a copy.
    """

    def __init__(self, images: list[LabelledImage], width: int, height: int, grids: list[tuple[int, int]],
                 anchors: list[torch.Tensor], jitter: Jitter, seed: int, balance: float = 0.0, every_box: bool = False):
        sizes = [im.image.size for im in images]
        # balance > 0: a picture of a source of n pictures is drawn with probability ~ n ** -balance
        # (1: every source as often; 0: every picture as often, a permutation per pass), times the
        # picture's own weight (its SEQ's @W)
        self.balance = balance
        origins = [im.origin.rsplit(":", 1)[0] for im in images]
        counts = {o: origins.count(o) for o in set(origins)}
        weights = np.array([counts[o] ** -balance * im.weight for o, im in zip(origins, images)], np.float64)
        self.weights = weights / weights.sum()
        self.weighted = bool(balance) or bool(np.ptp(weights) > 0)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.pixels = torch.empty(int(self.offsets[-1]), dtype=torch.uint8)
        for im, start, size in zip(images, self.offsets, sizes):
            self.pixels[int(start):int(start) + size] = torch.from_numpy(np.ascontiguousarray(im.image).reshape(-1))
        self.pixels.share_memory_()
        self.labels = [LabelledImage(np.empty((0, 0, 3), np.uint8), im.boxes, im.ids, im.ignore, im.teacher, im.origin,
                                     im.weight) for im in images]
        self.shapes = [im.image.shape for im in images]
        self.width, self.height = width, height
        self.grids, self.anchors, self.jitter, self.seed = grids, anchors, jitter, seed
        self.every_box = every_box
        # every head's anchors in input pixels, and which head and anchor of it each one is
        self.anchor_px = (torch.cat([a.float() * torch.tensor([width / gw, height / gh]) for (gh, gw), a in zip(grids, anchors)])
                          if anchors else torch.zeros(0, 2))
        self.anchor_head = [(h, k) for h, a in enumerate(anchors) for k in range(len(a))]
        self._pass: tuple[int, np.ndarray] | None = None

    @property
    def count(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> LabelledImage:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        pixels = self.pixels[start:end].numpy().reshape(self.shapes[i])
        label = self.labels[i]
        return LabelledImage(pixels, label.boxes, label.ids, label.ignore, label.teacher, label.origin, label.weight)

    def __len__(self) -> int:  # sample numbers are unbounded; the sampler decides which are drawn
        return 1 << 62

    def picture(self, g: int) -> int:
        n = self.count
        epoch = g // n
        if self._pass is None or self._pass[0] != epoch:
            rng = np.random.default_rng([self.seed, 1, epoch])
            order = rng.permutation(n) if not self.weighted else rng.choice(n, n, p=self.weights)
            self._pass = (epoch, order)
        return int(self._pass[1][g % n])

    def sample(self, g: int) -> NetworkSample:
        return make_sample(self.image(self.picture(g)), self.width, self.height, self.jitter,
                           np.random.default_rng([self.seed, 2, g]))

    def __getitem__(self, g: int) -> dict:
        s = self.sample(g)
        boxes, ids = torch.from_numpy(s.boxes), torch.from_numpy(s.ids)
        force = None
        if self.every_box and len(boxes):
            best = best_anchors(boxes[:, 2:] * torch.tensor([self.width, self.height]), self.anchor_px).tolist()
            force = [torch.tensor([k if self.anchor_head[j][0] == h else -1 for j, k in
                                   ((j, self.anchor_head[j][1]) for j in best)], dtype=torch.long)
                     for h in range(len(self.anchors))]
        heads = []
        for h, ((gh, gw), anchors) in enumerate(zip(self.grids, self.anchors)):
            targets, which = build_head_targets([boxes], [ids], gh, gw, anchors, None if force is None else [force[h]])
            conf = targets.conf[0]
            scale = torch.tensor([gw, gh, gw, gh], dtype=torch.float32)
            _ignore_regions(conf, s.ignore, anchor_boxes(gh, gw, anchors.float()).reshape(-1, 4), scale)
            fg = conf > 0
            # per cell: the box its foreground anchor matched (teacher embeddings follow it), -1 elsewhere
            if s.teacher is not None:
                cell_box = torch.where(fg, which[0], torch.full_like(which[0], -1)).max(0).values
            else:
                cell_box = torch.full((gh, gw), -1, dtype=torch.long)
            heads.append((conf.to(torch.int8), targets.deltas[0], targets.ids[0].to(torch.int32), cell_box.to(torch.int32)))
        teacher = torch.from_numpy(s.teacher).to(torch.float16) if s.teacher is not None else torch.zeros(0, TEACHER_DIM, dtype=torch.float16)
        return {"image": torch.from_numpy(s.image), "heads": heads, "teacher": teacher}


def collate(samples: list[dict]) -> dict:
    """Stack samples; teacher rows are concatenated and the cells' box indices offset into them."""
    images = torch.stack([s["image"] for s in samples])
    offsets = np.cumsum([0] + [len(s["teacher"]) for s in samples[:-1]])
    heads = []
    for h in range(len(samples[0]["heads"])):
        conf = torch.stack([s["heads"][h][0] for s in samples]).long()
        deltas = torch.stack([s["heads"][h][1] for s in samples])
        ids = torch.stack([s["heads"][h][2] for s in samples]).long()
        cell = torch.stack([torch.where(s["heads"][h][3] >= 0, s["heads"][h][3] + int(o), s["heads"][h][3])
                            for s, o in zip(samples, offsets)]).long()
        heads.append((conf, deltas, ids, cell))
    return {"images": images, "heads": heads, "teacher": torch.cat([s["teacher"] for s in samples])}


class StepBatches(torch.utils.data.Sampler):
    """The sample numbers of steps ``first .. last-1``: step ``t`` draws ``t*B .. t*B+B-1``."""

    def __init__(self, first: int, last: int, batch_size: int):
        self.first, self.last, self.batch_size = first, last, batch_size

    def __iter__(self):
        for step in range(self.first, self.last):
            yield list(range(step * self.batch_size, (step + 1) * self.batch_size))

    def __len__(self) -> int:
        return max(0, self.last - self.first)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class JDETrainer:
    """Owns the network, the training heads, the optimiser and the data."""

    def __init__(self, cfg_text: str, images: list[LabelledImage], num_ids: int, settings: JDETrainSettings,
                 device: torch.device, init_state: dict[str, torch.Tensor] | None = None):
        """``init_state``: network weights to start from (fine-tuning) instead of a random start;
        the training heads (uncertainty weights, identity classifier) always start afresh."""
        self.cfg_text = cfg_text
        self.images = images
        self.num_ids = num_ids
        self.settings = settings
        self.device = device
        self.model = JDE(parse_cfg_text(cfg_text))
        init_from_scratch(self.model, settings.seed)
        self.heads = TrainingHeads(self.model, num_ids, settings.seed)
        if init_state is not None:
            load_state(self.model, {k: v.float() if v.is_floating_point() else v for k, v in init_state.items()},
                       source=settings.init or "initial weights")
        self.model.to(device).train()
        self.heads.to(device).train()
        self.bf16 = settings.precision == "bf16"
        if settings.precision not in ("fp32", "bf16"):
            raise TrainingError(f"unknown precision '{settings.precision}' (fp32 or bf16)")
        if self.bf16 and device.type != "cuda":
            raise TrainingError("bf16 training needs a CUDA device")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.model.to(memory_format=torch.channels_last)
        params = list(self.model.named_parameters()) + list(self.heads.named_parameters())
        self.optimizer = make_optimizer(params, settings)
        self.jitter = Jitter.from_dict(settings.jitter)
        self.step = 0
        self.emb_scale = embedding_scale(num_ids)
        self.head_layers = [self.model.layer_inputs[y][0] for y in self.model.yolo_layers]
        self.anchors = [self.model.module_list[y][0].anchor_grid.detach().cpu() for y in self.model.yolo_layers]
        w, h = self.model.input_width, self.model.input_height
        grids = [(h // self.model.layer_strides[i], w // self.model.layer_strides[i]) for i in self.head_layers]
        self.samples = TrainingSamples(images, w, h, grids, self.anchors, self.jitter, settings.seed, settings.balance,
                                       settings.every_box)
        self.positives = [np.zeros(len(a), np.int64) for a in self.anchors]  # foreground anchors seen, per head
        if not any(im.teacher is not None for im in images):
            self.settings.distill_weight = 0.0

    # ------------------------------------------------------------------ data
    def batch(self, step: int) -> dict:
        """The batch of ``step``, prepared in this process."""
        b = self.settings.batch_size
        return collate([self.samples[g] for g in range(step * b, (step + 1) * b)])

    def batches(self, last: int):
        """Batches of steps ``self.step .. last-1``, prepared by ``settings.workers`` processes."""
        workers = self.settings.workers
        if workers == 0:
            for step in range(self.step, last):
                yield self.batch(step)
            return
        loader = torch.utils.data.DataLoader(
            self.samples, batch_sampler=StepBatches(self.step, last, self.settings.batch_size), num_workers=workers,
            collate_fn=collate, worker_init_fn=_worker_init, prefetch_factor=4, pin_memory=self.device.type == "cuda",
            multiprocessing_context="spawn", persistent_workers=False)
        yield from loader

    # ------------------------------------------------------------------ one step
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        dev = self.device
        x = batch["images"].to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            heads = self.model.forward_part1(x, self.head_layers)
        total = x.new_zeros(())
        terms = {"box": 0.0, "conf": 0.0, "ident": 0.0, "distill": 0.0}
        table = batch["teacher"].to(dev).float()
        for n, (y, head, (conf, deltas, ids, cell)) in enumerate(zip(self.model.yolo_layers, heads, batch["heads"])):
            self.positives[n] += (conf == 1).sum(dim=(0, 2, 3)).numpy()
            targets = HeadTargets(conf.to(dev, non_blocking=True), deltas.to(dev, non_blocking=True),
                                  ids.to(dev, non_blocking=True))
            teacher = None
            if self.settings.distill_weight > 0:
                cell = cell.to(dev)
                mask = cell >= 0
                teacher = (mask, table[cell[mask]], self.heads.distill)
            part = head_loss(head.float(), targets, self.heads.weights[str(y)], self.heads.classifier, self.emb_scale,
                             teacher, self.settings.distill_weight)
            total = total + part.total
            for key in terms:
                terms[key] += getattr(part, key) / len(heads)
        return total, terms

    def train_step(self, batch: dict | None = None) -> StepLog:
        start = time.perf_counter()
        lr = learning_rate(self.step, self.settings)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, terms = self.loss(batch if batch is not None else self.batch(self.step))
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
                "positives": [p.tolist() for p in self.positives],
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
        if fcm.get("version") != CHECKPOINT_VERSION:
            raise TrainingError(f"cannot resume: checkpoint version {fcm.get('version')} (this fcm writes "
                                f"{CHECKPOINT_VERSION}: its data order differs); start a new run")
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
        self.positives = [np.array(p, np.int64) for p in fcm.get("positives", [])] or self.positives

    def run(self, out: Path, on_step: Callable[[StepLog], None] | None = None,
            on_checkpoint: Callable[[int], None] | None = None) -> None:
        """Train up to ``settings.steps``, checkpointing to ``out`` as it goes. ``settings.steps``
        may be lowered by ``on_step`` (a time budget): the run stops there, with a checkpoint."""
        for batch in self.batches(self.settings.steps):
            log = self.train_step(batch)
            if on_step:
                on_step(log)
            done = self.step >= self.settings.steps
            if done or self.step % self.settings.checkpoint_every == 0:
                self.save(out)
                if on_checkpoint:
                    on_checkpoint(self.step)
            if done:
                break


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
