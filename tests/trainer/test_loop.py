"""The training loop with callbacks (issue 18, item 4): a plain fit() on real chips of a tiny network, with
the callbacks a run uses; early stopping and keeping the best epoch decide on validation numbers."""

from __future__ import annotations

import numpy as np

from facestream.stream.config import TrainConfig
from facestream.trainer.data import ChipSet
from facestream.trainer.loop import Callback, EarlyStop, Fit, KeepBestOnValidation, fit
from facestream.trainer.losses import make_loss


class Recorder(Callback):
    def __init__(self):
        self.rows: list[dict] = []
        self.ended = 0

    def on_epoch_end(self, fit: Fit, row: dict) -> None:
        self.rows.append(dict(row))

    def on_fit_end(self, fit: Fit) -> None:
        self.ended += 1


def chips(n_people: int, per: int, seed: int) -> ChipSet:
    """Synthetic 32 px chips: each person a colour pattern plus noise, so a tiny net can learn them."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (n_people, 32, 32, 3)).astype(np.float32)
    x = np.concatenate([np.clip(base[i] + rng.normal(0, 20, (per, 32, 32, 3)), 0, 255) for i in range(n_people)])
    labels = np.repeat(np.arange(n_people), per)
    n = len(labels)
    return ChipSet(x.astype(np.uint8), labels, [f"p{i}" for i in range(n_people)], [""] * n, [""] * n)


def test_fit_calls_back_every_epoch_and_stops_early_when_validation_stalls():
    import torch

    from facestream.trainer.train import build_model

    torch.manual_seed(0)
    tc = TrainConfig(model="small_net", pretrained=False, epochs=6, batch_size=16, augment=False)
    model = build_model(tc.model, False, None)
    train, val = chips(6, 8, 0), chips(4, 6, 1)
    dim = int(model(torch.zeros(2, 3, 32, 32)).shape[1])
    loss_fn = make_loss("arcface", dim, len(train.names))
    rec = Recorder()
    best = KeepBestOnValidation(model, val, "cpu", tc, include_start=False)
    stop = EarlyStop("never-computed", 1)  # a metric nobody adds: never stops
    done = fit(model, loss_fn, train, tc, "cpu", np.random.default_rng(0), 1e-3, [best, rec, stop])
    assert [r["epoch"] for r in rec.rows] == list(range(1, 7)) and rec.ended == 1
    assert all("val_auc" in r and r["train_loss"] > 0 for r in rec.rows)  # validation ran before the recorder
    assert done.history == rec.rows and 1 <= best.best_epoch <= 6

    stalls = EarlyStop("score", 2)
    state = Fit(model=None, epochs=10)
    for epoch, score in enumerate([0.5, 0.6, 0.6, 0.55], start=1):
        state.epoch = epoch
        stalls.on_epoch_end(state, {"score": score})
    assert state.stop and stalls.best == 0.6  # two epochs without better than 0.6
