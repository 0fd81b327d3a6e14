"""The training loop, plain: epochs of batches of a loss; everything around it is a callback.

:func:`fit` knows nothing of MLflow, progress bars or validation. What a run does at the end
of each epoch (validate and keep the best weights, log metrics to MLflow, log a line, move a
progress bar, stop early) is a :class:`Callback`, called in the order given; a callback may add
to the epoch's row (validation metrics) before the next one logs it, and may set ``stop``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.trainer import evaluate as ev
from facestream.trainer.augment import AugmentConfig, augment
from facestream.trainer.data import ChipSet
from facestream.trainer.metrics import selection_key

log = logging.getLogger(__name__)


@dataclass
class Fit:
    """What callbacks see: the model, the epoch just finished, every row so far; ``stop`` ends training."""

    model: Any
    epochs: int
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False


class Callback:
    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> None:
        """After each epoch; ``row`` (epoch, train_loss, train_images_per_s, ...) may be added to."""

    def on_fit_end(self, fit: Fit) -> None:
        """Once, after the last epoch (or a stop)."""


def fit(model: Any, loss_fn: Any, train: ChipSet, tc: Any, device: Any, rng: np.random.Generator, lr: float,
        callbacks: list[Callback]) -> Fit:
    """Train ``model`` (and ``loss_fn``'s parameters) on ``train`` for ``tc.epochs`` epochs (``tc``: the
    ``train`` config section): AdamW, cosine schedule, gradient clipping, face augmentation.

    Raises:
        FacestreamError: the loss diverged (not finite).
    """
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    params = [{"params": trainable, "lr": lr}]
    if any(True for _ in loss_fn.parameters()):
        params.append({"params": list(loss_fn.parameters()), "lr": lr * 10})
    opt = torch.optim.AdamW(params, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs)
    aug_cfg = AugmentConfig()
    gen = torch.Generator().manual_seed(tc.seed)
    per_identity = 4 if tc.loss == "triplet" else None
    mean = torch.tensor(ev.MEAN_RGB, device=device).view(1, 3, 1, 1)
    state = Fit(model, tc.epochs)
    for epoch in range(1, tc.epochs + 1):
        model.train()
        t0, seen, total = time.perf_counter(), 0, 0.0
        for idx in batches(train.labels, tc.batch_size, rng, per_identity):
            x = torch.from_numpy(train.chips[idx]).to(device).permute(0, 3, 1, 2).float()
            if tc.augment:
                x = augment(x, aug_cfg, generator=gen)
            y = torch.from_numpy(train.labels[idx]).to(device)
            loss = loss_fn(model((x - mean) / ev.STD), y)
            if not torch.isfinite(loss):
                raise FacestreamError(f"Training diverged at epoch {epoch} (loss {loss.item()}).",
                                      "Lower --set train.lr=...")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 5.0)
            opt.step()
            seen += len(idx)
            total += loss.item() * len(idx)
        sched.step()
        elapsed = time.perf_counter() - t0
        state.epoch = epoch
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "train_images_per_s": seen / max(elapsed, 1e-9)}
        for cb in callbacks:
            cb.on_epoch_end(state, row)
        state.history.append(row)
        if state.stop:
            break
    for cb in callbacks:
        cb.on_fit_end(state)
    return state


def batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator, per_identity: int | None
            ) -> Iterator[np.ndarray]:
    """Shuffled index batches; with ``per_identity`` (triplets), K chips of each identity side by side."""
    if per_identity is None:
        order = rng.permutation(len(labels))
    else:
        groups = []
        for ident in rng.permutation(int(labels.max()) + 1):
            idx = rng.permutation(np.nonzero(labels == ident)[0])
            groups += [idx[k:k + per_identity] for k in range(0, len(idx), per_identity)]
        order = np.concatenate([groups[g] for g in rng.permutation(len(groups))]) if groups else np.array([], int)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        if len(batch) >= 2:  # a batch of one breaks BatchNorm and has no pairs
            yield batch


# -- the callbacks a training run uses --------------------------------------------------------------------

def _state(model: Any) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class KeepBestOnValidation(Callback):
    """Validate after each epoch (metrics into the row as ``val_*``) and, at the end, load the best epoch's
    weights (TAR at the smallest FAR the validation pairs support, then AUC; ties to the later epoch). When
    fine-tuning, the starting weights compete as "epoch 0", so a run never ends worse on val than it began."""

    def __init__(self, model: Any, val: ChipSet, device: Any, tc: Any, include_start: bool):
        self.val, self.device, self.tc = val, device, tc
        self.best_key: tuple[float, float] | None = None
        self.best_state: dict | None = None
        self.best_epoch = tc.epochs
        if include_start:
            self.best_key, self.best_state, self.best_epoch = self._key(model)[1], _state(model), 0

    def _key(self, model: Any) -> tuple[dict[str, float], tuple[float, float]]:
        vm, _ = ev.evaluate(ev.embed_torch(model, self.val.chips, self.device), self.val.labels, seed=self.tc.seed,
                            max_pairs=self.tc.max_pairs)
        return vm, selection_key(vm)[1]

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> None:
        vm, key = self._key(fit.model)
        row.update({f"val_{k}": vm[k] for k in ("auc", "tar_far1e-2", "eer", "top1") if k in vm})
        if self.best_key is None or key >= self.best_key:
            self.best_key, self.best_state, self.best_epoch = key, _state(fit.model), fit.epoch

    def on_fit_end(self, fit: Fit) -> None:
        if self.best_state is not None and self.best_epoch != fit.epoch:
            log.info("keeping epoch %d, the best on validation identities", self.best_epoch)
            fit.model.load_state_dict(self.best_state)


class MLflowEpochs(Callback):
    """Each epoch's row as MLflow metrics (step = epoch), in the active run."""

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=fit.epoch)


class LogEpochs(Callback):
    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> None:
        log.info("epoch %d: %s", fit.epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))


class ProgressBar(Callback):
    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="training", unit="epoch", disable=not enabled)

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> None:
        self.bar.update(1)

    def on_fit_end(self, fit: Fit) -> None:
        self.bar.close()


class EarlyStop(Callback):
    """Stop when ``metric`` has not improved for ``patience`` epochs (after the callbacks that compute it)."""

    def __init__(self, metric: str, patience: int):
        self.metric, self.patience = metric, patience
        self.best = -float("inf")
        self.since = 0

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> None:
        value = row.get(self.metric)
        if value is None:
            return
        if value > self.best:
            self.best, self.since = value, 0
        else:
            self.since += 1
            if self.since >= self.patience:
                log.info("no better %s for %d epochs: stopping at epoch %d", self.metric, self.patience, fit.epoch)
                fit.stop = True
