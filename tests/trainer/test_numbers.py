"""Numbers a trainer reports must mean what they say (issue 15): thresholds that do not depend on the pair mix,
FARs only where the pairs support them, pairs sampled without n^2 memory, chip caches keyed by everything that
changes a chip, frozen stages that stay frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facestream.errors import FacestreamError
from facestream.stream.config import load_config
from facestream.trainer import metrics as M
from facestream.trainer.evaluate import comparison_table


def clustered(n_people: int, per: int, dim: int = 32, spread: float = 0.6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, dim))
    labels = np.repeat(np.arange(n_people), per)
    emb = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), labels


def test_the_threshold_does_not_depend_on_how_many_pairs_were_drawn():
    """Best accuracy over impostor-dominated pairs drifted with max_pairs (0.942 / 0.935 / 0.922 / 0.911 seen);
    a threshold for a stated FAR is a quantile of the impostor scores and stays put."""
    emb, labels = clustered(300, 4)
    chosen, fitted = [], []
    for max_pairs in (None, 200_000, 20_000, 5_000):
        scores, same = M.pair_scores(emb, labels, max_pairs, seed=0)
        thr, rule = M.threshold_for(scores, same, far=1e-2)
        assert rule == "far=1e-02"
        chosen.append(thr)
        fitted.append(M.best_accuracy(scores, same)[1])
    assert max(chosen) - min(chosen) < 0.02
    assert max(fitted) - min(fitted) > 2 * (max(chosen) - min(chosen))  # what the old rule did
    # and the threshold keeps its promise on new people
    emb2, labels2 = clustered(300, 4, seed=1)
    scores2, same2 = M.pair_scores(emb2, labels2, 200_000, seed=0)
    assert M.rates_at(scores2, same2, chosen[0])["far"] < 2e-2


def test_a_far_is_reported_only_where_the_pairs_support_it():
    emb, labels = clustered(40, 2)  # 40 genuine, 3,120 impostor pairs
    m, _ = M.verification_metrics(emb, labels)
    assert m["pairs_impostor"] == 3120
    assert "tar_far1e-1" in m and "tar_far1e-2" in m and "tar_far1e-3" not in m  # 1e-3 needs 10,000
    assert "accuracy" not in m and "threshold" not in m  # nothing fitted on the test pairs
    assert M.selection_key(m)[0] == "tar_far1e-2"
    table = comparison_table({"a": m, "b": m})
    assert "tar_far1e-3" not in table or "not enough pairs" in table
    assert "tar_far1e-2" in table
    small, _ = M.verification_metrics(*clustered(6, 2))  # 60 impostor pairs: no FAR at all, AUC decides
    assert not any(k.startswith("tar_far") for k in small) and M.selection_key(small)[0] == "auc"
    # EER rule when the validation pairs cannot measure the asked FAR
    scores, same = M.pair_scores(*clustered(6, 2), None, 0)
    assert M.threshold_for(scores, same, far=1e-3)[1] == "eer"


def test_pairs_are_sampled_without_building_all_of_them():
    labels = np.repeat(np.arange(10_000), 3)  # 30,000 chips: 450 million pairs if built
    i, j = M.all_pairs(labels, max_pairs=50_000, seed=0)
    assert len(i) == 50_000 and np.all(i < j)
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 50_000
    assert (labels[i] == labels[j]).sum() == 25_000  # genuine pairs capped at half the budget, no error
    i2, j2 = M.all_pairs(labels, max_pairs=50_000, seed=0)
    assert np.array_equal(i, i2) and np.array_equal(j, j2)
    few = np.repeat(np.arange(3), 40)  # genuine pairs alone exceed the budget: sampled, not an error
    i, j = M.all_pairs(few, max_pairs=500, seed=1)
    assert len(i) == 500 and (few[i] == few[j]).sum() == 250


def test_the_chip_cache_key_names_every_setting_that_changes_a_chip(analyzer):
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.trainer.data import preprocessing_key

    base = preprocessing_key(analyzer)
    for change in ("detector.tiling=off", "detector.tile_size=384", "detector.tile_overlap=0.4",
                   "detector.nms_iou=0.5", "detector.max_side=2048"):
        other = FaceAnalyzer(load_config(overrides=[change], env={}))
        assert preprocessing_key(other) != base, change
    import facestream.stream.engine.align as align

    old = align.ALIGN_VERSION
    try:
        align.ALIGN_VERSION = old + 1
        assert preprocessing_key(analyzer) != base  # a changed aligner is a new cache
    finally:
        align.ALIGN_VERSION = old


def test_frozen_stages_keep_their_batch_norm_statistics_and_nothing_trainable_is_an_error():
    from facestream.trainer.train import build_model

    model = build_model("small_net", pretrained=False, freeze="stage2")
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("stem", "stage1", "stage2"))}
    later = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("stage4") and "running" in k}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        out = model(torch.randn(8, 3, 150, 150) * 3 + 1)
        opt.zero_grad()
        out.pow(2).mean().backward()
        opt.step()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # weights AND running statistics
    assert any(not torch.equal(state[k], v) for k, v in later.items())  # the learning stages' statistics move
    with pytest.raises(FacestreamError, match="nothing would be trained"):
        build_model("small_net", pretrained=False, freeze="head")
