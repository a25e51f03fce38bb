"""advMSFC networks: multi-scale feature fusion (MSFF) and reconstruction (MSFR).

MSFF turns the three tensors of a JDE split point into one tensor at the coarsest grid; its last
layer is a linear 1x1 projection whose channels the Selective Learning Strategy (SLS) orders by
importance, so that the first k channels carry the most. MSFR rebuilds the three tensors from the
first k channels, the others zero-filled. Architectures come from ``cfg/advmsfc.toml`` (one
template, per-split widths); the design follows ``research/msfc.md`` section 7.

Tensors are handled by stride (finest = stride 8, middle = 16, coarsest = 32 at 1088x608); the
module maps them from and back to the split's own layer order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fcm_common.core.errors import FcmError
from fcm_common.core.resources import cfg_file, read_toml
from fcm_common.model.jde import NUM_DET_CHANNELS
from fcm_common.model.splits import get_split
from fcm_common.msfc.detection_code import (
    BOX_CHANNELS,
    DETECTIONS_CODE_VERSION,
    DetectionPlacement,
    DetectionRaster,
)

ARCH_FILE = "advmsfc.toml"


class MSFCConfigError(FcmError, ValueError):
    """An unusable advMSFC architecture description."""


FUSIONS = ("conv", "linear", "detections")


@dataclass(frozen=True)
class MSFCArch:
    """Widths of one advMSFC model; ``in_channels`` are the split tensors' (finest, middle, coarsest).

    ``fusion`` = ``conv``: the paper's MSFF/MSFR (strided convolutions, squeeze-and-excitation,
    pixel-shuffle upsampling; ``msff_widths`` and ``msfr_widths`` are their working widths).
    ``fusion`` = ``linear``: every scale is rearranged onto the coarsest grid (space to depth:
    a finest cell becomes 16 channels of a coarsest cell, a middle one 4), and one 1x1 linear
    projection, initialised from the principal components of real features (as the PCA feature
    reduction of the MPEG test model), makes the code; the decoder projects back and rearranges
    (depth to space), then ``msfr_widths`` > 0 adds a residual 3x3 refinement per scale.
    ``fusion`` = ``detections`` (backbone split only: the tensors are the prediction layers'
    inputs): the code carries the proposals JDE keeps, on the finest grid
    (:mod:`fcm_common.msfc.detection_code`); ``fused_channels`` = 5 box channels + embedding
    components; ``anchors`` (pixels) and ``strides`` are the network's prediction layers', finest first.
    """

    in_channels: tuple[int, int, int]
    fused_channels: int
    msff_widths: tuple[int, int] = (0, 0)
    msfr_widths: tuple[int, int, int] = (0, 0, 0)
    se_reduction: int = 16
    fusion: str = "conv"
    anchors: tuple = ()  # detections: per scale (finest first), the prediction layer's (w, h) anchors in pixels
    strides: tuple = ()  # detections: the prediction layers' strides, finest first
    patch: int = 0  # detections: box and embedding values also written this many cells around a proposal's
    skirt: float | None = None  # detections: the confidence code of those cells (None: background, -1)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise MSFCConfigError(f"unknown advMSFC fusion '{self.fusion}' ({' or '.join(FUSIONS)})")
        if self.fusion == "conv" and (0 in self.msff_widths or 0 in self.msfr_widths):
            raise MSFCConfigError("the conv fusion needs msff_widths and msfr_widths")
        if self.fusion == "linear" and self.fused_channels > self.stacked_channels:
            raise MSFCConfigError(f"a linear code of {self.fused_channels} channels exceeds the "
                                  f"{self.stacked_channels} stacked channels it projects")
        if self.fusion == "detections":
            self._check_detections()

    def _check_detections(self) -> None:
        embedding = self.in_channels[0] - NUM_DET_CHANNELS
        if len(set(self.in_channels)) != 1 or embedding < 1:
            raise MSFCConfigError("the detections code needs the prediction layers' inputs (the backbone split)")
        if not BOX_CHANNELS <= self.fused_channels <= BOX_CHANNELS + embedding:
            raise MSFCConfigError(f"the detections code has {BOX_CHANNELS} box channels and up to {embedding} "
                                  f"embedding components: fused_channels must be within {BOX_CHANNELS}.."
                                  f"{BOX_CHANNELS + embedding}, got {self.fused_channels}")
        if self.anchors and (len(self.anchors) != 3 or len(self.strides) != 3):
            raise MSFCConfigError("the detections code needs the anchors and strides of three prediction layers")

    @property
    def complete(self) -> bool:
        """Whether the architecture can be built (a detections code needs its network's anchors)."""
        return self.fusion != "detections" or bool(self.anchors)

    @property
    def stacked_channels(self) -> int:
        """Channels per coarsest cell once every scale is on the coarsest grid (space to depth)."""
        c8, c16, c32 = self.in_channels
        return 16 * c8 + 4 * c16 + c32

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.fusion == "conv":  # the identifiers of models made before the linear fusion stay as they were
            del d["fusion"]
        else:
            del d["msff_widths"], d["se_reduction"]
        if self.fusion == "detections":
            del d["msfr_widths"]
            d["code_version"] = DETECTIONS_CODE_VERSION  # the code's constants are part of what a model means
            if self.skirt is None:
                del d["skirt"]
        else:
            del d["anchors"], d["strides"], d["patch"], d["skirt"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MSFCArch:
        try:
            return cls(
                in_channels=tuple(int(v) for v in d["in_channels"]),
                fused_channels=int(d["fused_channels"]),
                msff_widths=tuple(int(v) for v in d.get("msff_widths", (0, 0))),
                msfr_widths=tuple(int(v) for v in d.get("msfr_widths", (0, 0, 0))),
                se_reduction=int(d.get("se_reduction", 16)),
                fusion=str(d.get("fusion", "conv")),
                anchors=tuple(tuple(tuple(float(v) for v in a) for a in scale) for scale in d.get("anchors", ())),
                strides=tuple(int(v) for v in d.get("strides", ())),
                patch=int(d.get("patch", 0)),
                skirt=None if d.get("skirt") is None else float(d["skirt"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MSFCConfigError(f"invalid advMSFC architecture ({exc})") from None


def scale_order(split: str) -> list[int]:
    """Positions, in split-layer order, of the finest, middle and coarsest tensor."""
    strides = get_split(split).strides
    return sorted(range(3), key=lambda i: strides[i])


def in_channels_for(split: str, split_shapes: Sequence[tuple[int, int, int]] | None = None) -> tuple[int, int, int]:
    """Channels of (finest, middle, coarsest) split tensors: the network's (``split_shapes``, as
    :meth:`JDE.split_shapes` gives them) or, by default, JDE-1088x608's."""
    sp = get_split(split)
    shapes = split_shapes if split_shapes is not None else sp.shapes_1088x608
    return tuple(int(shapes[i][0]) for i in scale_order(sp.name))


def _entries(table: dict, split: str, source) -> list[dict]:
    """A split's entries: one table (``[backbone]``) or several (``[[backbone]]``, one per network)."""
    if split not in table:
        raise MSFCConfigError(f"{source} has no [{split}] table")
    value = table[split]
    return [dict(v) for v in value] if isinstance(value, list) else [dict(value)]


def arch_for_split(split: str, path=None, split_shapes: Sequence[tuple[int, int, int]] | None = None) -> MSFCArch:
    """The architecture in ``cfg/advmsfc.toml`` (or ``path``) for a split point of a network.

    Each entry names the network it is for by ``in_channels`` (finest, middle, coarsest); an entry
    without them is for JDE-1088x608. A ``conv`` code has the coarsest tensor's channel count (the
    paper's); a ``linear`` code any width up to the stacked channels.
    """
    sp = get_split(split)
    channels = in_channels_for(sp.name, split_shapes)
    source = path or cfg_file(ARCH_FILE)
    table = read_toml(source, "advMSFC architecture file", MSFCConfigError)
    reference = in_channels_for(sp.name)
    for entry in _entries(table, sp.name, source):
        if tuple(entry.get("in_channels", reference)) == channels:
            entry["in_channels"] = list(channels)
            arch = MSFCArch.from_dict(entry)
            if arch.fusion == "conv" and arch.fused_channels != channels[2]:
                raise MSFCConfigError(f"{source}: [{sp.name}] fused_channels must be {channels[2]} for this network")
            return arch
    raise MSFCConfigError(
        f"{source} has no [{sp.name}] architecture for a network with {'/'.join(map(str, channels))} channels "
        "(finest/middle/coarsest): add one with in_channels = [...]"
    )


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class Bottleneck(nn.Module):
    """1x1 down to c/2, 3x3, 1x1 back to c, plus identity."""

    def __init__(self, c: int):
        super().__init__()
        h = max(c // 2, 1)
        self.body = nn.Sequential(_conv(c, h, 1), _act(), _conv(h, h, 3), _act(), _conv(h, c, 1))

    def forward(self, x):
        return x + self.body(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduction: int):
        super().__init__()
        h = max(c // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(c, h), nn.ReLU(), nn.Linear(h, c), nn.Sigmoid())

    def forward(self, x):
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class MSFF(nn.Module):
    """(finest, middle, coarsest) standardised tensors -> code y at the coarsest grid."""

    def __init__(self, arch: MSFCArch):
        super().__init__()
        c8, c16, c32 = arch.in_channels
        f16, f32 = arch.msff_widths
        c = arch.fused_channels
        self.down8 = nn.Sequential(_conv(c8, f16, 3, 2), _act())
        self.merge16 = nn.Sequential(_conv(f16 + c16, f16, 1), _act(), Bottleneck(f16))
        self.down16 = nn.Sequential(_conv(f16, f32, 3, 2), _act())
        self.attention = SqueezeExcite(f32 + c32, arch.se_reduction)
        self.fuse = nn.Sequential(_conv(f32 + c32, c, 1), _act(), _conv(c, c, 3), _act())
        self.project = _conv(c, c, 1)  # linear: the channels SLS orders

    def forward(self, x8, x16, x32):
        h = self.merge16(torch.cat([self.down8(x8), x16], 1))
        h = self.attention(torch.cat([self.down16(h), x32], 1))
        return self.project(self.fuse(h))


class MSFR(nn.Module):
    """code (truncated, zero-filled) -> standardised (finest, middle, coarsest) tensors."""

    def __init__(self, arch: MSFCArch):
        super().__init__()
        c8, c16, c32 = arch.in_channels
        w8, w16, w32 = arch.msfr_widths
        c = arch.fused_channels
        self.enter = nn.Sequential(_conv(c, w32, 3), _act(), Bottleneck(w32))
        self.out32 = _conv(w32, c32, 3)
        self.up16 = nn.Sequential(_conv(w32, 4 * w16, 1), nn.PixelShuffle(2), _act())
        self.skip16 = _conv(c32, w16, 1)
        self.body16 = Bottleneck(w16)
        self.out16 = _conv(w16, c16, 3)
        self.up8 = nn.Sequential(_conv(w16, 4 * w8, 1), nn.PixelShuffle(2), _act())
        self.skip8 = _conv(c16, w8, 1)
        self.body8 = Bottleneck(w8)
        self.out8 = _conv(w8, c8, 3)

    def forward(self, y):
        h32 = self.enter(y)
        x32 = self.out32(h32)
        h16 = self.body16(self.up16(h32) + F.interpolate(self.skip16(x32), scale_factor=2, mode="nearest"))
        x16 = self.out16(h16)
        h8 = self.body8(self.up8(h16) + F.interpolate(self.skip8(x16), scale_factor=2, mode="nearest"))
        return self.out8(h8), x16, x32


class LinearFusion(nn.Module):
    """(finest, middle, coarsest) standardised tensors -> space to depth -> linear 1x1 projection."""

    def __init__(self, arch: MSFCArch):
        super().__init__()
        self.project = nn.Conv2d(arch.stacked_channels, arch.fused_channels, 1)

    @staticmethod
    def stack(x8, x16, x32) -> torch.Tensor:
        return torch.cat([F.pixel_unshuffle(x8, 4), F.pixel_unshuffle(x16, 2), x32], 1)

    def forward(self, x8, x16, x32):
        return self.project(self.stack(x8, x16, x32))


class Refine(nn.Module):
    """x + a small 3x3 residual correction (its last conv starts at zero: the identity)."""

    def __init__(self, c: int, width: int):
        super().__init__()
        self.body = nn.Sequential(_conv(c, width, 3), _act(), _conv(width, c, 3))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x):
        return x + self.body(x)


class LinearReconstruction(nn.Module):
    """code (truncated, zero-filled) -> linear 1x1 back-projection -> depth to space (+ refinement)."""

    def __init__(self, arch: MSFCArch):
        super().__init__()
        self.channels = arch.in_channels
        self.unproject = nn.Conv2d(arch.fused_channels, arch.stacked_channels, 1)
        self.refine = nn.ModuleList(Refine(c, w) if w else nn.Identity()
                                    for c, w in zip(arch.in_channels, arch.msfr_widths))

    def forward(self, y):
        c8, c16, _ = self.channels
        z = self.unproject(y)
        x8 = F.pixel_shuffle(z[:, : 16 * c8], 4)
        x16 = F.pixel_shuffle(z[:, 16 * c8 : 16 * c8 + 4 * c16], 2)
        x32 = z[:, 16 * c8 + 4 * c16 :]
        return tuple(r(x) for r, x in zip(self.refine, (x8, x16, x32)))


class AdvMSFC(nn.Module):
    """MSFF + MSFR with per-channel feature standardisation, in the split's tensor order."""

    def __init__(self, arch: MSFCArch, order: Sequence[int] = (0, 1, 2)):
        super().__init__()
        self.arch = arch
        self.order = tuple(order)  # split positions of finest, middle, coarsest
        if arch.fusion == "linear":
            self.msff, self.msfr = LinearFusion(arch), LinearReconstruction(arch)
        elif arch.fusion == "detections":
            if not arch.complete:
                raise MSFCConfigError("a detections code is built for a network: its anchors are missing")
            self.msff, self.msfr = DetectionRaster(arch), DetectionPlacement(arch)
        else:
            self.msff, self.msfr = MSFF(arch), MSFR(arch)
        for name, c in zip(("8", "16", "32"), arch.in_channels):
            self.register_buffer(f"mean{name}", torch.zeros(c))
            self.register_buffer(f"std{name}", torch.ones(c))

    @property
    def fused_channels(self) -> int:
        return self.arch.fused_channels

    @property
    def code_scale(self) -> int:
        """The scale the code is on: 2, the coarsest (MSFF's); 0, the finest (the detections code)."""
        return 0 if self.arch.fusion == "detections" else 2

    def _stats(self):
        return [(self.mean8, self.std8), (self.mean16, self.std16), (self.mean32, self.std32)]

    def set_statistics(self, means: Sequence[torch.Tensor], stds: Sequence[torch.Tensor]) -> None:
        """Per-channel mean and standard deviation of (finest, middle, coarsest)."""
        with torch.no_grad():
            for (m, s), mean, std in zip(self._stats(), means, stds):
                m.copy_(mean)
                s.copy_(std.clamp(min=1e-6))

    def by_scale(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [features[i] for i in self.order]

    def standardise(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Split-order tensors -> standardised (finest, middle, coarsest)."""
        return [(x - m[:, None, None]) / s[:, None, None] for x, (m, s) in zip(self.by_scale(features), self._stats())]

    def destandardise(self, scaled: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Standardised (finest, middle, coarsest) -> split-order tensors."""
        out: list[torch.Tensor | None] = [None, None, None]
        for pos, x, (m, s) in zip(self.order, scaled, self._stats()):
            out[pos] = x * s[:, None, None] + m[:, None, None]
        return out  # type: ignore[return-value]

    def encode(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Split tensors -> code y (B, C, H/32, W/32), channels ordered by importance."""
        return self.msff(*self.standardise(features))

    def decode(self, code: torch.Tensor) -> list[torch.Tensor]:
        """Code (zero-filled beyond the kept channels) -> split tensors."""
        return self.destandardise(self.msfr(code))

    @staticmethod
    def zero_fill(kept: torch.Tensor, channels: int) -> torch.Tensor:
        """The first k channels -> all C channels, the rest zero (as SLS trained MSFR to expect)."""
        k = kept.shape[1]
        if k > channels:
            raise ValueError(f"{k} kept channels exceed the code's {channels}")
        if k == channels:
            return kept
        pad = kept.new_zeros(kept.shape[0], channels - k, *kept.shape[2:])
        return torch.cat([kept, pad], 1)

    def forward(self, features: Sequence[torch.Tensor], keep: int | None = None) -> list[torch.Tensor]:
        y = self.encode(features)
        if keep is not None:
            y = self.zero_fill(y[:, :keep], y.shape[1])
        return self.decode(y)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
