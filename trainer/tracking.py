"""MLflow: where runs are recorded, how models are registered, and when ``champion`` moves.

A model is logged as a plain artifact directory (``spec.json`` + ``model.onnx`` +
``weights.pt``, exactly what :func:`facestream.stream.engine.model_store.get_model` loads) and registered
from that artifact path, so ``models:/facestream-embedder@champion`` downloads a
directory the runtime opens like any other model directory.

The ``champion`` alias moves only when a new version beats both the current
champion and the pretrained model, all three measured on the same test people,
none of whom either trained model saw (each model directory records its
train/validation/test people), under a lock so that concurrent runs cannot both
promote. Numbers are only compared where the pair counts support them
(:func:`facestream.trainer.metrics.selection_key`).
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream.errors import FacestreamError
from facestream.stream.config import expand_sqlite_uri
from facestream.trainer.metrics import selection_key

log = logging.getLogger(__name__)

CHAMPION = "champion"
SPLIT_TAG = "test_split"
LOCK_TAG = "facestream.champion_lock"


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
    with local_lock(uri, "setup"):  # two runs starting at once on a new store: one creates its tables
        check_store(uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)  # facestream keeps its model registry in the tracking store
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        if client.get_experiment_by_name(experiment) is None:
            client.create_experiment(experiment, artifact_location=artifact_root(uri))
        mlflow.set_experiment(experiment)
    return uri


@contextmanager
def local_lock(uri: str, what: str) -> Iterator[None]:
    """An exclusive ``flock`` on a file beside a local store (SQLite file or folder); nothing for a server
    (which serialises its own writes). The OS releases it if the process dies."""
    path = _local_store_path(uri)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.{what}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def split_fingerprint(test_split: str, max_pairs: int, seed: int) -> str:
    """What makes two runs' test numbers comparable: the same people and images, pairs and seed."""
    import hashlib

    return hashlib.sha256(f"{test_split}|{max_pairs}|{seed}".encode()).hexdigest()[:16]


def is_better(new: dict[str, float], old: dict[str, float]) -> bool:
    """TAR at the smallest FAR both sets support (then AUC) decides; an exact tie is not better."""
    key, a = selection_key(new, old)
    _, b = selection_key(old, new)
    return a > b


def _summary(new: dict[str, float], old: dict[str, float]) -> str:
    key, _ = selection_key(new, old)
    return f"{key} {new[key]:.4f} vs {old[key]:.4f}, auc {new['auc']:.4f} vs {old['auc']:.4f}"


@dataclass
class Promotion:
    """The outcome of registering a model version."""

    version: str
    promoted: bool
    reason: str
    previous: str | None = None


@contextmanager
def champion_lock(uri: str, name: str, holder: str, timeout: float = 1800.0) -> Iterator[None]:
    """One promotion at a time per registered model: read the champion, measure, move the alias, atomically.

    A local store (SQLite file or folder) is locked with ``flock`` on a file beside it, which the
    OS releases if the process dies. A tracking server has no lock of its own: a registered-model
    tag is claimed, read back after a pause and expires after ``timeout`` (best effort, documented).
    """
    if _local_store_path(uri) is not None:
        with local_lock(uri, f"{name}.champion"):
            yield
        return
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    deadline = time.time() + timeout
    mine = f"{holder}:{time.time():.3f}"
    while True:
        tags = client.get_registered_model(name).tags
        current = tags.get(LOCK_TAG, "")
        stale = not current or time.time() - float(current.rsplit(":", 1)[-1] or 0) > timeout
        if stale:
            client.set_registered_model_tag(name, LOCK_TAG, mine)
            time.sleep(1.0)  # a rival that wrote at the same moment: the last write wins, both read it back
            if client.get_registered_model(name).tags.get(LOCK_TAG) == mine:
                break
        if time.time() > deadline:
            raise FacestreamError(f"Another run holds the champion lock of {name} ({current}).",
                                  f"Wait for it, or delete the tag {LOCK_TAG} of the registered model.")
        time.sleep(2.0)
    try:
        yield
    finally:
        client.delete_registered_model_tag(name, LOCK_TAG)


def _local_store_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.replace("file://", "")) / ".facestream"
    return None


# measure(version or None for the pretrained model, or "new", people) -> metrics, None when it cannot
Measure = Callable[[str | None, set[str]], dict[str, float] | None]


def register_model(run_id: str, artifact_path: str, name: str, split: str, test_people: set[str],
                   measure: Measure, trained_people: Callable[[str], set[str] | None],
                   tracking_uri: str | None = None) -> Promotion:
    """Register the logged model directory as a new version; move ``champion`` only if it wins.

    The rule: under :func:`champion_lock`, read the champion; take the test people that neither
    the new model nor the champion trained on (``trained_people(version)`` from its spec.json; a
    champion whose training people are unknown cannot be compared and stays); measure the new
    version, the champion and the pretrained model on those people; promote only when the new one
    beats both (:func:`is_better`). Everything is decided inside the lock, so two concurrent runs
    end with one champion, the better one.

    Args:
        split: fingerprint of the test split (:func:`split_fingerprint`), tagged on the version.
        test_people: the new run's test identities (it trained on none of them).
        measure: measures a model on a set of people (see ``Measure``).
        trained_people: the identities a registered version trained or calibrated on.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or mlflow.get_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="facestream face embedders (model directory: "
                                                             "spec.json, model.onnx, weights.pt)")
        except MlflowException:
            pass  # a concurrent run created it first
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = str(client.create_model_version(name, source=source, run_id=run_id, tags={SPLIT_TAG: split}).version)
    with champion_lock(uri, name, run_id):
        try:
            champ: Any = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            champ = None
        people = set(test_people)
        if champ is not None:
            seen = trained_people(str(champ.version))
            if seen is None:
                return Promotion(version, False, f"champion v{champ.version} does not record the people it trained "
                                 "on, so no test people are known to be unseen by it; champion kept",
                                 str(champ.version))
            people -= seen
        new = measure("new", people)
        if new is None:
            return Promotion(version, False, f"fewer than two test people unseen by both models "
                             f"({len(people)} left); not comparable, champion kept",
                             str(champ.version) if champ is not None else None)
        base = measure(None, people)
        assert base is not None
        client.set_model_version_tag(name, version, "compared_on_people", str(len(people)))
        if not is_better(new, base):
            return Promotion(version, False, f"does not beat the pretrained model on {len(people)} unseen people: "
                             f"{_summary(new, base)}", str(champ.version) if champ is not None else None)
        if champ is not None:
            old = measure(str(champ.version), people)
            if old is None:
                return Promotion(version, False, f"champion v{champ.version} could not be measured; kept",
                                 str(champ.version))
            if not is_better(new, old):
                return Promotion(version, False, f"does not beat the champion on {len(people)} people neither "
                                 f"trained on: {_summary(new, old)} (champion v{champ.version})", str(champ.version))
            client.set_registered_model_alias(name, CHAMPION, version)
            return Promotion(version, True, f"beats the champion v{champ.version} ({_summary(new, old)}) and the "
                             f"pretrained model ({_summary(new, base)}) on {len(people)} people neither trained on",
                             str(champ.version))
        client.set_registered_model_alias(name, CHAMPION, version)
        return Promotion(version, True, f"first champion: beats the pretrained model on {len(people)} unseen "
                         f"people ({_summary(new, base)})")
