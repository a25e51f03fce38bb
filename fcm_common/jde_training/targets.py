"""Training targets of one JDE prediction head: which anchors are foreground, background or ignored,
their box deltas and identity labels.

Facts from the public JDE code (``build_targets_thres``, ``generate_anchor``, ``encode_delta``):
ground-truth boxes come as ``(cx, cy, w, h)`` normalised to the network input; on a head with an
``nGh x nGw`` grid they are scaled to grid units and their centres clamped to ``[0, nG-1]``. The
anchor of cell ``(row, col)`` is centred on the integer point ``(col, row)`` (no +0.5), with the
head's anchor sizes in grid units; the test-time decode (:class:`fcm_common.model.jde.YOLODecode`)
uses the same convention. Each anchor takes the ground-truth box of highest IoU:

- IoU > 0.5: foreground (target 1), with deltas ``((gx-px)/pw, (gy-py)/ph, log(gw/pw), log(gh/ph))``;
- IoU < 0.4: background (target 0);
- otherwise ignored (target -1, left out of the confidence loss).

The identity of an anchor is that box's identity when IoU > 0.5, else -1.

A box whose shape differs from every anchor's (a seated or half-hidden person is far wider than JDE's
standing-pedestrian anchors, about 1:3) overlaps no anchor by more than 0.5 and would be no anchor's
foreground: it would only be taught as background. With ``force`` (fcm's addition, YOLOv3's rule), such
a box also makes the anchor of the best shape at its centre cell foreground (:func:`best_anchors` picks
it over all heads).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FG_THRESHOLD = 0.5
BG_THRESHOLD = 0.4
ID_THRESHOLD = 0.5


@dataclass
class HeadTargets:
    """Targets of one head for a batch: conf (B, A, H, W) in {1, 0, -1}; deltas (B, A, H, W, 4),
    meaningful where conf == 1; ids (B, A, H, W), -1 where none."""

    conf: torch.Tensor
    deltas: torch.Tensor
    ids: torch.Tensor


def anchor_boxes(grid_h: int, grid_w: int, anchors: torch.Tensor) -> torch.Tensor:
    """(A, H, W, 4) anchor boxes ``(cx, cy, w, h)`` in grid units; ``anchors`` is (A, 2) in grid units."""
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    a = anchors.shape[0]
    centres = torch.stack([xs, ys], -1).to(anchors.dtype).expand(a, grid_h, grid_w, 2)
    sizes = anchors.view(a, 1, 1, 2).expand(a, grid_h, grid_w, 2)
    return torch.cat([centres, sizes], -1)


def box_iou_cxcywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (N, M) of centre-size boxes."""
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    lo = torch.maximum(a1[:, None], b1[None])
    hi = torch.minimum(a2[:, None], b2[None])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area_a = a[:, 2:].prod(-1)[:, None]
    area_b = b[:, 2:].prod(-1)[None]
    return inter / (area_a + area_b - inter + 1e-16)


def encode_deltas(gt: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Box deltas of ``gt`` relative to ``anchors`` (both (N, 4) centre-size, grid units)."""
    return torch.cat(
        [(gt[:, :2] - anchors[:, :2]) / anchors[:, 2:], torch.log(gt[:, 2:] / anchors[:, 2:])], dim=1
    )


def best_anchors(sizes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Index of the anchor of best shape (IoU of the two centred on one point) for each box size;
    ``sizes`` (N, 2) and ``anchors`` (K, 2) are widths and heights in one unit (pixels)."""
    inter = torch.minimum(sizes[:, None], anchors[None]).prod(-1)
    union = sizes.prod(-1)[:, None] + anchors.prod(-1)[None] - inter
    return (inter / union.clamp(min=1e-9)).argmax(1)


def build_head_targets(
    boxes: list[torch.Tensor], ids: list[torch.Tensor], grid_h: int, grid_w: int, anchors: torch.Tensor,
    force: list[torch.Tensor] | None = None,
) -> tuple[HeadTargets, torch.Tensor]:
    """Targets for a batch; ``boxes[b]`` is (N, 4) normalised ``(cx, cy, w, h)``, ``ids[b]`` (N,) long.
    ``force[b]`` (N,) long: per box, an anchor of this head made foreground at the box's centre cell
    when the box is no anchor's foreground by IoU (-1: none).

    Also returns, per anchor, the index of the box it was matched to (-1 where not foreground),
    so that per-box data (teacher embeddings) can follow the assignment.
    """
    a = anchors.shape[0]
    batch = len(boxes)
    conf = torch.zeros(batch, a, grid_h, grid_w, dtype=torch.long)
    deltas = torch.zeros(batch, a, grid_h, grid_w, 4)
    tids = torch.full((batch, a, grid_h, grid_w), -1, dtype=torch.long)
    matched = torch.full((batch, a, grid_h, grid_w), -1, dtype=torch.long)
    mesh = anchor_boxes(grid_h, grid_w, anchors.float())
    flat = mesh.reshape(-1, 4)
    for b, (gt, gid) in enumerate(zip(boxes, ids)):
        if len(gt) == 0:
            continue
        scale = torch.tensor([grid_w, grid_h, grid_w, grid_h], dtype=torch.float32)
        g = gt.float() * scale
        g[:, 0] = g[:, 0].clamp(0, grid_w - 1)
        g[:, 1] = g[:, 1].clamp(0, grid_h - 1)
        iou = box_iou_cxcywh(flat, g)
        best, which = iou.max(1)
        best = best.view(a, grid_h, grid_w)
        which = which.view(a, grid_h, grid_w)
        fg = best > FG_THRESHOLD
        ignore = (best > BG_THRESHOLD) & ~fg  # 0.4 exactly stays background, 0.5 exactly is ignored
        conf[b][fg] = 1
        conf[b][ignore] = -1
        with_id = best > ID_THRESHOLD
        tids[b][with_id] = gid[which[with_id]].long()
        if fg.any():
            deltas[b][fg] = encode_deltas(g[which[fg]], mesh[fg])
            matched[b][fg] = which[fg]
        if force is not None:
            has_anchor = torch.zeros(len(g), dtype=torch.bool)
            has_anchor[which[fg].unique()] = True
            for n in torch.nonzero((force[b] >= 0) & ~has_anchor).flatten().tolist():
                k = int(force[b][n])
                col, row = int(torch.round(g[n, 0])), int(torch.round(g[n, 1]))
                if conf[b, k, row, col] == 1:  # another box's foreground already
                    continue
                conf[b, k, row, col] = 1
                deltas[b, k, row, col] = encode_deltas(g[n:n + 1], mesh[k, row, col][None])[0]
                tids[b, k, row, col] = int(gid[n])
                matched[b, k, row, col] = n
    return HeadTargets(conf, deltas, tids), matched
