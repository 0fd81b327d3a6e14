"""Fine-tune (or train from scratch) a face embedder, evaluate it against the pretrained model, record it in MLflow.

One call of :func:`train_embedder` is one MLflow run:

1. chips from the identity folders (cached), split by identity (seeded);
2. the model from ``facestream.stream.engine.networks`` (the dlib ResNet with its weights by default),
   frozen up to a named stage if asked;
3. epochs of a margin loss (ArcFace/CosFace, centres started at the pretrained
   class means) or batch-hard triplets, with face augmentation;
4. the decision threshold chosen on validation identities for a stated target
   (``train.threshold_far``, or their EER when they have too few pairs), recorded
   in ``spec.json`` and judged on the test identities (its FAR, FRR, accuracy);
5. test metrics of the new model AND of the pretrained dlib ResNet on the same
   held-out identities, ROC and training-curve plots;
6. the model directory (weights.pt, model.onnx, spec.json) logged and registered;
   the ``champion`` alias moves only if the new version wins on the same split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.config import Config
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.export import export_onnx
from facestream.stream.engine.model_store import ModelSpec, cache_dir, get_model
from facestream.stream.engine.networks import create_model
from facestream.stream.engine.networks.staged import StagedNet
from facestream.trainer import evaluate as ev
from facestream.trainer import tracking
from facestream.trainer.data import ChipSet, chip_analyzer, describe, load_chip_set, split_by_identity
from facestream.trainer.loop import (
    Callback,
    EarlyStop,
    KeepBestOnValidation,
    LogEpochs,
    MLflowEpochs,
    ProgressBar,
    fit,
)
from facestream.trainer.losses import MarginHead, make_loss
from facestream.trainer.metrics import pair_scores, rates_at, threshold_for

log = logging.getLogger(__name__)

PRETRAINED = "dlib_resnet"
FINETUNE_LR = 2e-5
SCRATCH_LR = 1e-3


@dataclass
class TrainResult:
    """What a training run produced and decided."""

    run_id: str | None
    model_dir: Path
    spec: ModelSpec
    metrics: dict[str, float]
    pretrained_metrics: dict[str, float]
    history: list[dict[str, float]]
    data_fingerprint: str
    test_split: str
    version: str | None = None
    promoted: bool = False
    decision: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable lines for the CLI: the comparison table and the registry decision."""
        lines = [ev.comparison_table({"fine-tuned": self.metrics, "pretrained": self.pretrained_metrics})]
        lines.append(f"model directory: {self.model_dir}")
        if self.run_id:
            lines.append(f"MLflow run: {self.run_id}")
        if self.version:
            lines.append(f"registered version {self.version}: "
                         f"{'now champion' if self.promoted else 'not champion'} ({self.decision})")
        return "\n".join(lines)


def pick_device(name: str):
    """torch device for ``auto|cpu|cuda`` (auto takes CUDA when present), or a clear error."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise FacestreamError("train.device=cuda but torch sees no CUDA GPU.", "Use --set train.device=cpu or auto.")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def build_model(name: str, pretrained: bool, freeze: str | None) -> StagedNet:
    """The named architecture (pretrained if asked and available), frozen up to ``freeze``.

    Raises:
        FacestreamError: unknown architecture or stage, or a freeze that leaves nothing to train.
    """
    model = create_model(name, pretrained=pretrained)  # names the valid architectures when unknown
    if not isinstance(model, StagedNet):
        raise FacestreamError(f"The architecture {name} is not a staged face embedder.",
                              "Register a StagedNet subclass (facestream.stream.engine.networks.staged).")
    if freeze:
        names = list(model.stage_names)
        if freeze not in names:
            raise FacestreamError(
                f"'{freeze}' is not a stage of {name}.", f"Freeze up to one of: {', '.join(names) or '(none)'}."
            )
        model.freeze_up_to(freeze)
        if not any(p.requires_grad for p in model.parameters()):
            raise FacestreamError(
                f"--freeze {freeze} freezes every stage of {name}: nothing would be trained.",
                f"Freeze up to an earlier stage (one of {', '.join(names[:-1])}), or do not freeze.")
    return model


def _calibrate(model, splits: dict[str, ChipSet], device, seed: int, max_pairs: int, far: float
               ) -> tuple[float, dict[str, Any]]:
    """The cosine threshold for a stated target on validation identities (train identities when val is empty).

    Returns:
        (threshold, rule) where rule says how: ``{"rule": "far=1e-03" | "eer", "on": "val" | "train",
        "pairs_genuine": ..., "pairs_impostor": ...}`` (written to spec.json).
    """
    for name in ("val", "train"):
        cs = splits[name]
        if len(cs.names) >= 2 and np.bincount(cs.labels).max() >= 2:
            scores, same = pair_scores(ev.embed_torch(model, cs.chips, device), cs.labels, max_pairs, seed)
            thr, rule = threshold_for(scores, same, far)
            return float(np.clip(thr, -1.0, 1.0 + 1e-5)), {"rule": rule, "on": name, "pairs_genuine": int(same.sum()),
                                                     "pairs_impostor": int((~same).sum())}
    raise FacestreamError("No split has two identities to calibrate a threshold on.", "Add more identities.")


def judge_threshold(emb: np.ndarray, labels: np.ndarray, threshold: float, seed: int, max_pairs: int
                    ) -> dict[str, float]:
    """The validation-chosen threshold on held-out people: its FAR, FRR and accuracy there."""
    scores, same = pair_scores(emb, labels, max_pairs, seed)
    rates = rates_at(scores, same, threshold)
    return {"far_at_threshold": rates["far"], "frr_at_threshold": rates["frr"],
            "accuracy_at_threshold": rates["accuracy"]}


def save_model_dir(model, out_root: Path, name: str, input_size: int, padding: float, threshold: float,
                   architecture: str, extra: dict[str, Any]):
    """Write weights.pt, model.onnx and spec.json into ``out_root/<model_id>`` and return the spec."""
    import copy

    import torch


    cpu = copy.deepcopy(model).cpu().eval()
    tmp = Path(tempfile.mkdtemp(prefix=".export.", dir=out_root))
    try:
        torch.save(cpu.state_dict(), tmp / "weights.pt")
        digest = hashlib.sha256((tmp / "weights.pt").read_bytes()).hexdigest()[:12]
        model_id = f"{name}@{digest}"
        export_onnx(cpu, tmp / "model.onnx", input_size=input_size)
        target = out_root / model_id
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:  # a failed export must not leave a half-written folder in the model cache
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    spec = ModelSpec(
        name=name, model_id=model_id, onnx_path=target / "model.onnx", input_size=input_size, padding=padding,
        landmarks="dlib5", mean=tuple(getattr(cpu, "mean_rgb", ev.MEAN_RGB)), std=ev.STD,
        embedding_dim=_embedding_dim(cpu, "cpu", input_size),
        threshold=float(threshold), architecture=architecture, weights_path=target / "weights.pt", extra=extra,
    )
    spec.save(target)
    return spec


def train_embedder(data: str | Path | list[str | Path] | ChipSet, config: Config, tracking_uri: str | None = None,
                   out_dir: str | Path | None = None, analyzer: FaceAnalyzer | None = None, register: bool = True,
                   progress: bool = True, run_name: str | None = None) -> TrainResult:
    """Run one training run end to end (see the module docstring).

    Args:
        data: identity folder(s): ``DIR/<person>/*.jpg``, or chips already made.
        config: the facestream config; ``config.train`` holds the hyper-parameters,
            ``config.mlflow`` the store, registry name and experiment.
        tracking_uri: overrides ``config.mlflow.tracking_uri`` (e.g. ``--mlflow``).
        out_dir: where model directories are written (default ``<cache>/models``).
        analyzer: the FaceAnalyzer that makes chips (default: one from ``config``).
        register: register the model and consider it for ``champion``.
        progress: tqdm bars for chips and epochs.

    Raises:
        FacestreamError: bad data, unknown model/stage, unreachable MLflow store, divergence.
    """
    import mlflow
    import torch


    tc = config.train
    uri = tracking.setup(tracking_uri or config.mlflow.tracking_uri, config.mlflow.experiment)
    device = pick_device(tc.device)
    torch.manual_seed(tc.seed)
    model = build_model(tc.model, tc.pretrained, tc.freeze)  # before the slow chips: a typo fails at once
    if isinstance(data, ChipSet):
        chips, roots = data, ["(chips in memory)"]
    else:
        roots = [str(r) for r in data] if isinstance(data, list) else [str(data)]
        chips = load_chip_set(roots, analyzer or chip_analyzer(config), cache=tc.chip_cache, progress=progress)
    splits = split_by_identity(chips, seed=tc.seed, val_fraction=tc.val_fraction, test_fraction=tc.test_fraction)
    train_cs, test_cs = splits["train"], splits["test"]
    split_id = tracking.split_fingerprint(test_cs.fingerprint(), tc.max_pairs, tc.seed)
    rng = np.random.default_rng(tc.seed)
    model = model.to(device)
    baseline = model if tc.model == PRETRAINED and tc.pretrained else build_model(PRETRAINED, True, None).to(device)

    out_root = Path(out_dir).expanduser() if out_dir else _default_out()
    out_root.mkdir(parents=True, exist_ok=True)
    name = f"{tc.model}-{tc.loss}"
    with mlflow.start_run(run_name=run_name or name) as run, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        _log_inputs(config, roots, chips, splits, split_id, device, tmp)
        # the pretrained model on the same held-out identities, always
        pre_emb = ev.embed_torch(baseline, test_cs.chips, device)
        pre_metrics, pre_roc = ev.evaluate(pre_emb, test_cs.labels, seed=tc.seed, max_pairs=tc.max_pairs)
        mlflow.log_metrics({f"pretrained_test_{k}": v for k, v in pre_metrics.items()})
        if baseline is not model:
            del baseline

        loss_fn = _loss(model, tc, train_cs, device, int(chips.chips.shape[1]))
        lr = tc.lr or (FINETUNE_LR if tc.pretrained and tc.model == PRETRAINED else SCRATCH_LR)
        mlflow.log_param("lr_used", lr)
        callbacks, best = _callbacks(model, splits, device, tc, progress)
        done = fit(model, loss_fn, train_cs, tc, device, rng, lr, callbacks)
        history, best_epoch = done.history, (best.best_epoch if best is not None else done.epoch)
        mlflow.log_param("best_epoch", best_epoch)
        threshold, rule = _calibrate(model, splits, device, tc.seed, tc.max_pairs, tc.threshold_far)
        test_emb = ev.embed_torch(model, test_cs.chips, device)
        metrics, roc = ev.evaluate(test_emb, test_cs.labels, seed=tc.seed, max_pairs=tc.max_pairs)
        metrics["threshold"] = threshold
        metrics.update(judge_threshold(test_emb, test_cs.labels, threshold, tc.seed, tc.max_pairs))
        _log_results(metrics, pre_metrics, rule, {f"fine-tuned ({name})": roc, "pretrained dlib ResNet": pre_roc},
                     history, tmp)

        spec = save_model_dir(
            model, out_root, name, input_size=int(chips.chips.shape[1]), padding=chips.padding,
            threshold=threshold, architecture=tc.model,
            extra={"run_id": run.info.run_id, "data_fingerprint": chips.fingerprint(),
                   "test_split": split_id, "calibrated_on": rule["on"], "threshold_rule": rule,
                   "identities": {s: list(cs.names) for s, cs in splits.items()},
                   "test_metrics": {k: metrics[k] for k in ev.REPORTED if k in metrics}},
        )
        model_dir = spec.onnx_path.parent
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        mlflow.set_tag("facestream.model_id", spec.model_id)
        result = TrainResult(run.info.run_id, model_dir, spec, metrics, pre_metrics, history,
                             chips.fingerprint(), split_id,
                             skipped=[(f, "empty identity folder") for f in chips.report.empty_folders]
                             + list(chips.report.skipped))
        if register:
            _register(result, run.info.run_id, config, uri, split_id, test_cs, {"new": test_emb, None: pre_emb})
    return result


def _log_inputs(config: Config, roots: list[str], chips: ChipSet, splits: dict[str, ChipSet], split_id: str,
                device: Any, tmp: Path) -> None:
    """What the run was made from: hyper-parameters, data, split, versions; the config, split and skipped files."""
    import mlflow
    import torch

    tc = config.train
    mlflow.log_params({f"train.{k}": v for k, v in tc.model_dump().items()})
    mlflow.log_params({
        "data": ", ".join(str(r) for r in roots), "data_fingerprint": chips.fingerprint(),
        "test_split": split_id, "device": str(device), "torch": torch.__version__,
        "preprocessing": chips.prep_key, "skipped_images": len(chips.report.skipped),
        **describe(splits),
    })
    mlflow.set_tags({"facestream.kind": "embedder", "facestream.data_fingerprint": chips.fingerprint()})
    (tmp / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    (tmp / "split.json").write_text(json.dumps({s: cs.names for s, cs in splits.items()}, indent=2))
    (tmp / "skipped.txt").write_text("\n".join(chips.report.lines()) + "\n")
    for f in ("config.json", "split.json", "skipped.txt"):
        mlflow.log_artifact(str(tmp / f))


def _loss(model: Any, tc: Any, train_cs: ChipSet, device: Any, size: int) -> Any:
    """The training loss; a margin head starts from the pretrained model's class centres when fine-tuning."""
    import torch

    loss_fn = make_loss(tc.loss, _embedding_dim(model, device, size), len(train_cs.names)).to(device)
    if isinstance(loss_fn, MarginHead) and tc.pretrained:
        emb = ev.embed_torch(model, train_cs.chips, device)
        loss_fn.init_centres(torch.from_numpy(emb).to(device), torch.from_numpy(train_cs.labels).to(device))
    return loss_fn


def _callbacks(model: Any, splits: dict[str, ChipSet], device: Any, tc: Any,
               progress: bool) -> tuple[list[Callback], KeepBestOnValidation | None]:
    """The epoch loop's callbacks: best-epoch keeping and early stop (with a validation split), MLflow, log, bar."""
    callbacks: list[Callback] = []
    best = None
    if len(splits["val"].names) >= 2:
        best = KeepBestOnValidation(model, splits["val"], device, tc, include_start=tc.pretrained)
        callbacks.append(best)
        if tc.patience:
            callbacks.append(EarlyStop("val_tar_far1e-2", tc.patience))
    callbacks += [MLflowEpochs(), LogEpochs(), ProgressBar(tc.epochs, progress)]
    return callbacks, best


def _log_results(metrics: dict[str, float], pre_metrics: dict[str, float], rule: dict[str, Any],
                 rocs: dict[str, Any], history: Any, tmp: Path) -> None:
    """Test metrics, the gain over the pretrained model, the threshold's rule, the ROC and training curves."""
    import mlflow

    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    mlflow.log_metrics({f"delta_{k}": metrics[k] - pre_metrics[k] for k in ("auc", "tar_far1e-2", "top1")
                        if k in metrics and k in pre_metrics})
    mlflow.log_params({"threshold_calibrated_on": rule["on"], "threshold_rule": rule["rule"]})
    mlflow.log_artifact(str(ev.plot_roc(rocs, tmp / "roc.png")), "plots")
    mlflow.log_artifact(str(ev.plot_history(history, tmp / "training_curves.png")), "plots")
    (tmp / "metrics.json").write_text(json.dumps({"fine_tuned": metrics, "pretrained": pre_metrics}, indent=2))
    mlflow.log_artifact(str(tmp / "metrics.json"))


def _register(result: TrainResult, run_id: str, config: Config, uri: str, split_id: str, test_cs: ChipSet,
              embeddings: dict[str | None, np.ndarray]) -> None:
    """Register the run's model; the champion rule decides whether it replaces the champion."""
    import mlflow

    tc = config.train
    promo = tracking.register_model(
        run_id, "model", config.mlflow.registry_name, split_id, set(test_cs.names),
        measure=_measurer(config.mlflow.registry_name, uri, test_cs, embeddings, tc.seed, tc.max_pairs),
        trained_people=_trained_people(config.mlflow.registry_name, uri), tracking_uri=uri,
    )
    result.version, result.promoted, result.decision = promo.version, promo.promoted, promo.reason
    mlflow.set_tags({"facestream.version": promo.version, "facestream.champion": str(promo.promoted),
                     "facestream.decision": promo.reason})
    log.info("registered %s v%s: %s", config.mlflow.registry_name, promo.version, promo.reason)


def _embedding_dim(model, device, size: int) -> int:
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        dim = int(model(torch.zeros(2, 3, size, size, device=device)).shape[1])
    model.train(was)
    return dim


def _default_out() -> Path:
    return cache_dir() / "trained"


def restrict(emb: np.ndarray, cs: ChipSet, people: set[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The embeddings and labels of ``people`` only; None when fewer than two of them have two chips."""
    keep = np.array([cs.names[k] in people for k in cs.labels.tolist()], dtype=bool)
    labels = cs.labels[keep]
    if len(set(labels.tolist())) < 2 or np.bincount(labels).max(initial=0) < 2:
        return None
    return emb[keep], labels


def _measurer(name: str, uri: str, test: ChipSet, known: dict[str | None, np.ndarray], seed: int, max_pairs: int):
    """``measure(version, people)`` for the champion rule: the new model ("new"), the pretrained one (None),
    or a registered version (run by the runtime's ONNX engine), on the test chips of ``people`` only."""

    def measure(version: str | None, people: set[str]) -> dict[str, float] | None:
        emb = known.get(version)
        if emb is None:
            try:
                spec = get_model(f"models:/{name}/{version}", tracking_uri=uri)
            except FacestreamError as exc:
                log.warning("could not load %s v%s to compare with: %s", name, version, exc)
                return None
            if spec.input_size != test.chips.shape[1]:
                return None
            emb = ev.embed_spec(spec, test.chips)
        sub = restrict(emb, test, people)
        return None if sub is None else ev.evaluate(sub[0], sub[1], seed=seed, max_pairs=max_pairs)[0]

    return measure


def _trained_people(name: str, uri: str):
    """``trained_people(version)``: the identities a registered version trained or calibrated on (spec.json)."""

    def people(version: str) -> set[str] | None:
        try:
            spec = get_model(f"models:/{name}/{version}", tracking_uri=uri)
        except FacestreamError:
            return None
        return recorded_training_people(spec)

    return people


def recorded_training_people(spec: ModelSpec) -> set[str] | None:
    """The people a model directory says it trained or calibrated on; None when it does not say (pretrained
    models trained elsewhere, or directories from before this was recorded)."""
    ids = (spec.extra or {}).get("identities")
    if not isinstance(ids, dict):
        return None
    return set(ids.get("train", [])) | set(ids.get("val", []))
