"""Verification and identification metrics in plain numpy.

Kept free of torch and sklearn so that the numbers a run reports can be checked
by hand on synthetic data with known answers (see tests/trainer/test_metrics.py),
and so that evaluation runs the same way for any embedding source: the torch
model in training, or the ONNX model the live runtime uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Roc:
    """A ROC curve: false accept rate, true accept rate and the score thresholds that give them.

    Points are ordered by decreasing threshold, starting at (0, 0) with an infinite threshold.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> Roc:
    """ROC of similarity ``scores`` (higher = more alike) for binary ``labels`` (1 = same person).

    Ties share one point, so the curve does not depend on the order of tied pairs.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores but {labels.shape[0]} labels")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs both genuine and impostor pairs")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    return Roc(
        fpr=np.r_[0.0, fp / n_neg],
        tpr=np.r_[0.0, tp / n_pos],
        thresholds=np.r_[np.inf, s[last_of_tie]],
    )


def roc_auc(roc: Roc) -> float:
    """Area under the ROC curve (trapezoids; ties count half, as the Mann-Whitney statistic does)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


def equal_error_rate(roc: Roc) -> float:
    """The rate where false accepts equal false rejects, interpolated between ROC points."""
    fnr = 1.0 - roc.tpr
    diff = roc.fpr - fnr  # rises from -1 to +1 along the curve
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(roc.fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(roc.fpr[i - 1] + t * (roc.fpr[i] - roc.fpr[i - 1]))


def tar_at_far(roc: Roc, far: float) -> float:
    """True accept rate at the strictest threshold whose false accept rate is at most ``far``.

    No interpolation: a reported TAR is one a real threshold achieves.
    """
    ok = roc.fpr <= far + 1e-12
    return float(roc.tpr[ok].max())


def threshold_at_far(roc: Roc, far: float) -> float:
    """The lowest similarity threshold whose false accept rate is at most ``far``."""
    ok = np.nonzero(roc.fpr <= far + 1e-12)[0]
    return float(roc.thresholds[ok[-1]])


def best_accuracy(scores: np.ndarray, labels: np.ndarray, roc: Roc | None = None) -> tuple[float, float]:
    """(accuracy, threshold) of the threshold that classifies the pairs best (accept if score >= t).

    The threshold returned lies halfway between the two neighbouring scores, so it
    transfers to new pairs better than a threshold sitting exactly on one pair's score.
    ``roc`` is ``roc_curve(scores, labels)`` when the caller has it already (saves a sort).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if roc is None:
        roc = roc_curve(scores, labels)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    correct = roc.tpr * n_pos + (1.0 - roc.fpr) * n_neg
    i = int(np.argmax(correct))
    acc = float(correct[i] / len(scores))
    t = roc.thresholds[i]
    if np.isinf(t):
        return acc, float(scores.max() + 1e-6)
    below = scores[scores < t]
    thr = float((t + below.max()) / 2.0) if len(below) else float(t)
    return acc, thr


def all_pairs(labels: np.ndarray, max_pairs: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, over a labelled set; every genuine pair, impostors sampled down.

    Genuine pairs are rare and all of them are kept; impostor pairs are sampled to
    ``max_pairs`` total (reproducibly) so that a large test set stays cheap.
    """
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    if max_pairs is not None and len(i) > max_pairs:
        rng = np.random.default_rng(seed)
        neg = np.nonzero(~same)[0]
        keep_neg = rng.choice(neg, size=max(max_pairs - int(same.sum()), 0), replace=False)
        keep = np.sort(np.r_[np.nonzero(same)[0], keep_neg])
        i, j = i[keep], j[keep]
    return i, j


def verification_metrics(embeddings: np.ndarray, labels: np.ndarray, max_pairs: int | None = 200_000,
                         seed: int = 0) -> tuple[dict[str, float], Roc]:
    """Pairwise verification on L2-normalised embeddings: AUC, EER, TAR@FAR, best accuracy.

    Returns:
        (metrics, roc) where metrics has ``auc``, ``eer``, ``tar_far1e-2``, ``tar_far1e-3``,
        ``accuracy``, ``threshold`` (the best-accuracy threshold), ``pairs_genuine``, ``pairs_impostor``.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    i, j = all_pairs(labels, max_pairs=max_pairs, seed=seed)
    scores = np.einsum("nd,nd->n", emb[i], emb[j])
    same = np.asarray(labels)[i] == np.asarray(labels)[j]
    roc = roc_curve(scores, same)
    acc, thr = best_accuracy(scores, same, roc)
    metrics = {
        "auc": roc_auc(roc),
        "eer": equal_error_rate(roc),
        "tar_far1e-2": tar_at_far(roc, 1e-2),
        "tar_far1e-3": tar_at_far(roc, 1e-3),
        "accuracy": acc,
        "threshold": thr,
        "pairs_genuine": float(same.sum()),
        "pairs_impostor": float((~same).sum()),
    }
    return metrics, roc


def gallery_probe_split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a gallery (one random image per identity) and probes (the rest of identities seen twice+)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    gallery: list[int] = []
    probes: list[int] = []
    for ident in sorted(set(labels.tolist())):
        idx = np.nonzero(labels == ident)[0]
        g = int(rng.choice(idx))
        gallery.append(g)
        probes.extend(int(k) for k in idx if k != g)
    return np.array(gallery, dtype=np.int64), np.array(sorted(probes), dtype=np.int64)


def identification_metrics(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0,
                           ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Closed-set identification: top-k accuracy of probes against a one-image-per-identity gallery."""
    emb = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    g, p = gallery_probe_split(labels, seed=seed)
    if len(p) == 0:
        raise ValueError("identification needs at least one identity with two images")
    sims = emb[p] @ emb[g].T
    order = np.argsort(-sims, axis=1, kind="mergesort")
    hit = labels[g][order] == labels[p][:, None]
    out = {}
    for k in ks:
        out[f"top{k}"] = float(hit[:, :k].any(axis=1).mean())
    out["probes"] = float(len(p))
    out["gallery"] = float(len(g))
    return out


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, float]:
    """Accuracy and F1 per label for multi-label 0/1 arrays (n, L); a single-column array is a binary task."""
    y_true = np.asarray(y_true).astype(bool).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred).astype(bool).reshape(len(y_pred), -1)
    out: dict[str, float] = {"accuracy": float((y_true == y_pred).mean())}
    f1s = []
    for k, name in enumerate(names):
        t, p = y_true[:, k], y_pred[:, k]
        tp, fp, fn = float((t & p).sum()), float((~t & p).sum()), float((t & ~p).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
        out[f"f1_{name}"] = f1
        out[f"accuracy_{name}"] = float((t == p).mean())
        f1s.append(f1)
    out["f1_macro"] = float(np.mean(f1s))
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """2x2 counts [[tn, fp], [fn, tp]] for one binary label."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    return np.array([[(~t & ~p).sum(), (~t & p).sum()], [(t & ~p).sum(), (t & p).sum()]], dtype=np.int64)
