"""Model directories, export failures and threshold calibration, on small real models (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from facestream.errors import FacestreamError
from facestream.stream.engine.export import ExportMismatchError
from facestream.stream.engine.networks.small_net import SmallNet
from facestream.trainer import metrics as M
from facestream.trainer.data import ChipSet
from facestream.trainer.train import _calibrate, build_model, save_model_dir

SIZE = 32  # small_net halves five times: 32 px chips give a 1x1 map


class Noisy(nn.Module):
    """Random in eval mode: ONNX Runtime's random numbers never match torch's, so verification fails."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        y = self.fc(x.mean((2, 3)))
        return y + torch.rand_like(y)


def _save(model, out_root):
    return save_model_dir(model, out_root, "t", input_size=SIZE, padding=0.25, threshold=0.4,
                          architecture="small_net", extra={})


def test_export_mismatch_is_a_user_error_and_leaves_no_temp_folder(tmp_path):
    with pytest.raises(ExportMismatchError) as info:
        _save(Noisy(), tmp_path)
    assert isinstance(info.value, FacestreamError) and info.value.fix  # the CLI prints it without a traceback
    assert "differs from torch" in info.value.problem
    assert list(tmp_path.iterdir()) == []  # the .export.* folder is gone


def test_model_dir_has_the_models_embedding_dim(tmp_path):
    spec = _save(SmallNet(embedding_dim=32), tmp_path)
    assert spec.embedding_dim == 32
    assert spec.onnx_path.is_file() and spec.weights_path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [spec.model_id]


def test_unknown_architecture_names_the_valid_ones():
    with pytest.raises(FacestreamError, match="small_net"):
        build_model("no_such_net", pretrained=False, freeze=None)


def test_best_accuracy_reuses_a_given_roc():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=300), rng.integers(0, 2, 300)
    roc = M.roc_curve(scores, labels)
    assert M.best_accuracy(scores, labels, roc) == M.best_accuracy(scores, labels)


def test_calibrated_threshold_is_chosen_for_a_far_on_validation_people():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 4)
    cs = ChipSet(chips=rng.integers(0, 256, (len(labels), SIZE, SIZE, 3), dtype=np.uint8), labels=labels,
                 names=[f"p{k}" for k in range(6)], paths=[""] * len(labels), digests=[""] * len(labels))
    torch.manual_seed(0)
    model = SmallNet(embedding_dim=16)
    thr, rule = _calibrate(model, {"val": cs, "train": cs}, "cpu", seed=3, max_pairs=100, far=1e-3)

    from facestream.trainer.evaluate import embed_torch

    emb = embed_torch(model, cs.chips, "cpu")
    scores, same = M.pair_scores(emb, labels, 100, 3)
    # 64 impostor pairs cannot measure a FAR of 1e-3 (10,000 needed): the equal error rate's threshold
    assert rule["rule"] == "eer" and rule["on"] == "val" and rule["pairs_impostor"] == int((~same).sum())
    assert thr == float(np.clip(M.threshold_for(scores, same, 1e-3)[0], -1.0, 1.0 + 1e-5))
    thr2, rule2 = _calibrate(model, {"val": cs, "train": cs}, "cpu", seed=3, max_pairs=100, far=0.2)
    assert rule2["rule"] == "far=2e-01" and M.rates_at(scores, same, thr2)["far"] <= 0.2
