"""MLflow registry logic against a real SQLite MLflow store in a temporary folder."""

from __future__ import annotations

import socket

import mlflow
import pytest

from facestream.errors import FacestreamError
from facestream.stream.engine.model_store import ModelSpec, get_model
from facestream.trainer import tracking


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESTREAM_CACHE", str(tmp_path / "cache"))
    uri = tracking.setup(f"sqlite:///{tmp_path}/mlflow.db", "facestream-test")
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def log_model(tmp_path, tag: str) -> str:
    """A run that logs a (tiny, not runnable) model directory; returns the run id."""
    d = tmp_path / f"model-{tag}"
    d.mkdir()
    (d / "model.onnx").write_bytes(tag.encode())
    ModelSpec(name=tag, model_id=f"{tag}@000000000000", onnx_path=d / "model.onnx", threshold=0.5).save(d)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(d), artifact_path="model")
    return run.info.run_id


def metrics(tar: float, auc: float) -> dict[str, float]:
    return {"tar_far1e-2": tar, "auc": auc}


NAME = "facestream-embedder"
PEOPLE = {f"p{k}" for k in range(1, 9)}


def register(tmp_path, tag: str, new: dict, base: dict, champions=None, trained=None,
             seen: list | None = None, delay: float = 0.0, run_id: str | None = None) -> tracking.Promotion:
    """Register a model whose measurements are given: ``new`` for it, ``base`` for the pretrained model,
    ``champions[version]`` for registered versions (what the real trainer measures on the test chips)."""
    import time

    def measure(version, people):
        if seen is not None:
            seen.append((version, frozenset(people)))
        time.sleep(delay)  # re-evaluating a champion takes a while: a rival could act meanwhile
        if version == "new":
            return new
        if version is None:
            return base
        return champions(version) if callable(champions) else (champions or {}).get(version)

    return tracking.register_model(run_id or log_model(tmp_path, tag), "model", NAME, "split1", PEOPLE, measure,
                                   trained or (lambda v: set()))


def test_champion_must_beat_the_pretrained_model_and_the_champion(tmp_path, store):
    pre = metrics(0.80, 0.95)
    worse = register(tmp_path, "0", metrics(0.70, 0.99), pre)
    assert not worse.promoted and "does not beat the pretrained model" in worse.reason
    tie = register(tmp_path, "t", metrics(0.80, 0.95), pre)
    assert not tie.promoted  # as good as the pretrained model changes nothing: no champion
    first = register(tmp_path, "a", metrics(0.85, 0.95), pre)
    assert first.promoted and first.version == "3" and "first champion" in first.reason
    below = register(tmp_path, "b", metrics(0.82, 0.99), pre, {"3": metrics(0.85, 0.95)})
    assert not below.promoted and "does not beat the champion" in below.reason
    auc_wins = register(tmp_path, "c", metrics(0.85, 0.96), pre, {"3": metrics(0.85, 0.95)})
    assert auc_wins.promoted and auc_wins.previous == "3"
    # a champion that turned out weak on these people is still not replaced by a model worse than pretrained
    regress = register(tmp_path, "d", metrics(0.78, 0.97), pre, {"5": metrics(0.70, 0.90)})
    assert not regress.promoted and "pretrained" in regress.reason
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == auc_wins.version
    spec = get_model(f"models:/{NAME}@champion", tracking_uri=store)  # the runtime resolves the alias
    assert spec.name == "c" and spec.onnx_path.read_bytes() == b"c"


def test_models_are_compared_on_people_neither_trained_on(tmp_path, store):
    pre = metrics(0.5, 0.9)
    assert register(tmp_path, "a", metrics(0.9, 0.99), pre).promoted
    seen: list = []
    champion_trained = {"p1", "p2", "p3", "p4", "p5"}  # it trained on five of the new run's test people
    r = register(tmp_path, "b", metrics(0.95, 0.99), pre, {"1": metrics(0.9, 0.99)},
                 trained=lambda v: champion_trained if v == "1" else None, seen=seen)
    assert r.promoted and "3 people neither trained on" in r.reason
    assert {people for _, people in seen} == {frozenset({"p6", "p7", "p8"})}  # all three models, same people
    # a champion that does not say whom it trained on cannot be compared fairly: it stays
    kept = register(tmp_path, "c", metrics(0.99, 0.999), pre, {"2": metrics(0.95, 0.99)}, trained=lambda v: None)
    assert not kept.promoted and "does not record the people" in kept.reason
    # no unseen people left: not comparable
    none_left = register(tmp_path, "d", None, pre, trained=lambda v: set(PEOPLE))
    assert not none_left.promoted and "unseen by both" in none_left.reason


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_two_concurrent_registrations_end_with_the_better_champion(tmp_path, store):
    import threading

    pre = metrics(0.5, 0.9)
    truth: dict[str, dict] = {}  # what each registered model really scores, found by its name

    def measured(version: str) -> dict:
        return truth[get_model(f"models:/{NAME}/{version}", tracking_uri=store).name]

    results: dict[str, tracking.Promotion] = {}

    def run(tag: str, m: dict, wait: float, run_id: str) -> None:
        import time

        time.sleep(wait)
        results[tag] = register(tmp_path, tag, m, pre, measured, delay=1.0, run_id=run_id)

    for k, better_first in enumerate((True, False)):  # each round's two both beat the last round's champion

        good, meh = (f"good{better_first}", f"meh{better_first}")
        truth[good], truth[meh] = metrics(0.95 + 0.02 * k, 0.999), metrics(0.94 + 0.02 * k, 0.99)
        runs = {tag: log_model(tmp_path, tag) for tag in (good, meh)}  # logged first: runs are per process
        threads = [threading.Thread(target=run, args=(good, truth[good], 0.0 if better_first else 0.3, runs[good])),
                   threading.Thread(target=run, args=(meh, truth[meh], 0.3 if better_first else 0.0, runs[meh]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
        champion = client.get_model_version_by_alias(NAME, "champion")
        assert str(champion.version) == results[good].version, {k: v.reason for k, v in results.items()}
        assert not results[meh].promoted or int(results[meh].version) < int(results[good].version)


def test_split_fingerprint_names_pairs_and_seed():
    a = tracking.split_fingerprint("abc", 200_000, 0)
    assert a == tracking.split_fingerprint("abc", 200_000, 0)
    assert a != tracking.split_fingerprint("abc", 20_000, 0) and a != tracking.split_fingerprint("abc", 200_000, 1)


def test_is_better_orders_by_tar_then_auc_on_what_both_support():
    assert tracking.is_better(metrics(0.9, 0.5), metrics(0.8, 0.99))
    assert not tracking.is_better(metrics(0.8, 0.99), metrics(0.9, 0.5))
    assert tracking.is_better(metrics(0.8, 0.99), metrics(0.8, 0.98))
    # TAR at 1e-3 counts only when both sides have enough pairs for it
    assert tracking.is_better({**metrics(0.9, 0.99), "tar_far1e-3": 0.1}, metrics(0.8, 0.99))
    assert tracking.is_better({"auc": 0.99}, {"auc": 0.98})  # no FAR supported: AUC


def test_unreachable_server_is_a_clear_error_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FacestreamError, match="not reachable"):
        tracking.setup(f"http://127.0.0.1:{port}", "x")


def test_unwritable_sqlite_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(FacestreamError, match="MLflow store"):
        tracking.setup(f"sqlite:///{blocker}/sub/mlflow.db", "x")


def test_sqlite_uri_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    uri = tracking.resolve_tracking_uri("sqlite:///~/deep/er/mlflow.db")
    assert uri == f"sqlite:///{tmp_path}/deep/er/mlflow.db" and (tmp_path / "deep" / "er").is_dir()
