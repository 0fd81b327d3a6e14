"""Losses for training face embeddings: margin heads (ArcFace, CosFace) and a metric loss (triplet).

Margin heads keep one learnable centre per training identity and ask each
embedding to be closer (by an angular or cosine margin) to its own centre than
to any other; the centres are thrown away after training. When fine-tuning a
pretrained embedder, the centres start at each identity's mean pretrained
embedding (:meth:`MarginHead.init_centres`), so the first steps refine the
model rather than chase random centres and wreck it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("arcface", "cosface", "triplet")


class MarginHead(nn.Module):
    """Normalised-softmax head with an additive angular (ArcFace) or cosine (CosFace) margin.

    Args:
        dim: embedding length.
        n_classes: training identities.
        kind: ``"arcface"`` (cos(theta + m)) or ``"cosface"`` (cos(theta) - m).
        scale: logit scale s.
        margin: m (radians for ArcFace).
    """

    def __init__(self, dim: int, n_classes: int, kind: str = "arcface", scale: float = 30.0,
                 margin: float | None = None):
        super().__init__()
        if kind not in ("arcface", "cosface"):
            raise ValueError(f"unknown margin head {kind!r}")
        self.kind = kind
        self.scale = scale
        self.margin = margin if margin is not None else (0.5 if kind == "arcface" else 0.35)
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)

    @torch.no_grad()
    def init_centres(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Start each class centre at the mean of its (pretrained) embeddings."""
        emb = F.normalize(embeddings.float(), dim=1)
        for c in range(self.weight.shape[0]):
            sel = labels == c
            if sel.any():
                self.weight[c] = F.normalize(emb[sel].mean(0), dim=0)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled cosine logits; with ``labels``, the target logit carries the margin."""
        cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1)).clamp(-1 + 1e-7, 1 - 1e-7)
        if labels is None:
            return self.scale * cos
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        if self.kind == "cosface":
            target = cos - self.margin
        else:
            theta = torch.acos(cos)
            # past pi - m, cos(theta + m) would rise again; use CosFace's penalty there (as insightface does)
            target = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin),
                                 cos - self.margin * math.sin(self.margin))
        return self.scale * (onehot * target + (1 - onehot) * cos)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


def batch_hard_triplet(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Batch-hard triplet loss on cosine distance: hardest positive vs hardest negative per anchor.

    Anchors without a positive or a negative in the batch are left out; a batch
    with none gives a zero loss that still has a graph (so ``backward`` works).
    """
    emb = F.normalize(embeddings, dim=1)
    dist = 1.0 - emb @ emb.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not valid.any():
        return emb.sum() * 0.0
    hardest_pos = (dist * pos_mask).max(1).values
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def make_loss(kind: str, dim: int, n_classes: int) -> nn.Module:
    """A loss module ``loss(embeddings, labels)``; margin heads carry learnable centres."""
    if kind in ("arcface", "cosface"):
        return MarginHead(dim, n_classes, kind=kind)
    if kind == "triplet":
        return TripletLoss()
    raise ValueError(f"unknown loss {kind!r}; choose from {', '.join(LOSSES)}")


class TripletLoss(nn.Module):
    """Module wrapper for :func:`batch_hard_triplet` (no parameters)."""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return batch_hard_triplet(embeddings, labels, self.margin)
