"""Face augmentation on aligned chips, batched in torch.

Chips are already aligned, so only mild changes make sense: a mirror image, a
few degrees of rotation, a few per cent of scale and shift (alignment noise),
colour and brightness (lighting and cameras), and blur (focus, motion, low
resolution). Anything stronger teaches the model to ignore the geometry the
aligner worked to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; ``p_*`` are probabilities per chip."""

    p_flip: float = 0.5
    max_rotate_deg: float = 8.0
    max_scale: float = 0.06
    max_shift: float = 0.04  # fraction of the chip side
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    p_blur: float = 0.2
    max_blur_sigma: float = 1.5


def augment(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(),
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch of chips ``(n, 3, S, S)`` float in [0, 255]; returns the same shape and range."""
    n = x.shape[0]
    dev, dt = x.device, x.dtype

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device="cpu").to(dev, dt) * (hi - lo) + lo

    # geometry: one affine warp per chip (flip folded into the x scale)
    flip = torch.where(u(0, 1) < cfg.p_flip, -1.0, 1.0).to(dev, dt)
    angle = u(-cfg.max_rotate_deg, cfg.max_rotate_deg) * (math.pi / 180.0)
    scale = 1.0 + u(-cfg.max_scale, cfg.max_scale)
    tx, ty = u(-cfg.max_shift, cfg.max_shift) * 2, u(-cfg.max_shift, cfg.max_shift) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], dim=1),
        torch.stack([sin * flip, cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # colour: brightness, contrast, saturation
    x = x * (1.0 + u(-cfg.brightness, cfg.brightness)).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1.0 + u(-cfg.contrast, cfg.contrast)).view(n, 1, 1, 1) + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * (1.0 + u(-cfg.saturation, cfg.saturation)).view(n, 1, 1, 1) + grey

    # blur: a Gaussian per chip that draws one
    if cfg.p_blur > 0:
        pick = torch.nonzero(u(0, 1) < cfg.p_blur).flatten()
        for i in pick.tolist():
            sigma = float(torch.rand(1, generator=generator)) * (cfg.max_blur_sigma - 0.5) + 0.5
            x[i:i + 1] = gaussian_blur(x[i:i + 1], sigma)
    return x.clamp(0.0, 255.0)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(n, C, H, W)`` with reflect padding."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
