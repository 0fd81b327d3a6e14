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


def test_champion_moves_only_for_a_better_model_on_the_same_split(tmp_path, store):
    name = "facestream-embedder"
    below_baseline = tracking.register_model(log_model(tmp_path, "0"), "model", name, metrics(0.5, 0.9), "split1",
                                             baseline=metrics(0.6, 0.9))
    assert not below_baseline.promoted and "worse than the pretrained" in below_baseline.reason
    first = tracking.register_model(log_model(tmp_path, "a"), "model", name, metrics(0.80, 0.95), "split1",
                                    baseline=metrics(0.80, 0.95))
    assert first.promoted and first.version == "2"
    worse = tracking.register_model(log_model(tmp_path, "b"), "model", name, metrics(0.70, 0.99), "split1")
    assert not worse.promoted and "does not beat" in worse.reason
    tie = tracking.register_model(log_model(tmp_path, "c"), "model", name, metrics(0.80, 0.95), "split1")
    assert not tie.promoted
    auc_wins = tracking.register_model(log_model(tmp_path, "d"), "model", name, metrics(0.80, 0.96), "split1")
    assert auc_wins.promoted and auc_wins.previous == "2"
    other = tracking.register_model(log_model(tmp_path, "e"), "model", name, metrics(0.99, 0.999), "split2")
    assert not other.promoted and "another test split" in other.reason
    # measured again on split2, the champion is worse: the new version wins
    measured = tracking.register_model(log_model(tmp_path, "f"), "model", name, metrics(0.99, 0.999), "split2",
                                       champion_metrics_on_split=lambda v: metrics(0.5, 0.9))
    assert measured.promoted and "re-evaluated" in measured.reason
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    assert str(client.get_model_version_by_alias(name, "champion").version) == measured.version

    # the runtime resolves the alias to a model directory
    spec = get_model(f"models:/{name}@champion", tracking_uri=store)
    assert spec.name == "f" and spec.onnx_path.read_bytes() == b"f"


def test_is_better_orders_by_tar_then_auc():
    assert tracking.is_better(metrics(0.9, 0.5), metrics(0.8, 0.99))
    assert not tracking.is_better(metrics(0.8, 0.99), metrics(0.9, 0.5))
    assert tracking.is_better(metrics(0.8, 0.99), metrics(0.8, 0.98))


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
