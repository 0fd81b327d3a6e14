"""Embedding engines: the real dlib ResNet through ONNX Runtime and torch, on real face chips.

Chips are made with dlib itself (HOG detector, 5-point landmarks, get_face_chip),
independently of our own alignment, so these tests check only the engines.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.stream.config import EmbedderConfig
from facestream.stream.engine.runtimes import (
    available_engines,
    create_runtime,
    normalize_nchw,
    validate_chips,
)
from facestream.stream.engine.runtimes.onnxrt import OnnxRuntimeModel
from facestream.stream.engine.runtimes.tensorrt import available as trt_available
from facestream.stream.engine.runtimes.tensorrt import engine_cache_key
from facestream.stream.engine.runtimes.torchrt import TorchModel, bucket_for, buckets_for
from tests.conftest import EXAMPLES, single_person_photos

# ----------------------------------------------------------------------------- fixtures


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    return Path(spec.origin).parent / "models"


@pytest.fixture(scope="session")
def labelled_chips(data_dir) -> tuple[np.ndarray, list[str]]:
    """150x150 dlib chips (uint8 RGB) of the faces in the face_recognition example photos, with identities."""
    import dlib

    from facestream.stream.engine.imageio import load_image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(_models_dir() / "shape_predictor_5_face_landmarks.dat"))
    chips, labels = [], []
    for identity, path in single_person_photos(EXAMPLES):
        rgb = load_image(path)
        scale = 1.0
        if max(rgb.shape[:2]) > 800:  # the HOG detector is slow on big photos; faces stay large
            import cv2

            scale = 800 / max(rgb.shape[:2])
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(rgb)
        boxes = detector(rgb, 0)
        for box in boxes:
            chips.append(np.asarray(dlib.get_face_chip(rgb, predictor(rgb, box), size=150, padding=0.25)))
            labels.append(identity if len(boxes) == 1 else "?")
    assert len(chips) >= 10, f"only {len(chips)} faces found in {EXAMPLES}"
    return np.stack(chips).astype(np.uint8), labels


@pytest.fixture(scope="session")
def real_chips(labelled_chips) -> np.ndarray:
    return labelled_chips[0]


@pytest.fixture(scope="session")
def many_chips(real_chips) -> np.ndarray:
    """70 distinct real chips (the photos, mirrored and shifted by a few pixels)."""
    variants = [real_chips, real_chips[:, :, ::-1], np.roll(real_chips, 3, axis=1), np.roll(real_chips, -3, axis=2)]
    out = np.concatenate(variants)
    while len(out) < 70:
        out = np.concatenate([out, np.roll(out, 5, axis=1)])
    return np.ascontiguousarray(out[:70])


@pytest.fixture(scope="session")
def spec():
    """The real dlib ResNet, converted by facestream.stream.engine.model_store (cached after the first run)."""
    from facestream.stream.engine.model_store import get_model

    return get_model("dlib-resnet-v1")


@pytest.fixture(scope="session")
def ort_cpu(spec):
    emb = OnnxRuntimeModel(spec, max_batch=32, device="cpu")
    yield emb
    emb.close()


@pytest.fixture(scope="session")
def torch_cpu(spec):
    emb = TorchModel(spec, max_batch=32, device="cpu")
    yield emb
    emb.close()


@pytest.fixture(scope="session")
def reference(ort_cpu, real_chips) -> np.ndarray:
    """Each chip embedded on its own (batch of 1): what batching must reproduce."""
    return np.concatenate([ort_cpu.run(c[None]) for c in real_chips])


# ----------------------------------------------------------------------------- real model


def test_onnxruntime_and_torch_give_the_same_descriptors(ort_cpu, torch_cpu, real_chips):
    a = ort_cpu.run(real_chips)
    b = torch_cpu.run(real_chips)
    assert a.shape == b.shape == (len(real_chips), 128) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    # real descriptors: roughly unit length (dlib's are), and different faces differ
    norms = np.linalg.norm(a, axis=1)
    assert np.all((norms > 0.2) & (norms < 2.0)), norms
    assert np.abs(a[0] - a[-1]).max() > 0.01


def test_descriptors_match_dlib_itself(ort_cpu, real_chips):
    """The engine's output on a chip is dlib's own descriptor for that chip."""
    import dlib

    net = dlib.face_recognition_model_v1(str(_models_dir() / "dlib_face_recognition_resnet_model_v1.dat"))
    ours = ort_cpu.run(real_chips[:4])
    theirs = np.array([np.asarray(net.compute_face_descriptor(c)) for c in real_chips[:4]], np.float32)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_same_person_is_closer_than_different_people(ort_cpu, labelled_chips):
    chips, labels = labelled_chips
    known = [i for i, name in enumerate(labels) if name != "?"]
    e = ort_cpu.run(chips[known])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    names = np.array([labels[i] for i in known])
    sim = e @ e.T
    same = (names[:, None] == names[None, :]) & ~np.eye(len(names), dtype=bool)
    different = names[:, None] != names[None, :]
    assert same.any() and different.any()
    assert sim[same].mean() > sim[different].mean() + 0.1, (sim[same].mean(), sim[different].mean())


@pytest.mark.parametrize("engine", ["ort_cpu", "torch_cpu"])
def test_batching_matches_unbatched(engine, request, real_chips, reference, many_chips):
    emb = request.getfixturevalue(engine)
    assert emb.max_batch == 32
    one = emb.run(real_chips[:1])
    np.testing.assert_allclose(one, reference[:1], atol=1e-4, rtol=0)
    whole = emb.run(real_chips)  # all at once: one batch of len(real_chips) <= 32
    np.testing.assert_allclose(whole, reference, atol=1e-4, rtol=0)
    many = emb.run(many_chips)  # 70 chips -> batches of 32, 32, 6
    assert many.shape == (70, 128)
    singles = np.concatenate([emb.run(many_chips[i : i + 1]) for i in (0, 31, 32, 63, 64, 69)])
    np.testing.assert_allclose(many[[0, 31, 32, 63, 64, 69]], singles, atol=1e-4, rtol=0)
    head = emb.run(many_chips[:40])  # other batch boundaries, same rows
    np.testing.assert_allclose(many[:40], head, atol=1e-4, rtol=0)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
@pytest.mark.parametrize("engine", ["ort_cpu", "torch_cpu"])
def test_threads_embedding_at_once_get_their_own_results(engine, request, many_chips):
    emb = request.getfixturevalue(engine)
    expected = emb.run(many_chips)
    slices = [slice(0, 5), slice(5, 40), slice(40, 41), slice(41, 70), slice(10, 30), slice(60, 70)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(slices))

    def work(i: int, s: slice) -> None:
        try:
            start.wait()
            results[i] = emb.run(many_chips[s])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(slices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for i, s in enumerate(slices):
        np.testing.assert_allclose(results[i], expected[s], atol=1e-4, rtol=0)


def test_auto_picks_onnxruntime_cpu_here_and_says_why(spec, caplog):
    caplog.set_level(logging.INFO, logger="facestream.stream.engine.runtimes")
    emb = create_runtime(spec, EmbedderConfig(engine="auto", max_batch=8))
    try:
        assert emb.name == "onnxruntime:CPUExecutionProvider"
        assert isinstance(emb, OnnxRuntimeModel)
        lines = [r.getMessage() for r in caplog.records if "embedder auto" in r.getMessage()]
        assert lines and "running onnxruntime:CPUExecutionProvider" in lines[-1]
        assert "tensorrt" in lines[-1] and "CUDA" in lines[-1]  # why the GPU engines were passed over
    finally:
        emb.close()


def test_explicit_engines_load_by_name(spec, real_chips, reference):
    for engine, name in [("onnxruntime", "onnxruntime:CPUExecutionProvider"), ("torch", "torch:cpu:fp32")]:
        # threads=0: torch.set_num_threads is process-wide and would slow every later test
        with create_runtime(spec, EmbedderConfig(engine=engine, device="cpu", max_batch=4, threads=0)) as emb:
            assert emb.name == name
            np.testing.assert_allclose(emb.run(real_chips[:6]), reference[:6], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- clear errors


def test_explicit_tensorrt_fails_clearly_here(spec):
    ok, why = trt_available()
    assert not ok and "tensorrt" in why.lower()
    with pytest.raises(FacestreamError) as info:
        create_runtime(spec, EmbedderConfig(engine="tensorrt"))
    err = info.value
    assert "tensorrt" in err.problem.lower() and "not importable" in err.problem
    assert "pip install tensorrt" in err.fix and "engine=auto" in err.fix


@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "auto"])
def test_explicit_cuda_fails_clearly_without_a_gpu(spec, engine):
    with pytest.raises(FacestreamError) as info:
        create_runtime(spec, EmbedderConfig(engine=engine, device="cuda"))
    assert "cuda" in str(info.value).lower() and "device=cpu" in info.value.fix
    if engine != "auto":
        assert engine in info.value.problem.lower().replace("onnx runtime", "onnxruntime")


def test_wrong_chips_are_clear_errors(ort_cpu, real_chips):
    with pytest.raises(FacestreamError, match=r"\(n, 150, 150, 3\)") as info:
        ort_cpu.run(np.zeros((2, 112, 112, 3), np.uint8))
    assert "input_size=150" in info.value.fix
    with pytest.raises(FacestreamError, match="one chip"):
        ort_cpu.run(real_chips[0])
    with pytest.raises(FacestreamError, match="uint8"):
        ort_cpu.run(real_chips[:2].astype(np.float32))
    with pytest.raises(FacestreamError, match="RGB"):
        ort_cpu.run(np.zeros((1, 150, 150, 4), np.uint8))
    empty = ort_cpu.run(np.zeros((0, 150, 150, 3), np.uint8))
    assert empty.shape == (0, 128) and empty.dtype == np.float32


def test_closed_embedder_refuses_work(spec, real_chips):
    emb = OnnxRuntimeModel(spec, max_batch=2, device="cpu", threads=1)
    emb.warmup()
    emb.close()
    with pytest.raises(FacestreamError, match="closed"):
        emb.run(real_chips[:1])


def test_missing_onnx_file_is_a_clear_error(spec, tmp_path):
    import dataclasses

    gone = dataclasses.replace(spec, onnx_path=tmp_path / "nope.onnx")
    with pytest.raises(FacestreamError, match="nope.onnx"):
        create_runtime(gone, EmbedderConfig(engine="onnxruntime"))


def test_torch_without_weights_is_a_clear_error(spec):
    import dataclasses

    onnx_only = dataclasses.replace(spec, weights_path=None)
    with pytest.raises(FacestreamError, match="no torch weights") as info:
        create_runtime(onnx_only, EmbedderConfig(engine="torch", device="cpu"))
    assert "engine=onnxruntime" in info.value.fix


# ----------------------------------------------------------------------------- helpers


def test_preprocessing_is_pixel_minus_mean_over_std(spec, real_chips):
    x = normalize_nchw(real_chips[:3], np.asarray(spec.mean, np.float32), spec.std)
    assert x.shape == (3, 3, 150, 150) and x.dtype == np.float32 and x.flags.c_contiguous
    r, g, b = (real_chips[1, 40, 70].astype(np.float64) - np.asarray(spec.mean)) / spec.std
    np.testing.assert_allclose(x[1, :, 40, 70], [r, g, b], atol=1e-6)
    assert validate_chips(list(real_chips[:2]), 150).shape == (2, 150, 150, 3)


def test_cuda_graph_buckets_cover_every_batch():
    assert buckets_for(64) == (1, 8, 32, 64)
    assert buckets_for(100) == (1, 8, 32, 64, 100)
    assert buckets_for(4096) == (1, 8, 32, 64, 256, 1024, 4096)
    assert buckets_for(1) == (1,)
    b = buckets_for(1024)
    assert [bucket_for(n, b) for n in (1, 2, 8, 9, 33, 65, 256, 257, 1024)] == [1, 8, 8, 32, 64, 256, 256, 1024, 1024]
    with pytest.raises(ValueError):
        bucket_for(1025, b)


def test_tensorrt_cache_key_changes_with_everything_the_engine_depends_on(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model-one")
    base = dict(gpu_name="NVIDIA H100 80GB HBM3", trt_version="10.3.0", precision="fp16", max_batch=64)
    key = engine_cache_key(onnx, **base, model_name="dlib-resnet-v1")
    assert key == engine_cache_key(onnx, **base, model_name="dlib-resnet-v1")  # stable
    assert key.startswith("dlib-resnet-v1-nvidia-h100-80gb-hbm3-trt10.3.0-fp16-b64-") and key.endswith(".engine")
    others = {
        engine_cache_key(onnx, **{**base, "gpu_name": "NVIDIA A10"}, model_name="dlib-resnet-v1"),
        engine_cache_key(onnx, **{**base, "trt_version": "10.4.0"}, model_name="dlib-resnet-v1"),
        engine_cache_key(onnx, **{**base, "precision": "fp32"}, model_name="dlib-resnet-v1"),
        engine_cache_key(onnx, **{**base, "max_batch": 1024}, model_name="dlib-resnet-v1"),
    }
    onnx.write_bytes(b"model-two")  # re-exported weights: same name, new content
    others.add(engine_cache_key(onnx, **base, model_name="dlib-resnet-v1"))
    assert key not in others and len(others) == 5


def test_available_engines_reports_each_engine(spec):
    info = available_engines()
    assert info["onnxruntime:CPUExecutionProvider"] == "ok"
    assert info["torch:cpu"] == "ok"
    assert "tensorrt" in info["tensorrt"].lower() and info["tensorrt"] != "ok"
    assert info["torch:cuda"] != "ok" and "CUDA" in info["torch:cuda"]
    assert info["onnxruntime:CUDAExecutionProvider"] != "ok"


def test_auto_plan_here_is_onnxruntime_cpu_with_reasons(spec):
    from facestream.stream.engine.runtimes import auto_plan

    plan, skipped = auto_plan(spec, "auto")
    assert plan == [("onnxruntime", "cpu")]
    assert any(s.startswith("tensorrt:") for s in skipped) and any(s.startswith("torch:cuda:") for s in skipped)
    assert auto_plan(spec, "cpu") == ([("onnxruntime", "cpu")], ["embedder.device=cpu"])
    assert auto_plan(spec, "cuda")[0] == []  # no GPU engine here, and device=cuda never means the CPU


def test_auto_on_cuda_without_a_gpu_engine_says_why_each_was_skipped(spec):
    from facestream.stream.engine.runtimes import auto_plan

    plan, skipped = auto_plan(spec, "cuda")
    assert plan == []
    with pytest.raises(FacestreamError) as info:
        create_runtime(spec, EmbedderConfig(engine="auto", device="cuda"))
    for reason in skipped:  # tensorrt, torch:cuda and the onnxruntime GPU providers, each with its cause
        assert reason in info.value.problem
    assert "device=cpu" in info.value.fix


def test_auto_when_every_candidate_fails_names_the_skipped_ones_too(spec, tmp_path):
    import dataclasses

    gone = dataclasses.replace(spec, onnx_path=tmp_path / "nope.onnx")
    with pytest.raises(FacestreamError, match="No embedding engine could load") as info:
        create_runtime(gone, EmbedderConfig(engine="auto", device="auto"))
    assert "nope.onnx" in info.value.problem and "tensorrt:" in info.value.problem


def test_threads_first_using_the_analyzer_share_one_embedder(monkeypatch):
    """cached_property stopped locking in Python 3.12: the analyzer's own lock must stop a second build."""
    from facestream.stream.config import Config
    from facestream.stream.engine import analyzer as analyzer_module
    from facestream.stream.engine.analyzer import FaceAnalyzer

    built = []
    real = analyzer_module.create_runtime

    def counting(spec, cfg=None):
        built.append(spec.name)
        return real(spec, cfg)

    monkeypatch.setattr(analyzer_module, "create_runtime", counting)
    analyzer = FaceAnalyzer(Config())
    start, seen = threading.Barrier(4), []

    def first_use():
        start.wait()
        seen.append(analyzer.embedder)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(e is seen[0] for e in seen)
    assert analyzer.embedder is seen[0] and analyzer.spec is analyzer.spec
    seen[0].close()
