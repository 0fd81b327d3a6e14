"""Metrics on synthetic data whose answers are known by hand or by brute force."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.trainer import metrics as M


def brute_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_perfect_separation():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    roc = M.roc_curve(scores, labels)
    assert M.roc_auc(roc) == 1.0
    assert M.equal_error_rate(roc) == 0.0
    assert M.tar_at_far(roc, 0.0) == 1.0
    acc, thr = M.best_accuracy(scores, labels)
    assert acc == 1.0
    assert 0.3 < thr < 0.7 and thr == pytest.approx(0.5)


def test_inverted_scores_are_worst():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([1, 1, 0, 0])
    roc = M.roc_curve(scores, labels)
    assert M.roc_auc(roc) == 0.0
    assert M.equal_error_rate(roc) == 1.0
    assert M.tar_at_far(roc, 1e-2) == 0.0


def test_hand_computed_small_case():
    # pos: 0.9, 0.6, 0.4 ; neg: 0.7, 0.3, 0.2, 0.1
    scores = np.array([0.9, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 0, 1, 1, 0, 0, 0])
    roc = M.roc_curve(scores, labels)
    # pairs won by positives: 0.9 beats 4, 0.6 beats 3, 0.4 beats 3 -> 10 of 12
    assert M.roc_auc(roc) == pytest.approx(10 / 12)
    # at FAR 0 only 0.9 is accepted: TAR 1/3
    assert M.tar_at_far(roc, 0.0) == pytest.approx(1 / 3)
    assert M.tar_at_far(roc, 0.25) == pytest.approx(1.0)
    assert M.threshold_at_far(roc, 0.25) == pytest.approx(0.4)
    # best accuracy: threshold between 0.4 and 0.3 -> 3 TP + 3 TN of 7
    acc, thr = M.best_accuracy(scores, labels)
    assert acc == pytest.approx(6 / 7)
    assert thr == pytest.approx(0.35)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_mann_whitney_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes many ties
    roc = M.roc_curve(scores, labels)
    assert M.roc_auc(roc) == pytest.approx(brute_auc(scores, labels), abs=1e-12)


def test_eer_of_gaussians_matches_theory():
    # genuine ~ N(1, 1), impostor ~ N(-1, 1): the EER threshold is 0, EER = Phi(-1) = 0.1587
    rng = np.random.default_rng(0)
    n = 200_000
    scores = np.r_[rng.normal(1, 1, n), rng.normal(-1, 1, n)]
    labels = np.r_[np.ones(n), np.zeros(n)]
    roc = M.roc_curve(scores, labels)
    assert M.equal_error_rate(roc) == pytest.approx(0.1587, abs=0.003)


def test_needs_both_classes():
    with pytest.raises(ValueError):
        M.roc_curve(np.array([0.1, 0.2]), np.array([1, 1]))


def _clustered(n_ids=10, per=4, dim=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per)
    emb = centers[labels] + noise * rng.normal(size=(len(labels), dim))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


def test_verification_and_identification_on_clean_clusters():
    emb, labels = _clustered()
    m, _ = M.verification_metrics(emb, labels)
    # 720 impostor pairs measure a FAR of 1e-1 (100 needed), not 1e-2 (1,000) or 1e-3 (10,000)
    assert m["auc"] == 1.0 and m["tar_far1e-1"] == 1.0 and "tar_far1e-2" not in m and "tar_far1e-3" not in m
    assert m["pairs_genuine"] == 10 * 6 and m["pairs_impostor"] == 40 * 39 / 2 - 60
    ident = M.identification_metrics(emb, labels)
    assert ident["top1"] == 1.0 and ident["gallery"] == 10 and ident["probes"] == 30


def test_random_embeddings_score_chance():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(400, 64))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat(np.arange(100), 4)
    m, _ = M.verification_metrics(emb, labels)
    assert 0.4 < m["auc"] < 0.6
    ident = M.identification_metrics(emb, labels)
    assert ident["top1"] < 0.06 and ident["top5"] < 0.15


def test_identification_ranks():
    # 3 identities on a line: each probe's nearest gallery entry is known
    emb = np.array([[1, 0], [0, 1], [-1, 0], [0.9, 0.1], [0.1, 0.9], [0.0, -1.0]], dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.array([0, 1, 2, 0, 1, 2])
    g, p = M.gallery_probe_split(labels, seed=0)
    assert len(g) == 3 and len(p) == 3 and set(labels[g]) == {0, 1, 2}


def test_pair_sampling_keeps_all_genuine_pairs():
    labels = np.repeat(np.arange(50), 3)
    i, j = M.all_pairs(labels, max_pairs=1000, seed=0)
    same = labels[i] == labels[j]
    assert same.sum() == 50 * 3 and len(i) == 1000 and np.all(i < j)
    i2, j2 = M.all_pairs(labels, max_pairs=1000, seed=0)
    assert np.array_equal(i, i2) and np.array_equal(j, j2)


def test_classification_metrics_and_confusion():
    t = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    p = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    m = M.classification_metrics(t, p, ["a", "b"])
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1_a"] == pytest.approx(2 / 3)  # tp=1, fn=1
    assert m["f1_b"] == pytest.approx(0.8)  # tp=2, fp=1
    assert M.confusion_matrix(t[:, 1], p[:, 1]).tolist() == [[1, 1], [0, 2]]
