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
    """Index pairs (i, j), i < j, over a labelled set, sampled without building all n^2/2 of them.

    With ``max_pairs`` None, or at least the number of pairs, every pair. Otherwise genuine pairs
    (same label) are kept up to half the budget (sampled down beyond that) and impostor pairs fill
    the rest, drawn at random (reproducibly, without repeats). Memory stays O(genuine + max_pairs).
    """
    labels = np.asarray(labels)
    n = len(labels)
    total = n * (n - 1) // 2
    if max_pairs is None or total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i, j
    rng = np.random.default_rng(seed)
    gi, gj = _genuine_pairs(labels)
    if len(gi) > max_pairs // 2:
        keep = np.sort(rng.choice(len(gi), size=max_pairs // 2, replace=False))
        gi, gj = gi[keep], gj[keep]
    ii, ij = _impostor_sample(labels, max_pairs - len(gi), rng)
    i, j = np.r_[gi, ii], np.r_[gj, ij]
    order = np.lexsort((j, i))
    return i[order], j[order]


def _genuine_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j), i < j, with labels[i] == labels[j], group by group."""
    out_i, out_j = [], []
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    for s, k in zip(starts, counts, strict=True):
        if k >= 2:
            a, b = np.triu_indices(int(k), k=1)
            members = np.sort(order[s:s + k])
            out_i.append(members[a])
            out_j.append(members[b])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)


def _impostor_sample(labels: np.ndarray, want: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``want`` distinct impostor pairs (i < j, labels differ), or all there are when fewer."""
    n = len(labels)
    _, counts = np.unique(labels, return_counts=True)
    available = n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum())
    want = min(max(want, 0), available)
    if want == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if available <= 4 * want:  # few impostor pairs in all: enumerate them (bounded by 4x the budget)
        i, j = np.triu_indices(n, k=1)
        diff = labels[i] != labels[j]
        i, j = i[diff], j[diff]
        keep = np.sort(rng.choice(len(i), size=want, replace=False))
        return i[keep].astype(np.int64), j[keep].astype(np.int64)
    keys = np.zeros(0, np.int64)
    while len(keys) < want:  # rejection sampling: most random pairs are impostors here
        draw = int((want - len(keys)) * 1.3) + 16
        a, b = rng.integers(0, n, draw), rng.integers(0, n, draw)
        ok = labels[a] != labels[b]
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        keys = np.unique(np.r_[keys, lo.astype(np.int64) * n + hi])
    keys = rng.permutation(keys)[:want]
    return keys // n, keys % n


MIN_EVENTS = 10  # impostor pairs a FAR needs: 10 / FAR, so that about 10 false accepts are expected at it
FARS = (1e-1, 1e-2, 1e-3)


def far_key(far: float) -> str:
    return f"tar_far{far:.0e}".replace("e-0", "e-")


def enough_impostors(n_impostor: int, far: float) -> bool:
    """Whether a FAR can be measured: at least ``10 / far`` impostor pairs (10 false accepts expected at it).

    With fewer, "TAR at FAR 1e-3" is really TAR at zero false accepts: a number that no threshold
    on new faces would reproduce.
    """
    return n_impostor >= MIN_EVENTS / far


def threshold_for(scores: np.ndarray, labels: np.ndarray, far: float = 1e-3) -> tuple[float, str]:
    """A decision threshold chosen for a stated target, independent of the genuine/impostor mix.

    The rule: the threshold whose false accept rate on these impostor pairs is ``far`` when
    there are enough of them (:func:`enough_impostors`), else the equal error rate's. Both depend
    only on the score distributions, not on how many pairs of each kind were drawn (best accuracy
    does: with impostors dominating, it drifts up as pairs are added).

    Returns:
        (threshold, rule) with rule ``"far=1e-03"`` or ``"eer"``.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    impostors = np.sort(scores[~labels])
    if enough_impostors(len(impostors), far):
        # the smallest threshold accepting at most far * n impostors (accept if score >= t)
        k = int(np.floor(far * len(impostors)))  # impostors allowed above the threshold
        top = impostors[::-1]
        thr = float(np.nextafter(top[k], np.inf)) if k < len(top) else float(top[-1])
        return thr, f"far={far:.0e}"
    roc = roc_curve(scores, labels)
    fnr = 1.0 - roc.tpr
    i = int(np.argmax(roc.fpr >= fnr))
    return float(roc.thresholds[i]) if np.isfinite(roc.thresholds[i]) else float(scores.max()), "eer"


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """FAR, FRR and accuracy of a fixed threshold (accept if score >= threshold) on these pairs."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    accept = scores >= threshold
    far = float(accept[~labels].mean()) if (~labels).any() else float("nan")
    frr = float((~accept[labels]).mean()) if labels.any() else float("nan")
    return {"far": far, "frr": frr, "accuracy": float((accept == labels).mean())}


def verification_metrics(embeddings: np.ndarray, labels: np.ndarray, max_pairs: int | None = 200_000,
                         seed: int = 0) -> tuple[dict[str, float], Roc]:
    """Pairwise verification on L2-normalised embeddings: AUC, EER and TAR at the FARs the pairs support.

    ``tar_far1e-1``/``1e-2``/``1e-3`` appear only where there are at least ``10 / FAR`` impostor
    pairs (:func:`enough_impostors`); a missing key means "not enough pairs to say". No threshold
    or accuracy is fitted here: a threshold is chosen on validation people and judged on test
    people with :func:`rates_at`.

    Returns:
        (metrics, roc): ``auc``, ``eer``, the supported ``tar_far*``, ``pairs_genuine``, ``pairs_impostor``.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    i, j = all_pairs(labels, max_pairs=max_pairs, seed=seed)
    scores = np.einsum("nd,nd->n", emb[i], emb[j])
    same = np.asarray(labels)[i] == np.asarray(labels)[j]
    roc = roc_curve(scores, same)
    n_imp = int((~same).sum())
    metrics = {"auc": roc_auc(roc), "eer": equal_error_rate(roc)}
    for far in FARS:
        if enough_impostors(n_imp, far):
            metrics[far_key(far)] = tar_at_far(roc, far)
    metrics["pairs_genuine"] = float(same.sum())
    metrics["pairs_impostor"] = float(n_imp)
    return metrics, roc


def pair_scores(embeddings: np.ndarray, labels: np.ndarray, max_pairs: int | None = 200_000,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(scores, same) of the seeded pairs :func:`verification_metrics` uses."""
    emb = np.asarray(embeddings, dtype=np.float32)
    i, j = all_pairs(labels, max_pairs=max_pairs, seed=seed)
    return np.einsum("nd,nd->n", emb[i], emb[j]), np.asarray(labels)[i] == np.asarray(labels)[j]


def selection_key(metrics: dict[str, float], other: dict[str, float] | None = None) -> tuple[str, tuple[float, float]]:
    """What to rank models (or epochs) by: TAR at the smallest FAR both sets of metrics support, then AUC;
    AUC alone when neither supports any FAR. Returns (the metric's name, the key of ``metrics``)."""
    for far in sorted(FARS):
        k = far_key(far)
        if k in metrics and (other is None or k in other):
            return k, (round(metrics[k], 9), round(metrics["auc"], 9))
    return "auc", (round(metrics["auc"], 9), round(metrics["auc"], 9))


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
