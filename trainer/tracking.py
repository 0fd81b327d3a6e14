"""MLflow: where runs are recorded, how models are registered, and when ``champion`` moves.

A model is logged as a plain artifact directory (``spec.json`` + ``model.onnx`` +
``weights.pt``, exactly what :func:`facestream.stream.engine.model_store.get_model` loads) and registered
from that artifact path, so ``models:/facestream-embedder@champion`` downloads a
directory the runtime opens like any other model directory.

The ``champion`` alias moves only when a new version beats the current champion
on the same test split: each version carries the split's fingerprint and its
test metrics as tags, and versions measured on different splits are never
compared by their tags.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream.errors import FacestreamError
from facestream.stream.config import expand_sqlite_uri

log = logging.getLogger(__name__)

CHAMPION = "champion"
PRIMARY = "tar_far1e-2"
SECONDARY = "auc"
SPLIT_TAG = "test_split"


def resolve_tracking_uri(uri: str) -> str:
    """Expand ``~`` and variables in a ``sqlite:///`` or plain-path URI and create its folder.

    MLflow itself does not expand ``~``, and a SQLite store in a missing folder
    fails with an unhelpful error, so both are handled here.
    """
    uri = expand_sqlite_uri(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FacestreamError(
                f"Cannot create the folder of the MLflow store {path} ({exc.strerror}).",
                "Pass --mlflow with a writable sqlite:///path/to/mlflow.db or a tracking server URL.",
            ) from None
        return f"sqlite:///{path}"
    if "://" not in uri:  # a bare folder: MLflow's file store
        return str(Path(uri).expanduser().resolve())
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifact folder next to a SQLite store (else MLflow's default, which is ./mlruns in the cwd)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one clear message, when the tracking store cannot be used.

    MLflow retries HTTP requests for minutes by default; a training run should
    not discover at its end that its results cannot be recorded.

    Raises:
        FacestreamError: server unreachable, or the store does not open.
    """
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (user-given server)
                resp.read(64)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FacestreamError(
                f"MLflow tracking server {uri} is not reachable ({reason}).",
                "Start it (mlflow server --backend-store-uri sqlite:///mlflow.db) or pass --mlflow with a "
                "reachable URI, e.g. sqlite:///mlflow.db.",
            ) from None
        return
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types for a bad store
        raise FacestreamError(
            f"MLflow store {uri} cannot be opened ({str(exc).splitlines()[0][:200]}).",
            "Pass --mlflow with a writable sqlite:///path/to/mlflow.db or a tracking server URL.",
        ) from None


def setup(uri: str, experiment: str) -> str:
    """Point MLflow at ``uri`` (checked) and select ``experiment`` (created with a sane artifact folder).

    Returns:
        The resolved tracking URI.
    """
    import mlflow

    uri = resolve_tracking_uri(uri)
    check_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # facestream keeps its model registry in the tracking store
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=artifact_root(uri))
    mlflow.set_experiment(experiment)
    return uri


def is_better(new: dict[str, float], old: dict[str, float]) -> bool:
    """TAR@FAR1e-2 decides; AUC breaks a tie; an exact tie keeps the old champion."""
    a = (round(new[PRIMARY], 9), round(new[SECONDARY], 9))
    b = (round(old[PRIMARY], 9), round(old[SECONDARY], 9))
    return a > b


@dataclass
class Promotion:
    """The outcome of registering a model version."""

    version: str
    promoted: bool
    reason: str
    previous: str | None = None


def _tag_metrics(tags: dict[str, str]) -> dict[str, float] | None:
    try:
        return {PRIMARY: float(tags[PRIMARY]), SECONDARY: float(tags[SECONDARY])}
    except (KeyError, ValueError):
        return None


def register_model(run_id: str, artifact_path: str, name: str, metrics: dict[str, float], split: str,
                   champion_metrics_on_split: Any = None, baseline: dict[str, float] | None = None,
                   tracking_uri: str | None = None) -> Promotion:
    """Register the logged model directory as a new version and move ``champion`` if it wins.

    Args:
        run_id: the MLflow run that logged the directory.
        artifact_path: the directory's path inside the run's artifacts.
        name: registered model name.
        metrics: the new model's test metrics (needs ``tar_far1e-2`` and ``auc``).
        split: fingerprint of the test split the metrics were measured on.
        champion_metrics_on_split: ``callable(version) -> metrics | None`` that measures the
            current champion on this split when its tags are from another split; None
            keeps such a champion (metrics from different splits are not comparable).
        baseline: the pretrained model's metrics on this split; with no champion yet, the
            first version must not be worse than it (the runtime's default model is the
            implicit champion).
        tracking_uri: the store (tracking and registry); default: MLflow's current one.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or mlflow.get_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="facestream face embedders (model directory: spec.json, "
                                                         "model.onnx, weights.pt)")
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    tags = {SPLIT_TAG: split, PRIMARY: f"{metrics[PRIMARY]:.9f}", SECONDARY: f"{metrics[SECONDARY]:.9f}"}
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags).version
    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champ = None
    if champ is None:
        if baseline is not None and is_better(baseline, metrics):
            return Promotion(str(version), False, f"no champion yet, and worse than the pretrained model: {PRIMARY} "
                             f"{metrics[PRIMARY]:.4f} vs {baseline[PRIMARY]:.4f}, {SECONDARY} "
                             f"{metrics[SECONDARY]:.4f} vs {baseline[SECONDARY]:.4f}")
        client.set_registered_model_alias(name, CHAMPION, version)
        return Promotion(str(version), True, "first registered model, not worse than the pretrained one: champion")
    old = _tag_metrics(champ.tags) if champ.tags.get(SPLIT_TAG) == split else None
    how = "its tags on this split"
    if old is None and champion_metrics_on_split is not None:
        old = champion_metrics_on_split(champ.version)
        how = "re-evaluated on this split"
    if old is None:
        return Promotion(str(version), False, f"champion v{champ.version} was measured on another test split; "
                         "not comparable, champion kept", str(champ.version))
    summary = (f"{PRIMARY} {metrics[PRIMARY]:.4f} vs {old[PRIMARY]:.4f}, "
               f"{SECONDARY} {metrics[SECONDARY]:.4f} vs {old[SECONDARY]:.4f} (champion v{champ.version}, {how})")
    if is_better(metrics, old):
        client.set_registered_model_alias(name, CHAMPION, version)
        return Promotion(str(version), True, f"beats the champion: {summary}", str(champ.version))
    return Promotion(str(version), False, f"does not beat the champion: {summary}", str(champ.version))
