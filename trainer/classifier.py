"""Per-image classifiers on face embeddings: "is this person X", or multi-label attributes (CelebA).

The embedder stays fixed; a small logistic head (one output per label) is
trained on the embeddings of the labelled images. That is cheap, needs few
labels, and the head works on any face the live runtime embeds with the same
model (its ``model_id`` is stored with the head).

Labels files:

* CSV with a header: the first column names the image (relative to ``images``),
  every other column is a 0/1 label (``1/0``, ``1/-1``, ``true/false``, ``yes/no``).
* CelebA's ``list_attr_celeba.txt``: a count line, a line of attribute names,
  then ``<file> <+1|-1> ...`` per image.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.trainer import metrics as M
from facestream.trainer import tracking
from facestream.trainer.data import cached_chip, chip_cache_root
from facestream.trainer.evaluate import plot_confusions

log = logging.getLogger(__name__)

TRUE = {"1", "+1", "true", "yes", "y", "t"}
FALSE = {"0", "-1", "false", "no", "n", "f"}


@dataclass
class LabelTable:
    """Images and their 0/1 labels."""

    images: list[str]
    names: list[str]
    values: np.ndarray  # (n, L) bool


def _value(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise FacestreamError(f"{where}: label value {text!r} is not 0/1, +1/-1, true/false or yes/no.",
                          "Fix the labels file.")


def read_labels(path: str | Path) -> LabelTable:
    """Read a CSV labels file or CelebA's ``list_attr_celeba.txt`` (detected by its first line).

    Raises:
        FacestreamError: missing/empty file, no label columns, bad values, ragged rows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FacestreamError(f"Labels file {path} not found.", "Pass --labels with a CSV or list_attr_celeba.txt.")
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        raise FacestreamError(f"Labels file {path} has no labelled images.", "Add a header and one row per image.")
    if lines[0].strip().isdigit():  # CelebA
        names = lines[1].split()
        rows = [ln.split() for ln in lines[2:]]
    else:
        table = list(csv.reader(lines))
        names = [n.strip() for n in table[0][1:]]
        rows = table[1:]
    if not names:
        raise FacestreamError(f"Labels file {path} has no label columns.", "Add at least one column after the image.")
    images, values = [], []
    for k, row in enumerate(rows, start=2 if not lines[0].strip().isdigit() else 3):
        if len(row) != len(names) + 1:
            raise FacestreamError(
                f"{path} line {k}: {len(row) - 1} values for {len(names)} labels.", "Give every image every label.")
        images.append(row[0].strip())
        values.append([_value(v, f"{path} line {k}") for v in row[1:]])
    return LabelTable(images, names, np.array(values, dtype=bool))


def resolve_images(table: LabelTable, images_dir: Path) -> list[Path]:
    """Image paths under ``images_dir``; every missing one is named in one error."""
    paths = [(images_dir / name) for name in table.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise FacestreamError(
            f"The labels file names {len(missing)} image(s) that do not exist: {shown}.",
            "Fix the names in the labels file, or pass --images with the folder they are in.",
        )
    return paths


@dataclass
class ClassifierResult:
    run_id: str | None
    out_dir: Path
    metrics: dict[str, float]
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{'label':<24}{'accuracy':>10}{'F1':>8}"]
        for n in self.names:
            lines.append(f"{n:<24}{self.metrics[f'accuracy_{n}']:>10.3f}{self.metrics[f'f1_{n}']:>8.3f}")
        lines.append(f"{'all labels':<24}{self.metrics['accuracy']:>10.3f}{self.metrics['f1_macro']:>8.3f}")
        lines.append(f"classifier: {self.out_dir}")
        if self.run_id:
            lines.append(f"MLflow run: {self.run_id}")
        return "\n".join(lines)


def fit_head(x: np.ndarray, y: np.ndarray, epochs: int = 300, lr: float = 0.05, weight_decay: float = 1e-4,
             seed: int = 0):
    """Logistic regression, one output per label, on L2-normalised embeddings (full batch; small data).

    Positive examples are weighted by the label's negative/positive ratio so that a
    rare label ("is this person X" among many others) is not learned as "never".
    """
    import torch

    torch.manual_seed(seed)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    pos = yt.sum(0).clamp(min=1.0)
    pos_weight = ((len(yt) - yt.sum(0)).clamp(min=1.0) / pos).clamp(max=100.0)
    head = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(epochs):
        loss = loss_fn(head(xt * 10.0), yt)  # scaled: unit vectors give tiny logits otherwise
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def predict(head, x: np.ndarray) -> np.ndarray:
    """Probabilities (n, L) from a head made by :func:`fit_head`."""
    import torch

    with torch.no_grad():
        return torch.sigmoid(head(torch.from_numpy(x.astype(np.float32)) * 10.0)).numpy()


def train_classifier(labels_file: str | Path, config, images_dir: str | Path | None = None,
                     tracking_uri: str | None = None, out_dir: str | Path | None = None,
                     analyzer: FaceAnalyzer | None = None, test_fraction: float = 0.25, seed: int = 0,
                     progress: bool = True, cache: str | Path | None = None) -> ClassifierResult:
    """Embed the labelled images, fit a head, evaluate on held-out images, log everything to MLflow.

    Raises:
        FacestreamError: bad labels file, missing images, too few usable images, unreachable MLflow store.
    """
    import mlflow
    import torch
    from tqdm import tqdm


    table = read_labels(labels_file)
    root = Path(images_dir).expanduser() if images_dir else Path(labels_file).expanduser().parent
    paths = resolve_images(table, root)
    tracking.setup(tracking_uri or config.mlflow.tracking_uri, config.mlflow.experiment)
    if analyzer is None:
        analyzer = FaceAnalyzer(config)
    chips, keep, skipped = [], [], []
    cache_root = chip_cache_root(analyzer, cache or config.train.chip_cache)
    for i, p in enumerate(tqdm(paths, desc="embedding", unit="img", disable=not progress)):
        chip, reason, _ = cached_chip(analyzer, p, cache_root)
        if chip is None:
            skipped.append((str(p), reason))
            log.warning("skipped %s: %s", p, reason)
            continue
        chips.append(chip)
        keep.append(i)
    if len(keep) < 4:
        raise FacestreamError(f"Only {len(keep)} labelled images have exactly one usable face.",
                              "Label more images that show one face each.")
    x = analyzer.embed_chips(np.stack(chips))
    y = table.values[keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keep))
    n_test = max(1, round(test_fraction * len(keep)))
    test, train = order[:n_test], order[n_test:]
    head = fit_head(x[train], y[train], seed=seed)
    probs = predict(head, x[test])
    pred = probs >= 0.5
    metrics = M.classification_metrics(y[test], pred, table.names)
    for k, n in enumerate(table.names):
        if y[test, k].any() and not y[test, k].all():
            metrics[f"auc_{n}"] = M.roc_auc(M.roc_curve(probs[:, k], y[test, k]))
    confusions = {n: M.confusion_matrix(y[test, k], pred[:, k]) for k, n in enumerate(table.names)}

    out_root = Path(out_dir).expanduser() if out_dir else Path(tempfile.mkdtemp(prefix="facestream-classifier-"))
    out_root.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), out_root / "classifier.pt")
    (out_root / "classifier.json").write_text(json.dumps({
        "labels": table.names, "embedder_model_id": analyzer.model_id, "input_scale": 10.0, "threshold": 0.5,
        "weight": head.weight.detach().numpy().tolist(), "bias": head.bias.detach().numpy().tolist(),
    }, indent=2))
    plot_confusions(confusions, out_root / "confusion.png")
    with mlflow.start_run(run_name=f"classifier-{Path(labels_file).stem}") as run:
        mlflow.set_tags({"facestream.kind": "classifier"})
        mlflow.log_params({"labels_file": str(labels_file), "labels": ",".join(table.names)[:500],
                           "images": len(paths), "usable": len(keep), "train_images": len(train),
                           "test_images": len(test), "seed": seed, "embedder": analyzer.model_id})
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(out_root), artifact_path="classifier")
    return ClassifierResult(run.info.run_id, out_root, metrics, table.names, skipped)
