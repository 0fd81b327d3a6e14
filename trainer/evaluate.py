"""Evaluation of an embedder on held-out identities, and the plots that go with it.

Any embedding source works: a torch model in training (:func:`embed_torch`) or
the model directory the runtime uses, run by the runtime's own engine
(:func:`embed_spec`), so a registered model is judged by what the live system
will actually compute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facestream.stream.config import EmbedderConfig
from facestream.stream.engine.analyzer import l2_normalize
from facestream.stream.engine.runtimes import create_runtime
from facestream.trainer.metrics import Roc, identification_metrics, verification_metrics

log = logging.getLogger(__name__)

MEAN_RGB = (122.782, 117.001, 104.298)
STD = 256.0
REPORTED = ("auc", "eer", "tar_far1e-1", "tar_far1e-2", "tar_far1e-3", "threshold", "far_at_threshold",
            "frr_at_threshold", "accuracy_at_threshold", "top1", "top5")


def to_tensor(chips: np.ndarray, mean=MEAN_RGB, std: float = STD, device=None):
    """uint8 NHWC chips -> float32 NCHW tensor ``(pixel - mean) / std`` (what the models take)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(chips)).to(device=device).permute(0, 3, 1, 2).float()
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - m) / std


def embed_torch(model, chips: np.ndarray, device=None, batch_size: int = 64, mean=MEAN_RGB,
                std: float = STD) -> np.ndarray:
    """L2-normalised embeddings of chips by a torch model (eval mode, no gradients)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(chips), batch_size):
            x = to_tensor(chips[start:start + batch_size], mean, std, device)
            out.append(torch.nn.functional.normalize(model(x).float(), dim=1).cpu().numpy())
    model.train(was_training)
    dim = out[0].shape[1] if out else 128
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def embed_spec(spec, chips: np.ndarray) -> np.ndarray:
    """L2-normalised embeddings by a model directory, run on the runtime's ONNX Runtime CPU engine."""

    engine = create_runtime(spec, EmbedderConfig(engine="onnxruntime", device="cpu", fp16=False))
    return l2_normalize(engine.run(chips))


def evaluate(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0,
             max_pairs: int | None = 200_000) -> tuple[dict[str, float], Roc]:
    """Verification (AUC, EER, TAR@FAR, best accuracy) and identification (top-1/top-5) in one dict."""
    metrics, roc = verification_metrics(embeddings, labels, max_pairs=max_pairs, seed=seed)
    metrics.update(identification_metrics(embeddings, labels, seed=seed))
    return metrics, roc


def timed_evaluate(embed: Callable[[np.ndarray], np.ndarray], chips: np.ndarray, labels: np.ndarray,
                   seed: int = 0, max_pairs: int | None = 200_000) -> tuple[dict[str, float], Roc]:
    """:func:`evaluate` on ``embed(chips)``, adding ``embed_seconds`` and ``pairs_seconds``."""
    t0 = time.perf_counter()
    emb = embed(chips)
    t1 = time.perf_counter()
    metrics, roc = evaluate(emb, labels, seed=seed, max_pairs=max_pairs)
    metrics["embed_seconds"] = t1 - t0
    metrics["pairs_seconds"] = time.perf_counter() - t1
    return metrics, roc


def comparison_table(rows: dict[str, dict[str, float]], keys: tuple[str, ...] = REPORTED) -> str:
    """A fixed-width text table, one column per model (e.g. fine-tuned vs pretrained)."""
    names = list(rows)
    lines = [f"{'metric':<22}" + "".join(f"{n:>16}" for n in names)]
    for k in keys:
        if any(k in rows[n] for n in names):  # a TAR@FAR the pairs do not support: said, not made up
            cells = [f"{rows[n][k]:>16.4f}" if k in rows[n] else f"{'not enough pairs':>16}" for n in names]
            lines.append(f"{k:<22}" + "".join(cells))
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(rocs: dict[str, Roc], path: str | Path, title: str = "ROC on held-out identities") -> Path:
    """ROC curves (log-scaled FAR) of several models on one figure, saved as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    for name, roc in rocs.items():
        far = np.clip(roc.fpr, 1e-4, 1.0)
        ax.step(far, roc.tpr, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path) -> Path:
    """Lay out, write as PNG and release a figure (figures left open leak memory over many runs)."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_history(history: list[dict[str, float]], path: str | Path) -> Path:
    """Training curves: loss per epoch and the validation metrics, saved as PNG."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    epochs = [h["epoch"] for h in history]
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    a.grid(True, alpha=0.3)
    for key in ("val_auc", "val_tar_far1e-2", "val_top1"):
        if all(key in h for h in history):
            b.plot(epochs, [h[key] for h in history], marker="o", label=key)
    b.set_xlabel("epoch")
    b.set_ylim(0.0, 1.01)
    b.grid(True, alpha=0.3)
    if b.lines:
        b.legend(loc="lower right")
    return _save(plt, fig, path)


def plot_confusions(matrices: dict[str, np.ndarray], path: str | Path) -> Path:
    """One 2x2 confusion matrix per label in a grid, saved as PNG."""
    plt = _pyplot()
    n = len(matrices)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, m) in zip(axes.ravel(), matrices.items(), strict=False):
        ax.axis("on")
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(int(v)), ha="center", va="center", color="black")
        ax.set_xticks([0, 1], ["pred 0", "pred 1"])
        ax.set_yticks([0, 1], ["true 0", "true 1"])
        ax.set_title(name, fontsize=9)
    return _save(plt, fig, path)


def plot_calibration(genuine: np.ndarray, impostor: np.ndarray, impostor_total: int, open_set: np.ndarray,
                     thresholds: dict[str, float], path: str | Path, title: str = "Your gallery") -> Path:
    """``facestream calibrate``'s picture: genuine and impostor score histograms (log counts) with the
    candidate thresholds, and the measured false-reject / open-set false-accept rates by threshold."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    lo = float(min(np.min(genuine, initial=1.0), np.min(impostor, initial=1.0), min(thresholds.values(), default=1)))
    bins = np.linspace(max(-1.0, lo - 0.02), 1.0, 80)
    if len(impostor):
        a.hist(impostor, bins=bins, alpha=0.6, label=f"impostor ({impostor_total} comparisons)", color="tab:red")
    if len(genuine):
        a.hist(genuine, bins=bins, alpha=0.6, label=f"genuine ({len(genuine)} leave-one-out)", color="tab:green")
    a.set_yscale("log")
    a.set_xlabel("similarity (photo-count shift applied)")
    a.set_ylabel("count")
    grid = np.linspace(bins[0], 1.0, 200)
    if len(genuine):
        b.plot(grid, [(genuine < t).mean() for t in grid], label="false rejects", color="tab:green")
    if len(open_set):
        b.plot(grid, [max((open_set >= t).mean(), 1e-6) for t in grid], label="strangers named (open set)",
               color="tab:red")
    b.set_yscale("log")
    b.set_ylim(1e-4, 1.05)
    b.set_xlabel("threshold")
    for ax in (a, b):
        for name, t in thresholds.items():
            ax.axvline(t, ls="--", lw=0.8, color="grey")
            ax.text(t, ax.get_ylim()[1], name, rotation=90, va="top", ha="right", fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)
