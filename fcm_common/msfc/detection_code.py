"""The detection code of the backbone split: only what JDE's prediction layers keep, on one grid.

At the backbone split the split tensors are the inputs of JDE's prediction layers, so the encoder
can decode them itself. The tracker is fed only the proposals that survive JDE's own selection
(confidence above 0.5, greedy NMS at IoU 0.4: :mod:`fcm_common.model.proposals`); every other value
of the three tensors can be replaced without changing a track. This is the candidate mask taken to
its end: nothing but the surviving proposals is coded.

MSFF (:class:`DetectionRaster`) writes each surviving proposal into one cell of the finest grid,
the cell its box centre falls in (a free neighbour when two centres share a cell). Channels, in the
order the Selective Learning Strategy keeps them:

0. confidence, ``2p - 1`` (-1 where there is no proposal);
1-2. box centre, its offset from the cell's centre (compressed beyond the cell: a box centred far
     outside the picture, in the border cell, is coded too);
3-4. box width and height, log of their size in cells;
5.. the principal components of the proposal's normalised embedding, by decreasing variance.

Cells without a proposal carry, in channels 1.., the harmonic interpolation of the proposals' values
(the smoothest field through them): VVC codes such a field for almost nothing, and a cell that
coding errors lift over the confidence threshold next to a person decodes nearly that person's
box, which NMS then suppresses. MSFR (:class:`DetectionPlacement`) puts every cell back as anchor 0
of the finest prediction layer, with the same box, confidence and embedding direction; every other
anchor and both coarser tensors are background. JDE's part 2 and the tracker then see the
proposals the encoder kept, as coded.

Every channel lies in [-1, 1], the model's code range: the gains below set the precision of each
group (1 of the 1,023 levels: 0.005 cells of box centre inside its cell, 0.6 % of box size, 0.002 of
confidence;
the embedding components share one scale, 3.5 standard deviations of the first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
import torch.nn.functional as F
from torch import nn

from fcm_common.model.jde import NUM_DET_CHANNELS, YOLODecode
from fcm_common.model.proposals import select

DETECTIONS_CODE_VERSION = 1  # recorded in every model: a change of the constants below makes another code
BOX_CHANNELS = 5  # confidence, centre x, centre y, log width, log height
CODE_RANGE = (-1.0, 1.0)
# box centre offset o (cells, from the cell's centre) -> code asinh(o / SOFT) / asinh(REACH / SOFT): linear
# inside the cell (0.36 code per cell), compressed beyond, so that a centre far outside the picture
# (a proposal at the border cell) is still coded, less precisely
OFFSET_SOFT = 0.5
OFFSET_REACH = 64.0
SIZE_LOG_RANGE = (math.log(0.5), math.log(256.0))  # box sizes from half a cell to 256 cells
EMBEDDING_SPREAD = 3.5  # standard deviations of the first principal component in the code's half range
BACKGROUND_LOGIT = -8.0  # foreground logit of a cell without a proposal (p = 3e-4)
MIN_PROBABILITY = 1e-4  # decoded confidences are kept inside (MIN, 1 - MIN): finite logits
NEIGHBOURS = [(0, 0)] + sorted(((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)),
                               key=lambda d: (abs(d[0]) + abs(d[1]), d))


def _offset_code(offset: torch.Tensor) -> torch.Tensor:
    return torch.asinh(offset / OFFSET_SOFT) / math.asinh(OFFSET_REACH / OFFSET_SOFT)


def _offset_value(code: torch.Tensor) -> torch.Tensor:
    return torch.sinh(code * math.asinh(OFFSET_REACH / OFFSET_SOFT)) * OFFSET_SOFT


def _size_code(log_size: torch.Tensor) -> torch.Tensor:
    lo, hi = SIZE_LOG_RANGE
    return (log_size - (lo + hi) / 2) / ((hi - lo) / 2)


def _size_value(code: torch.Tensor) -> torch.Tensor:
    lo, hi = SIZE_LOG_RANGE
    return code * ((hi - lo) / 2) + (lo + hi) / 2


@lru_cache(maxsize=8)
def _laplacian(height: int, width: int) -> sparse.csr_matrix:
    """Graph Laplacian of the 4-connected grid (Neumann border): what the harmonic fill solves."""
    idx = np.arange(height * width).reshape(height, width)
    pairs = [(idx[:, :-1].ravel(), idx[:, 1:].ravel()), (idx[:-1, :].ravel(), idx[1:, :].ravel())]
    rows = np.concatenate([a for a, b in pairs] + [b for a, b in pairs])
    cols = np.concatenate([b for a, b in pairs] + [a for a, b in pairs])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(height * width,) * 2)
    return (sparse.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency).tocsr()


def harmonic_fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(C, H, W) values kept where ``known`` (H, W), elsewhere the harmonic interpolation of them
    (the discrete Laplace equation solved with the known cells as boundary)."""
    if known.all() or not known.any():
        return values
    c, h, w = values.shape
    lap = _laplacian(h, w)
    kn = known.ravel()
    un = ~kn
    flat = values.reshape(c, -1).astype(np.float64)
    lap_u = lap[un]
    rhs = -(lap_u[:, kn] @ flat[:, kn].T)
    flat[:, un] = sparse_linalg.splu(lap_u[:, un].tocsc()).solve(rhs).T
    return flat.reshape(c, h, w)


class _EmbeddingBasis(nn.Module):
    """The principal components of normalised embeddings the code carries (fitted, see :func:`fit_embedding_code`)."""

    def __init__(self, arch):
        super().__init__()
        embedding_dim = arch.in_channels[0] - NUM_DET_CHANNELS
        components = arch.fused_channels - BOX_CHANNELS
        self.register_buffer("embedding_mean", torch.zeros(embedding_dim))
        self.register_buffer("embedding_basis", torch.eye(embedding_dim, components))
        self.register_buffer("embedding_scale", torch.ones(components))  # code 1 = this many units of a component


class DetectionRaster(_EmbeddingBasis):
    """MSFF of the detection code: (finest, middle, coarsest) head inputs -> code on the finest grid."""

    def __init__(self, arch):
        super().__init__(arch)
        self.strides = tuple(arch.strides)
        self.patch = int(arch.patch)
        self.skirt = arch.skirt  # confidence code of a patch's other cells (None: background)
        # JDE's prediction layers, coarsest first: the order of part 2's rows (NMS breaks ties by it)
        self.heads = nn.ModuleList(YOLODecode([tuple(a) for a in anchors], stride, self.embedding_mean.numel())
                                   for anchors, stride in reversed(list(zip(arch.anchors, arch.strides))))

    def proposals(self, x8: torch.Tensor, x16: torch.Tensor, x32: torch.Tensor) -> list[torch.Tensor]:
        """Per frame, the prediction rows JDE keeps (confidence, NMS), in NMS order."""
        rows = torch.cat([head(x) for head, x in zip(self.heads, (x32, x16, x8))], 1)
        return [r[select(r)] for r in rows]

    def forward(self, x8: torch.Tensor, x16: torch.Tensor, x32: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.raster(rows, x8.shape[2], x8.shape[3]) for rows in self.proposals(x8, x16, x32)])

    def raster(self, rows: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """One frame's kept rows -> its (C, H, W) code."""
        stride = self.strides[0]
        channels = BOX_CHANNELS + self.embedding_scale.numel()
        values = np.zeros((channels, height, width))
        taken = np.zeros((height, width), bool)
        known = np.zeros((height, width), bool)
        if len(rows):
            centres = (rows[:, :2] / stride).double()
            cells = self._cells(centres, taken)
            emb = F.normalize(rows[:, 6:].float(), dim=1)
            comps = ((emb - self.embedding_mean) @ self.embedding_basis) / self.embedding_scale
            sizes = _size_code(torch.log(rows[:, 2:4].double() / stride)).tolist()
            placed = [(n, cell) for n, cell in enumerate(cells) if cell is not None]
            # patches (around each proposal's cell), the less confident first: where two overlap, the more
            # confident proposal's values win; then every proposal's own cell, which no patch may change
            for (n, (i, j)), r in [(p, self.patch) for p in reversed(placed)] + [(p, 0) for p in placed]:
                area = (slice(max(i - r, 0), i + r + 1), slice(max(j - r, 0), j + r + 1))
                offset = _offset_code(centres[n] - torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64))
                cell_box = [*offset.tolist(), *sizes[n]]
                values[(slice(1, BOX_CHANNELS), *area)] = np.array(cell_box)[:, None, None]
                values[(slice(BOX_CHANNELS, None), *area)] = comps[n].numpy()[:, None, None]
                known[area] = True
            if self.skirt is not None:
                values[0][known] = self.skirt
            for n, cell in placed:
                values[(0, *cell)] = 2 * float(rows[n, 4]) - 1
        values[1:] = harmonic_fill(values[1:], known)
        values[0][~(taken | known if self.skirt is not None else taken)] = -1.0
        return torch.from_numpy(np.clip(values, *CODE_RANGE)).float()

    @staticmethod
    def _cells(centres: torch.Tensor, taken: np.ndarray) -> list[tuple[int, int] | None]:
        """The cell of each proposal, in order: the one its centre is in, else the nearest free
        neighbour (None: all nine taken, the proposal is not coded). Marks them in ``taken``."""
        height, width = taken.shape
        out: list[tuple[int, int] | None] = []
        for cx, cy in centres.tolist():
            ci = min(max(int(math.floor(cy)), 0), height - 1)
            cj = min(max(int(math.floor(cx)), 0), width - 1)
            cell = None
            for di, dj in NEIGHBOURS:
                i, j = ci + di, cj + dj
                if 0 <= i < height and 0 <= j < width and not taken[i, j]:
                    cell = (i, j)
                    taken[i, j] = True
                    break
            out.append(cell)
        return out


class DetectionPlacement(_EmbeddingBasis):
    """MSFR of the detection code: code (zero-filled beyond the kept channels) -> head inputs."""

    def __init__(self, arch):
        super().__init__(arch)
        self.channels = tuple(arch.in_channels)
        self.strides = tuple(arch.strides)
        self.anchor = tuple(a / arch.strides[0] for a in arch.anchors[0][0])  # anchor 0 of the finest layer, in cells

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = code.shape
        out = [self._background(b, c, h * self.strides[0] // s, w * self.strides[0] // s, code)
               for c, s in zip(self.channels, self.strides)]
        x8 = out[0]
        aw, ah = self.anchor
        p = ((code[:, 0] + 1) / 2).clamp(MIN_PROBABILITY, 1 - MIN_PROBABILITY)
        x8[:, 0] = (_offset_value(code[:, 1]) + 0.5) / aw
        x8[:, 1] = (_offset_value(code[:, 2]) + 0.5) / ah
        x8[:, 2] = _size_value(code[:, 3]) - math.log(aw)
        x8[:, 3] = _size_value(code[:, 4]) - math.log(ah)
        x8[:, 4] = 0.0
        x8[:, 5] = torch.log(p / (1 - p))
        comps = code[:, BOX_CHANNELS:] * self.embedding_scale[None, :, None, None]
        x8[:, NUM_DET_CHANNELS:] = (self.embedding_mean[None, :, None, None]
                                    + torch.einsum("ek,bkhw->behw", self.embedding_basis, comps))
        return out[0], out[1], out[2]

    @staticmethod
    def _background(b: int, c: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        x = like.new_zeros(b, c, h, w)
        x[:, [a * 6 + 5 for a in range(NUM_DET_CHANNELS // 6)]] = BACKGROUND_LOGIT
        return x


def fit_embedding_code(raster: DetectionRaster, placement: DetectionPlacement, embeddings: torch.Tensor) -> torch.Tensor:
    """Set both ends' embedding basis to the principal components of ``embeddings`` (N, E), the
    normalised embeddings of kept proposals; returns the share of the variance each count of
    components explains (cumulative)."""
    components = raster.embedding_scale.numel()
    x = embeddings.double()
    mean = x.mean(0)
    _, sing, vt = torch.linalg.svd(x - mean, full_matrices=False)
    if vt.shape[0] < components:
        raise ValueError(f"{len(x)} embeddings cannot give {components} principal components")
    # one scale for every component (the first one's spread): the code's error is then the same in every
    # direction of the embedding, as the tracker's cosine distance weighs it, and the weak components,
    # small in the code, cost little rate (a scale per component clipped the weak ones on unseen footage)
    first = float(sing[0]) / math.sqrt(max(len(x) - 1, 1))
    spread = torch.full((components,), max(first, 1e-6) * EMBEDDING_SPREAD, dtype=torch.float64)
    with torch.no_grad():
        for end in (raster, placement):
            end.embedding_mean.copy_(mean.float())
            end.embedding_basis.copy_(vt[:components].T.float())
            end.embedding_scale.copy_(spread.float())
    var = sing**2
    return (var.cumsum(0) / var.sum()).float()


def prediction_anchors(layers: Sequence[YOLODecode]) -> tuple[tuple, tuple]:
    """(anchors in pixels, strides) of JDE's prediction layers, finest first, as the arch records them."""
    by_stride = sorted(layers, key=lambda layer: layer.stride)
    anchors = tuple(tuple(tuple(round(float(v), 6) for v in a) for a in (layer.anchor_grid * layer.stride).tolist())
                    for layer in by_stride)
    return anchors, tuple(int(layer.stride) for layer in by_stride)


@torch.no_grad()
def kept_embeddings(model, batches, num_batches: int) -> torch.Tensor:
    """Normalised embeddings (N, E) of the proposals JDE keeps in ``num_batches`` batches of split
    tensors (``model``: an advMSFC model whose MSFF is a :class:`DetectionRaster`)."""
    found = []
    for _ in range(num_batches):
        x8, x16, x32 = model.by_scale(next(batches))
        found += [F.normalize(rows[:, 6:].float(), dim=1) for rows in model.msff.proposals(x8, x16, x32)]
    return torch.cat(found) if found else torch.zeros(0, model.msff.embedding_mean.numel())


def embedding_error_by_channels(raster: DetectionRaster, embeddings: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Mean 1 - cosine between kept proposals' embeddings and what a code of k channels rebuilds
    (the box channels are always kept; k - 5 components)."""
    if len(embeddings) == 0:
        return {}
    comps = (embeddings - raster.embedding_mean) @ raster.embedding_basis
    out = {}
    for k in ks:
        n = max(int(k) - BOX_CHANNELS, 0)
        rebuilt = raster.embedding_mean + comps[:, :n] @ raster.embedding_basis[:, :n].T
        out[int(k)] = float((1 - F.cosine_similarity(rebuilt, embeddings, dim=1)).mean())
    return out
