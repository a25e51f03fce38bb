"""JDE's training loss, head by head, with learned uncertainty weights.

Per head (facts from the public JDE code, ``YOLOLayer.forward`` in training mode): the 24 detection
channels are 4 anchors x ``(dx, dy, dw, dh, background, foreground)``; the remaining E channels are
the embedding of the cell, shared by its anchors.

- ``L_box``: smooth-L1 (mean) of the predicted deltas against the target deltas of foreground anchors;
- ``L_conf``: cross-entropy of the two confidence logits against {0, 1}, ignored anchors left out;
- ``L_id``: a cell is used when any of its anchors is foreground, with the largest identity label
  of its anchors; its embedding is L2-normalised, scaled by ``emb_scale = sqrt(2) * ln(nID - 1)``
  and classified by one linear layer shared by all heads; cross-entropy, label -1 ignored;
- total ``0.5 * (exp(-s_r) L_box + exp(-s_c) L_conf + exp(-s_id) L_id + s_r + s_c + s_id)`` with
  ``s_c, s_r, s_id`` learned per head (initialised to -4.15, -4.85, -2.3).

An optional appearance-distillation term (not in JDE) pulls the embedding of cells matched to
teacher-labelled boxes towards the teacher's (OSNet) embedding through a linear projection:
``1 - cos`` averaged, weighted by ``distill_weight``, outside the uncertainty weighting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fcm_common.jde_training.targets import HeadTargets

NUM_DET_CHANNELS = 24
S_C_INIT, S_R_INIT, S_ID_INIT = -4.15, -4.85, -2.3


def embedding_scale(num_ids: int) -> float:
    return math.sqrt(2) * math.log(num_ids - 1) if num_ids > 1 else 1.0


@dataclass
class HeadLossTerms:
    total: torch.Tensor
    box: float
    conf: float
    ident: float
    distill: float


class UncertaintyWeights(nn.Module):
    """``s_c, s_r, s_id`` of one head (the official checkpoint's ``yolo_<i>.{s_c,s_r,s_id}``)."""

    def __init__(self):
        super().__init__()
        self.s_c = nn.Parameter(torch.full((1,), S_C_INIT))
        self.s_r = nn.Parameter(torch.full((1,), S_R_INIT))
        self.s_id = nn.Parameter(torch.full((1,), S_ID_INIT))


def split_head(head: torch.Tensor, num_anchors: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head input (B, 24+E, H, W) -> deltas (B, A, H, W, 4), conf logits (B, 2, A, H, W), emb (B, H, W, E)."""
    b, _, h, w = head.shape
    det = head[:, :NUM_DET_CHANNELS].reshape(b, num_anchors, 6, h, w).permute(0, 1, 3, 4, 2)
    emb = head[:, NUM_DET_CHANNELS:].permute(0, 2, 3, 1)
    return det[..., :4], det[..., 4:6].permute(0, 4, 1, 2, 3), emb


def head_loss(
    head: torch.Tensor,
    targets: HeadTargets,
    weights: UncertaintyWeights,
    classifier: nn.Linear | None,
    emb_scale: float,
    teacher: tuple[torch.Tensor, torch.Tensor, nn.Module] | None = None,
    distill_weight: float = 0.0,
) -> HeadLossTerms:
    """Loss of one head. ``teacher`` = (cells with a teacher embedding (B, H, W) bool, their
    embeddings (M, D) in the mask's order, projection)."""
    deltas, conf, emb = split_head(head)
    fg = targets.conf > 0
    zero = head.new_zeros(())
    l_box = F.smooth_l1_loss(deltas[fg], targets.deltas[fg]) if fg.any() else zero
    l_conf = F.cross_entropy(conf, targets.conf, ignore_index=-1)
    cells = fg.any(1)  # (B, H, W)
    l_id = zero
    if classifier is not None and cells.sum() > 1:
        ids = targets.ids.max(1).values[cells]
        if (ids >= 0).any():
            vectors = emb_scale * F.normalize(emb[cells], dim=-1)
            l_id = F.cross_entropy(classifier(vectors), ids, ignore_index=-1)
    total = 0.5 * (
        torch.exp(-weights.s_r) * l_box
        + torch.exp(-weights.s_c) * l_conf
        + torch.exp(-weights.s_id) * l_id
        + weights.s_r + weights.s_c + weights.s_id
    ).squeeze()
    l_distill = zero
    if teacher is not None and distill_weight > 0:
        have, wanted, projection = teacher
        if have.any():
            student = F.normalize(projection(emb[have]), dim=-1)
            l_distill = (1 - (student * F.normalize(wanted, dim=-1)).sum(-1)).mean()
            total = total + distill_weight * l_distill
    return HeadLossTerms(total, l_box.item(), l_conf.item(), l_id.item(), l_distill.item())
