"""Model specs, the converted-model cache and model resolution (names, directories, MLflow URIs)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.stream.engine.model_store import (
    ModelSpec,
    cache_dir,
    file_sha256,
    get_model,
    list_models,
    model_info,
    prepare_model,
)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """An empty cache for this module; the one conversion here is shared by its tests."""
    root = tmp_path_factory.mktemp("facestream-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACESTREAM_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def prepared(model_cache) -> ModelSpec:
    return prepare_model("dlib-resnet-v1")


def _spec(directory, **kw) -> ModelSpec:
    (directory / "model.onnx").write_bytes(b"onnx")
    (directory / "weights.pt").write_bytes(b"pt")
    fields = dict(name="tiny", model_id="tiny@0123456789ab", onnx_path=directory / "model.onnx",
                  weights_path=directory / "weights.pt", mean=(1, 2, 3), threshold=0.5, architecture="tiny")
    fields.update(kw)
    return ModelSpec(**fields)


def test_spec_round_trip_and_relocation(tmp_path):
    src = tmp_path / "a"
    src.mkdir()
    spec = _spec(src)
    spec.save(src)
    stored = json.loads((src / "spec.json").read_text())
    assert stored["onnx_path"] == "model.onnx" and stored["weights_path"] == "weights.pt"
    assert ModelSpec.load(src) == spec
    assert ModelSpec.load(src / "spec.json") == spec
    moved = tmp_path / "b"
    shutil.move(src, moved)  # a model directory can be copied anywhere (MLflow, another machine)
    loaded = ModelSpec.load(moved)
    assert loaded.onnx_path == moved / "model.onnx" and loaded.weights_path == moved / "weights.pt"
    assert (loaded.name, loaded.model_id, loaded.mean, loaded.threshold) == ("tiny", spec.model_id, (1.0, 2.0, 3.0),
                                                                             0.5)
    assert get_model(str(moved)) == loaded
    assert get_model(moved / "model.onnx") == loaded


def test_spec_errors(tmp_path):
    with pytest.raises(FacestreamError, match="no spec.json"):
        ModelSpec.load(tmp_path)
    spec = _spec(tmp_path)
    spec.save(tmp_path)
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(FacestreamError, match="model.onnx .* is missing"):
        ModelSpec.load(tmp_path)
    (tmp_path / "spec.json").write_text('{"name": "x", "bogus": 1}')
    with pytest.raises(FacestreamError, match="not a valid model spec"):
        ModelSpec.load(tmp_path)


def test_unknown_names_and_paths():
    with pytest.raises(FacestreamError) as err:
        get_model("dlib-resnet-v2")
    assert "Unknown model 'dlib-resnet-v2'" in str(err.value) and "dlib-resnet-v1" in str(err.value)
    with pytest.raises(FacestreamError, match="does not exist"):
        get_model("/no/such/model/dir")
    with pytest.raises(FacestreamError, match="Unknown model"):
        prepare_model("nope")
    assert list_models() == ["dlib-resnet-v1"]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FACESTREAM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FACESTREAM_CACHE")
    assert cache_dir().name == "facestream"


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_prepare_writes_a_complete_model_keyed_by_the_source_hash(prepared, model_cache):
    from facestream.stream.engine.model_store import _dlib_resnet_source

    digest = file_sha256(_dlib_resnet_source())[:12]
    assert prepared.model_id == f"dlib-resnet-v1@{digest}"
    directory = model_cache / "models" / prepared.model_id
    assert prepared.onnx_path == directory / "model.onnx"
    assert sorted(p.name for p in directory.iterdir()) == ["model.onnx", "spec.json", "weights.pt"]
    assert [p.name for p in (model_cache / "models").iterdir()] == [prepared.model_id]  # no temp dirs left
    got = (prepared.input_size, prepared.padding, prepared.landmarks, prepared.embedding_dim)
    assert got == (150, 0.25, "dlib5", 128)
    assert prepared.std == 256.0 and prepared.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert prepared.architecture == "dlib_resnet" and 0 < prepared.threshold < 1


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_second_prepare_reuses_the_files(prepared, monkeypatch):
    import facestream.stream.engine.model_store as models

    def must_not_convert(*args):
        raise AssertionError("a cached model was converted again")

    builtin = models.BUILTINS["dlib-resnet-v1"]
    monkeypatch.setitem(models.BUILTINS, "dlib-resnet-v1", dataclasses.replace(builtin, convert=must_not_convert))
    mtimes = {p: p.stat().st_mtime_ns for p in prepared.onnx_path.parent.iterdir()}
    assert get_model("dlib-resnet-v1") == prepared
    assert prepare_model("dlib-resnet-v1") == prepared
    assert {p: p.stat().st_mtime_ns for p in prepared.onnx_path.parent.iterdir()} == mtimes
    with pytest.raises(AssertionError, match="converted again"):
        prepare_model("dlib-resnet-v1", force=True)
    assert ModelSpec.load(prepared.onnx_path.parent) == prepared  # a failed forced conversion keeps the old one


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_prepared_model_runs_in_onnxruntime_and_torch(prepared):
    import onnxruntime as ort
    import torch

    from facestream.stream.engine.networks import create_model

    x = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 3, 150, 150)).astype(np.float32)
    session = ort.InferenceSession(str(prepared.onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    model = create_model(prepared.architecture, pretrained=False, mean_rgb=prepared.mean)
    model.load_state_dict(torch.load(prepared.weights_path))
    with torch.no_grad():
        torch_out = model.eval()(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (2, prepared.embedding_dim)
    assert np.abs(onnx_out - torch_out).max() < 1e-5


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_model_info(prepared):
    info = model_info(prepared)
    assert info["model_id"] == prepared.model_id
    assert info["onnx_bytes"] > 10_000_000 and info["weights_bytes"] > 10_000_000
    assert "ResNet" in info["description"]
    json.dumps(info)  # ready for `facestream models info --json`


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_mlflow_run_and_registered_model(prepared, tmp_path, monkeypatch):
    import mlflow
    monkeypatch.chdir(tmp_path)  # MLflow writes nothing into the checkout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the store the trainer uses
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("facestream-test", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(prepared.onnx_path.parent), artifact_path="model")
    client.set_terminated(run.info.run_id)

    from_run = get_model(f"runs:/{run.info.run_id}/model", tracking_uri=uri)
    assert from_run.model_id == prepared.model_id
    assert from_run.onnx_path.read_bytes() == prepared.onnx_path.read_bytes()

    client.create_registered_model("facestream-test")
    version = client.create_model_version(
        "facestream-test", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    from_registry = get_model(f"models:/facestream-test/{version.version}", tracking_uri=uri)
    assert from_registry.model_id == prepared.model_id and from_registry.onnx_path.is_file()

    with pytest.raises(FacestreamError, match="could not provide models:/nobody/1"):
        get_model("models:/nobody/1", tracking_uri=uri)


def test_mlflow_server_not_reachable(monkeypatch, model_cache):
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(FacestreamError, match="not reachable"):
        get_model("models:/facestream-embedder/1", tracking_uri=f"http://127.0.0.1:{free_port()}")
