"""Margin heads, the triplet loss and augmentation on small tensors with known behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facestream.trainer.augment import AugmentConfig, augment, gaussian_blur
from facestream.trainer.losses import MarginHead, batch_hard_triplet, make_loss


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_margin_lowers_only_the_target_logit(kind):
    torch.manual_seed(0)
    head = MarginHead(8, 4, kind=kind, scale=10.0)
    emb = torch.randn(5, 8)
    labels = torch.tensor([0, 1, 2, 3, 0])
    plain = head.logits(emb)
    margin = head.logits(emb, labels)
    target = torch.zeros_like(plain, dtype=torch.bool)
    target[torch.arange(5), labels] = True
    assert torch.allclose(plain[~target], margin[~target])
    assert torch.all(margin[target] < plain[target])
    if kind == "cosface":
        assert torch.allclose(plain[target] - margin[target], torch.full((5,), 10 * 0.35))


def test_arcface_target_is_cos_theta_plus_m():
    head = MarginHead(2, 2, kind="arcface", scale=1.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[math.cos(0.3), math.sin(0.3)]])
    out = head.logits(emb, torch.tensor([0]))
    assert out[0, 0].item() == pytest.approx(math.cos(0.8), abs=1e-5)
    assert out[0, 1].item() == pytest.approx(math.cos(math.pi / 2 - 0.3), abs=1e-5)


def test_centres_from_means_make_loss_small_on_clean_clusters():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(6, 32), dim=1)
    labels = torch.arange(6).repeat_interleave(5)
    emb = centres[labels] + 0.01 * torch.randn(30, 32)
    head = MarginHead(32, 6, kind="cosface")
    before = head(emb, labels).item()
    head.init_centres(emb, labels)
    after = head(emb, labels).item()
    assert after < 0.05 < before


def test_head_learns_separable_classes():
    torch.manual_seed(0)
    x = torch.randn(60, 16)
    labels = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    net = torch.nn.Linear(16, 8)
    head = make_loss("arcface", 8, 4)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=0.05)
    first = None
    for _ in range(150):
        loss = head(net(x), labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = head.logits(net(x)).argmax(1)
    assert (pred == labels).float().mean() > 0.95 and loss.item() < first


def test_triplet_zero_when_separated_positive_when_mixed():
    emb = torch.tensor([[1.0, 0], [0.99, 0.1], [-1.0, 0], [-0.99, -0.1]])
    labels = torch.tensor([0, 0, 1, 1])
    assert batch_hard_triplet(emb, labels).item() == 0.0
    assert batch_hard_triplet(emb, torch.tensor([0, 1, 0, 1])).item() > 1.0
    lone = batch_hard_triplet(emb.requires_grad_(), torch.tensor([0, 1, 2, 3]))
    lone.backward()  # no valid anchors: zero loss, still differentiable
    assert lone.item() == 0.0


def test_augment_keeps_shape_range_and_changes_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 40, 40, generator=g) * 255
    y = augment(x, AugmentConfig(p_blur=1.0), generator=g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    assert (y - x).abs().mean() > 1.0
    none = AugmentConfig(p_flip=0, max_rotate_deg=0, max_scale=0, max_shift=0, brightness=0, contrast=0,
                         saturation=0, p_blur=0)
    assert torch.allclose(augment(x, none), x, atol=1e-3)


def test_flip_only_mirrors():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    flip = AugmentConfig(p_flip=1.0, max_rotate_deg=0, max_scale=0, max_shift=0, brightness=0, contrast=0,
                         saturation=0, p_blur=0)
    assert torch.allclose(augment(x, flip), x.flip(-1), atol=1e-3)


def test_blur_preserves_constant_and_smooths_noise():
    c = torch.full((1, 3, 16, 16), 100.0)
    assert torch.allclose(gaussian_blur(c, 1.0), c, atol=1e-3)
    n = torch.rand(1, 3, 16, 16) * 255
    assert gaussian_blur(n, 1.0).std() < n.std()
