"""A face embedder made of named stages run in order, which a trainer can freeze up to one of them.

Frozen means frozen: a frozen stage's parameters get no gradient, and its batch
normalisation layers stay in eval mode when the network trains, so their running
statistics do not drift either.
"""

from __future__ import annotations

import torch
from torch import nn


class StagedNet(nn.Module):
    """Stages are attributes named in ``stage_names`` (forward order); ``mean_rgb`` is the input normalisation.

    Input ``(N, 3, S, S)`` float32 RGB normalised as ``(pixel - mean_rgb) / 256``; output the raw descriptor.
    """

    stage_names: tuple[str, ...] = ()
    mean_rgb: tuple[float, float, float] = (122.782, 117.001, 104.298)

    def __init__(self) -> None:
        super().__init__()
        self.frozen_up_to: str | None = None

    def stages(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` in forward order."""
        return [(name, getattr(self, name)) for name in self.stage_names]

    def frozen_stages(self) -> list[nn.Module]:
        if self.frozen_up_to is None:
            return []
        limit = self.stage_names.index(self.frozen_up_to)
        return [module for i, (_, module) in enumerate(self.stages()) if i <= limit]

    def freeze_up_to(self, stage: str) -> None:
        """Stop learning in every stage up to and including ``stage`` (e.g. ``"stage3"``).

        Raises:
            ValueError: unknown stage.
        """
        if stage not in self.stage_names:
            raise ValueError(f"unknown stage {stage!r}; one of {', '.join(self.stage_names)}")
        self.frozen_up_to = stage
        limit = self.stage_names.index(stage)
        for i, (_, module) in enumerate(self.stages()):
            for p in module.parameters():
                p.requires_grad_(i > limit)
        self.train(self.training)

    def train(self, mode: bool = True) -> StagedNet:
        """Training mode for the learning stages; frozen stages stay in eval mode (batch norm statistics kept)."""
        super().train(mode)
        for module in self.frozen_stages():
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, module in self.stages():
            x = module(x)
        return x
