"""JDE-1088x608 built from its Darknet cfg, cut at MPEG split points.

The network is assembled layer by layer from ``cfg/jde_1088x608.cfg`` so that module names are
those of the official checkpoint (``module_list.<i>.conv_<i>``, ``module_list.<i>.batch_norm_<i>``)
and the official ``jde.1088x608.uncertainty.pt`` loads key for key.

Execution follows the layer graph (which layer reads which), not a fixed loop: NN part 1 computes
only the ancestors of the split tensors, and NN part 2 computes only what lies between the split
tensors and the three prediction layers. Part 2 therefore cannot read anything but the transmitted
tensors, and ``model(x)`` is exactly ``forward_part2(forward_part1(x, s), s)`` for every split.

Output of the prediction layers (as JDE's test-time YOLO layer): one row per anchor and cell,
``[cx, cy, w, h, conf, 0, emb_0..emb_511]`` with boxes in network-input pixels, ``conf`` the
foreground softmax and the embedding L2-normalised; rows ordered head by head (19x34, 38x68,
76x136 at 1088x608), then anchor, row, column: ``(B, 54264, 518)`` at 1088x608.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fcm_common.core.errors import FcmError
from fcm_common.core.resources import DEFAULT_JDE_CFG, cfg_file
from fcm_common.data.synthetic import render_sequence
from fcm_common.model.darknet_cfg import CfgError, LayerDef, NetworkCfg, parse_cfg, parse_cfg_text
from fcm_common.model.preprocess import preprocess
from fcm_common.model.splits import SplitPoint, get_split

IMAGE = -1  # pseudo layer index of the network input
NUM_DET_CHANNELS = 24  # 4 anchors x (dx, dy, dw, dh, background, foreground)

# Checkpoint entries that exist in the official file but play no part at inference.
_IGNORED_KEY_PARTS = (".yolo_", "classifier.")


class WeightsError(FcmError, ValueError):
    """A checkpoint that cannot be loaded into the network."""


class YOLODecode(nn.Module):
    """JDE's test-time prediction layer: decodes a 536-channel head output into proposals.

    No learned parameters take part (the official layer's uncertainty scalars only weight training
    losses), so the anchors are a non-persistent buffer and the state dict has no entry here.
    """

    def __init__(self, anchors: list[tuple[float, float]], stride: int, embedding_dim: int):
        super().__init__()
        self.num_anchors = len(anchors)
        self.stride = float(stride)
        self.embedding_dim = embedding_dim
        # Anchor sizes in grid units, computed in float32 as the reference does.
        anchor_px = torch.tensor(anchors, dtype=torch.float32)
        self.register_buffer("anchor_grid", anchor_px / self.stride, persistent=False)

    def forward(self, head: torch.Tensor) -> torch.Tensor:
        # Decoding is done in fp32 even when the network runs in fp16/bf16: box centres reach
        # 1088 px, which bf16 cannot hold to the pixel.
        head = head.float()
        batch, _, grid_h, grid_w = head.shape
        nA = self.num_anchors
        det = head[:, :NUM_DET_CHANNELS].reshape(batch, nA, 6, grid_h, grid_w)
        det = det.permute(0, 1, 3, 4, 2).contiguous()  # B, A, H, W, 6
        emb = head[:, NUM_DET_CHANNELS:].permute(0, 2, 3, 1).contiguous()  # B, H, W, E

        conf = torch.softmax(det[..., 4:6].permute(0, 4, 1, 2, 3), dim=1)[:, 1].unsqueeze(-1)
        emb = F.normalize(emb.unsqueeze(1).repeat(1, nA, 1, 1, 1), dim=-1)
        cls = torch.zeros_like(conf)

        # Box: centre = (anchor * d + cell index) * stride, size = anchor * exp(d) * stride,
        # evaluated in that order (grid units first, then pixels).
        ys, xs = torch.meshgrid(
            torch.arange(grid_h, device=head.device),
            torch.arange(grid_w, device=head.device),
            indexing="ij",
        )
        cell_x = xs.to(torch.float32)[None, None]
        cell_y = ys.to(torch.float32)[None, None]
        anchors = self.anchor_grid.float()  # stays fp32 when the network is cast to fp16/bf16
        anchor_w = anchors[:, 0].view(1, nA, 1, 1)
        anchor_h = anchors[:, 1].view(1, nA, 1, 1)
        cx = (anchor_w * det[..., 0] + cell_x) * self.stride
        cy = (anchor_h * det[..., 1] + cell_y) * self.stride
        w = (anchor_w * torch.exp(det[..., 2])) * self.stride
        h = (anchor_h * torch.exp(det[..., 3])) * self.stride
        boxes = torch.stack([cx, cy, w, h], dim=-1)

        out = torch.cat([boxes, conf, cls, emb], dim=-1)
        return out.view(batch, -1, out.shape[-1])


class _Identity(nn.Module):
    """Placeholder that keeps route/shortcut/upsample layers at their index in ``module_list``."""

    def forward(self, x):  # pragma: no cover - never called, the graph runner handles these layers
        return x


class JDE(nn.Module):
    """JDE built from a Darknet cfg, with split-point execution."""

    def __init__(self, cfg: NetworkCfg):
        super().__init__()
        self.cfg = cfg
        self.input_width = cfg.width
        self.input_height = cfg.height
        self.embedding_dim = int(cfg.net.get("embedding_dim", 512))
        self.layer_types: list[str] = []
        self.layer_inputs: list[tuple[int, ...]] = []
        self.layer_channels: list[int] = []
        self.layer_strides: list[int] = []
        self.module_list = nn.ModuleList()
        self.weights_id = ""  # set by load_jde: identifies the weights (see weights_digest)

        for layer in cfg.layers:
            self.module_list.append(self._build_layer(layer))
        self.yolo_layers = tuple(i for i, t in enumerate(self.layer_types) if t == "yolo")
        if not self.yolo_layers:
            raise CfgError("the cfg has no [yolo] layer")
        self._consumers = self._consumer_lists()

    # ------------------------------------------------------------------ building
    def _resolve(self, index: int, ref: int) -> int:
        target = index + ref if ref < 0 else ref
        if not 0 <= target < index:
            raise CfgError(f"layer {index}: reference {ref} points outside layers 0..{index - 1}")
        return target

    def _build_layer(self, layer: LayerDef) -> nn.Module:
        i = layer.index
        prev_channels = self.layer_channels[-1] if self.layer_channels else self.cfg.channels
        prev_stride = self.layer_strides[-1] if self.layer_strides else 1
        seq = nn.Sequential()
        kind = layer.type
        if kind == "convolutional":
            filters = layer.get_int("filters")
            size = layer.get_int("size")
            stride = layer.get_int("stride", 1)
            bn = layer.get_int("batch_normalize", 0)
            pad = (size - 1) // 2 if layer.get_int("pad", 0) else 0
            seq.add_module(
                f"conv_{i}",
                nn.Conv2d(prev_channels, filters, size, stride=stride, padding=pad, bias=not bn),
            )
            if bn:
                seq.add_module(f"batch_norm_{i}", nn.BatchNorm2d(filters))
            activation = layer.options.get("activation", "linear")
            if activation == "leaky":
                seq.add_module(f"leaky_{i}", nn.LeakyReLU(0.1))
            elif activation != "linear":
                raise CfgError(f"layer {i}: unsupported activation '{activation}'")
            inputs, channels, out_stride = (i - 1 if i else IMAGE,), filters, prev_stride * stride
        elif kind == "shortcut":
            source = self._resolve(i, layer.get_int("from"))
            if self.layer_channels[source] != prev_channels:
                raise CfgError(f"layer {i}: shortcut adds tensors of different channel counts")
            inputs, channels, out_stride = (i - 1, source), prev_channels, prev_stride
            seq.add_module(f"shortcut_{i}", _Identity())
        elif kind == "route":
            inputs = tuple(self._resolve(i, ref) for ref in layer.get_ints("layers"))
            strides = {self.layer_strides[j] for j in inputs}
            if len(strides) != 1:
                raise CfgError(f"layer {i}: route concatenates tensors of different strides")
            channels = sum(self.layer_channels[j] for j in inputs)
            out_stride = strides.pop()
            seq.add_module(f"route_{i}", _Identity())
        elif kind == "upsample":
            factor = layer.get_int("stride")
            if prev_stride % factor:
                raise CfgError(f"layer {i}: upsampling beyond the input resolution")
            inputs, channels, out_stride = (i - 1,), prev_channels, prev_stride // factor
            seq.add_module(f"upsample_{i}", _Identity())
        elif kind == "yolo":
            mask = layer.get_ints("mask")
            values = layer.get_floats("anchors")
            pairs = [(values[k], values[k + 1]) for k in range(0, len(values) - 1, 2)]
            if len(values) % 2 or any(m >= len(pairs) for m in mask):
                raise CfgError(f"layer {i}: anchors/mask do not fit together")
            if layer.get_int("classes", 1) != 1:
                raise CfgError(f"layer {i}: JDE has one class; got classes={layer.options['classes']}")
            expected = NUM_DET_CHANNELS + self.embedding_dim
            if len(mask) * 6 != NUM_DET_CHANNELS or prev_channels != expected:
                raise CfgError(
                    f"layer {i}: a JDE prediction layer needs 4 anchors and {expected} input channels"
                )
            seq.add_module(
                f"yolo_{i}", YOLODecode([pairs[m] for m in mask], prev_stride, self.embedding_dim)
            )
            inputs, channels, out_stride = (i - 1,), 6 + self.embedding_dim, prev_stride
        else:  # pragma: no cover - the parser rejects unknown types
            raise CfgError(f"layer {i}: unsupported type {kind}")
        self.layer_types.append(kind)
        self.layer_inputs.append(inputs)
        self.layer_channels.append(channels)
        self.layer_strides.append(out_stride)
        return seq

    def _consumer_lists(self) -> dict[int, list[int]]:
        consumers: dict[int, list[int]] = {}
        for i, inputs in enumerate(self.layer_inputs):
            for j in inputs:
                consumers.setdefault(j, []).append(i)
        return consumers

    # ------------------------------------------------------------------ graph queries
    def _ancestors(self, targets: Sequence[int], stop: frozenset[int] = frozenset()) -> set[int]:
        """Layers needed to compute `targets`, not looking past layers in `stop`."""
        needed: set[int] = set()
        todo = list(targets)
        while todo:
            i = todo.pop()
            if i in needed or i == IMAGE:
                continue
            needed.add(i)
            if i in stop:
                continue
            todo.extend(self.layer_inputs[i])
        return needed

    def part1_layers(self, split: str | SplitPoint | Sequence[int]) -> list[int]:
        """Layers NN part 1 computes for a split (sorted)."""
        return sorted(self._ancestors(self._split_layers(split)))

    def part2_layers(self, split: str | SplitPoint | Sequence[int]) -> list[int]:
        """Layers NN part 2 computes for a split (sorted, split layers excluded)."""
        layers = self._split_layers(split)
        needed = self._ancestors(self.yolo_layers, stop=frozenset(layers))
        boundary = {i for i in needed if i not in layers and IMAGE in self.layer_inputs[i]}
        if boundary:
            raise ValueError(
                f"split {list(layers)} does not separate the input from the outputs "
                f"(layer {min(boundary)} reads the image in part 2)"
            )
        return sorted(needed - set(layers))

    def _split_layers(self, split: str | SplitPoint | Sequence[int]) -> tuple[int, ...]:
        if isinstance(split, (str, SplitPoint)):
            layers = get_split(split).layers
        else:
            layers = tuple(int(i) for i in split)
        for i in layers:
            if not 0 <= i < len(self.layer_types):
                raise ValueError(f"split layer {i} is not a layer of this network")
        return layers

    def split_shapes(
        self, split: str | SplitPoint | Sequence[int], input_size: tuple[int, int] | None = None
    ) -> list[tuple[int, int, int]]:
        """(C, H, W) of each split tensor for an input of ``input_size`` = (W, H)."""
        width, height = input_size or (self.input_width, self.input_height)
        return [
            (self.layer_channels[i], height // self.layer_strides[i], width // self.layer_strides[i])
            for i in self._split_layers(split)
        ]

    def prediction_layers(self) -> list[YOLODecode]:
        """JDE's prediction layers (their anchors and strides), in prediction-layer order."""
        return [self.module_list[i][0] for i in self.yolo_layers]

    def heads_are_split(self, split: str | SplitPoint | Sequence[int]) -> bool:
        """Whether the split tensors are the prediction layers' inputs (the backbone split)."""
        return list(self._split_layers(split)) == [self.layer_inputs[y][0] for y in self.yolo_layers]

    @property
    def num_proposals(self) -> int:
        """Rows of the prediction output at the cfg input size (54264 at 1088x608)."""
        total = 0
        for i in self.yolo_layers:
            s = self.layer_strides[i]
            total += 4 * (self.input_height // s) * (self.input_width // s)
        return total

    # ------------------------------------------------------------------ execution
    def _compute_layer(self, i: int, values: dict[int, torch.Tensor]) -> torch.Tensor:
        kind = self.layer_types[i]
        inputs = self.layer_inputs[i]
        if kind == "convolutional":
            return self.module_list[i](values[inputs[0]])
        if kind == "shortcut":
            return values[inputs[0]] + values[inputs[1]]
        if kind == "route":
            if len(inputs) == 1:
                return values[inputs[0]]
            return torch.cat([values[j] for j in inputs], 1)
        if kind == "upsample":
            factor = self.layer_strides[inputs[0]] // self.layer_strides[i]
            return F.interpolate(values[inputs[0]], scale_factor=factor, mode="nearest")
        return self.module_list[i](values[inputs[0]])  # yolo

    def _run(
        self, values: dict[int, torch.Tensor], layers: list[int], keep: Sequence[int]
    ) -> dict[int, torch.Tensor]:
        """Compute `layers` in order from `values`, freeing tensors once their last reader ran."""
        scheduled = set(layers)
        remaining = {
            j: sum(1 for c in self._consumers.get(j, ()) if c in scheduled)
            for j in list(values) + layers
        }
        keep_set = set(keep)
        for i in layers:
            values[i] = self._compute_layer(i, values)
            for j in set(self.layer_inputs[i]):
                remaining[j] -= 1
                if remaining[j] == 0 and j not in keep_set:
                    values.pop(j, None)
        return values

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.cfg.channels:
            raise ValueError(f"expected a (B, {self.cfg.channels}, H, W) batch, got {tuple(x.shape)}")
        coarsest = max(self.layer_strides)
        if x.shape[2] % coarsest or x.shape[3] % coarsest:
            raise ValueError(f"input height and width must be multiples of {coarsest}, got {tuple(x.shape[2:])}")

    def forward_part1(self, x: torch.Tensor, split: str | SplitPoint | Sequence[int]) -> list[torch.Tensor]:
        """NN part 1: the split tensors for an input batch, in split-layer order."""
        self._check_input(x)
        layers = self._split_layers(split)
        values = self._run({IMAGE: x}, self.part1_layers(layers), keep=layers)
        return [values[i] for i in layers]

    def forward_part2(
        self, features: Sequence[torch.Tensor], split: str | SplitPoint | Sequence[int]
    ) -> torch.Tensor:
        """NN part 2: prediction rows ``(B, N, 6 + E)`` from the split tensors alone."""
        layers = self._split_layers(split)
        if len(features) != len(layers):
            raise ValueError(f"split {list(layers)} needs {len(layers)} tensors, got {len(features)}")
        ref = features[0]
        for i, tensor in zip(layers, features):
            if tensor.dim() != 4 or tensor.shape[1] != self.layer_channels[i]:
                raise ValueError(
                    f"split tensor for layer {i} must be (B, {self.layer_channels[i]}, H, W), "
                    f"got {tuple(tensor.shape)}"
                )
            scale = self.layer_strides[i] / self.layer_strides[layers[0]]
            expect = (round(ref.shape[2] / scale), round(ref.shape[3] / scale))
            if tuple(tensor.shape[2:]) != expect or tensor.shape[0] != ref.shape[0]:
                raise ValueError(f"split tensors have inconsistent sizes: {[tuple(t.shape) for t in features]}")
        values = dict(zip(layers, features))
        values = self._run(values, self.part2_layers(layers), keep=self.yolo_layers)
        return torch.cat([values[i] for i in self.yolo_layers], 1)

    def forward_heads(
        self, features: Sequence[torch.Tensor], split: str | SplitPoint | Sequence[int]
    ) -> list[torch.Tensor]:
        """The inputs of the prediction layers (24 detection + E embedding channels each, in
        prediction-layer order) computed from the split tensors; differentiable, used by training."""
        layers = self._split_layers(split)
        targets = [self.layer_inputs[y][0] for y in self.yolo_layers]
        needed = self._ancestors(targets, stop=frozenset(layers)) - set(layers)
        values = self._run(dict(zip(layers, features)), sorted(needed), keep=targets)
        return [values[t] for t in targets]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole network: prediction rows for an input batch."""
        self._check_input(x)
        layers = sorted(self._ancestors(self.yolo_layers))
        values = self._run({IMAGE: x}, layers, keep=self.yolo_layers)
        return torch.cat([values[i] for i in self.yolo_layers], 1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


# ---------------------------------------------------------------------- weights
RANDOM_DETECTION_OFFSET = 12.0  # background-minus-foreground logit offset of the random network
RESIDUAL_BRANCH_GAIN = 0.3  # batch-norm scale closing each residual branch of the random network
CALIBRATION_SIZE = (544, 320)  # (W, H) of the calibration picture: small, so it is fast on a CPU


def _calibration_batch(seed: int) -> torch.Tensor:
    """One letterboxed synthetic street-like picture (see fcm_common.data.synthetic)."""
    width, height = CALIBRATION_SIZE
    frames, _ = render_sequence(num_frames=1, width=width, height=width * 9 // 16, seed=seed)
    return preprocess(frames[0], width, height)[0][None]


def _randomize(model: JDE, seed: int) -> None:
    """Deterministic random weights that behave like a trained network's in scale.

    Naive random weights make a 75-layer network either collapse to its biases (every proposal
    gets the same score, whatever the picture) or blow up, which would make tests vacuous. So:
    He-initialised convs, identity batch norms except a small scale closing each residual branch
    (the stream then grows slowly instead of doubling per block), and the linear head convs
    standardised on one seeded synthetic picture, box deltas damped and the foreground logit
    offset so that a handful of proposals per frame pass the 0.5 confidence threshold.
    """
    gen = torch.Generator().manual_seed(seed)
    residual_closers = {
        model.layer_inputs[i][0] for i, kind in enumerate(model.layer_types) if kind == "shortcut"
    }
    with torch.no_grad():
        for i, seq in enumerate(model.module_list):
            for module in seq:
                if isinstance(module, nn.Conv2d):
                    fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                    std = (2.0 / (1 + 0.1**2) / fan_in) ** 0.5
                    module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.weight.fill_(RESIDUAL_BRANCH_GAIN if i in residual_closers else 1.0)
                    module.bias.zero_()

        heads = [j for yolo in model.yolo_layers for j in model.layer_inputs[model.layer_inputs[yolo][0]]]
        # one thread: the result of a convolution depends on how its sums are split between threads,
        # and these values go into the weights, hence into the weights identifier of the streams
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            values = model._run({IMAGE: _calibration_batch(seed)}, sorted(model._ancestors(heads)), keep=heads)
        finally:
            torch.set_num_threads(threads)
        for j in heads:
            conv = model.module_list[j][0]
            out = values[j]
            mean = out.mean(dim=(0, 2, 3))
            std = out.std(dim=(0, 2, 3)).clamp(min=1e-6)
            conv.weight.div_(std.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - mean) / std)
            if conv.out_channels == NUM_DET_CHANNELS:
                for k in range(4):  # dx, dy, dw, dh of each anchor: keep boxes near their anchors
                    conv.weight[k::6] *= 0.25
                    conv.bias[k::6] *= 0.25
                conv.bias[4::6] += RANDOM_DETECTION_OFFSET / 2
                conv.bias[5::6] -= RANDOM_DETECTION_OFFSET / 2


def _inference_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def weights_digest(model: nn.Module) -> str:
    """Identifier of the weights used at inference: sha256 over names and float32 values.

    Computed from the loaded tensors (not the file), so a checkpoint re-saved with or without its
    optimizer state, or in another serialisation format, keeps its identifier.
    """
    digest = hashlib.sha256()
    for key, tensor in sorted(_inference_state(model).items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict of a JDE checkpoint (``ckpt['model']``, or a bare state dict) and the Darknet
    cfg text it carries (``ckpt['fcm']['cfg']``, written by fcm-train-jde; None for official files)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    trust = os.environ.get("FCM_TRUST_CHECKPOINT") == "1"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise WeightsError(
                f"{path} holds Python objects besides tensors, which are not unpickled by default; "
                "if you trust the file, set FCM_TRUST_CHECKPOINT=1"
            ) from None
        raise WeightsError(f"cannot read {path} as a PyTorch checkpoint (not a checkpoint, or damaged)") from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for non-checkpoint files
        raise WeightsError(f"cannot read {path} as a PyTorch checkpoint ({type(exc).__name__})") from None
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no JDE state dict (expected a dict with a 'model' entry)")
    extra = ckpt.get("fcm") if isinstance(ckpt, dict) else None
    cfg_text = extra.get("cfg") if isinstance(extra, dict) else None
    if cfg_text is not None and not isinstance(cfg_text, str):
        raise WeightsError(f"{path}: the cfg recorded in the checkpoint is not text")
    return state, cfg_text


def load_state(model: JDE, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy a state dict into the model, refusing any missing, mis-shaped or unknown weight."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue
            raise WeightsError(f"{source} does not fit JDE: missing weight '{key}'")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{source} does not fit JDE: '{key}' has shape {tuple(state[key].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected and not any(part in key for part in _IGNORED_KEY_PARTS):
            raise WeightsError(f"{source} does not fit JDE: unexpected weight '{key}'")
    with torch.no_grad():
        for key, tensor in expected.items():
            if key in state:
                tensor.copy_(state[key].to(tensor.dtype))


def load_jde(
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    cfg: str | Path | None = None,
    seed: int = 0,
) -> JDE:
    """Build JDE from its cfg and load weights.

    ``weights=None`` gives seeded random weights (for tests and smoke runs); otherwise a path to
    the official checkpoint (or any file whose ``['model']`` has the same keys). A checkpoint written
    by fcm-train-jde carries its cfg, which is used unless ``cfg`` is given; other checkpoints get
    ``cfg`` or the JDE-1088x608 cfg. The model is returned in eval mode with gradients off;
    ``model.weights_id`` identifies the weights.
    """
    state, carried_cfg = read_checkpoint(weights) if weights is not None else (None, None)
    if cfg is not None:
        net_cfg = parse_cfg(cfg)
    elif carried_cfg is not None:
        net_cfg = parse_cfg_text(carried_cfg, Path(f"{weights} (recorded cfg)"))
    else:
        net_cfg = parse_cfg(cfg_file(DEFAULT_JDE_CFG))
    model = JDE(net_cfg)
    if state is None:
        _randomize(model, seed)
    else:
        load_state(model, state, source=str(weights))
    model.weights_id = weights_digest(model)
    model.eval().requires_grad_(False)
    return model.to(device)
