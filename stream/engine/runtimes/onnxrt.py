"""ONNX Runtime engine: the portable default (CPU), with CUDA/TensorRT providers when installed.

The CPU session is tuned for throughput on few cores: full graph optimisation
(conv+bias+activation fusion, NCHWc layouts) and one intra-op pool sized to the
cores we were given. The provider that actually runs is read back from the
session and logged, because ONNX Runtime quietly drops a provider it cannot load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.model_store import ModelSpec, cache_dir
from facestream.stream.engine.runtimes.base import ImageModel

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


def provider_status() -> dict[str, str]:
    """``{provider: "ok" | reason}`` for the providers this package cares about."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover
        return {p: f"onnxruntime is not installed ({exc})" for p in (TENSORRT, CUDA, CPU)}
    have = set(ort.get_available_providers())
    hint = "this onnxruntime build lacks it (install onnxruntime-gpu on a CUDA machine)"
    return {p: ("ok" if p in have else hint) for p in (TENSORRT, CUDA, CPU)}


def cpu_threads(threads: int) -> int:
    """Intra-op threads: ``threads`` if set, else every core this process may use."""
    if threads > 0:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _trt_cache_dir() -> Path:
    path = Path(cache_dir()) / "onnxruntime-trt"
    path.mkdir(parents=True, exist_ok=True)
    return path


def choose_providers(device: str, fp16: bool) -> list[Any]:
    """Provider list in preference order for ``device`` ("auto", "cpu", "cuda").

    Raises:
        FacestreamError: ``device="cuda"`` but this onnxruntime has no GPU provider.
    """
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    providers: list[Any] = []
    if device in ("auto", "cuda"):
        if TENSORRT in have:
            providers.append((TENSORRT, {
                "trt_fp16_enable": bool(fp16),
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(_trt_cache_dir()),
            }))
        if CUDA in have:
            providers.append((CUDA, {"device_id": 0}))
        if device == "cuda" and not providers:
            raise FacestreamError(
                "ONNX Runtime cannot run on CUDA: this build has no CUDA or TensorRT execution provider "
                f"(it has {', '.join(sorted(have))}).",
                "Install onnxruntime-gpu on a machine with an NVIDIA GPU, or set embedder.device=cpu.",
            )
    providers.append(CPU)
    return providers


class OnnxRuntimeModel(ImageModel):
    """Runs the spec's ONNX file with ONNX Runtime.

    Args:
        spec: the model spec; ``spec.onnx_path`` must exist.
        max_batch: largest batch per ``session.run``.
        threads: intra-op threads on CPU; 0 = all cores available to this process.
        device: "auto" (GPU providers if present, else CPU), "cpu" or "cuda".
        fp16: half precision for the TensorRT execution provider.
    """

    def __init__(self, spec: ModelSpec, max_batch: int = 64, threads: int = 0, device: str = "auto",
                 fp16: bool = True):
        super().__init__(spec, max_batch)
        import onnxruntime as ort

        path = Path(spec.onnx_path)
        if not path.is_file():
            raise FacestreamError(
                f"ONNX file for model '{spec.name}' not found at {path}.",
                "Run `facestream models prepare` (or check the model spec's onnx_path).",
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = cpu_threads(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: several sessions (detector ranges, embedder) share few
        # cores with the decoder, and a spinning pool steals them from the others.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        requested = choose_providers(device, fp16)
        try:
            self.session: ort.InferenceSession | None = ort.InferenceSession(str(path), sess_options=opts,
                                                                              providers=requested)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise FacestreamError(
                f"ONNX Runtime could not load {path} ({exc}).",
                "Delete the cached file so it is exported again, or pick another engine.",
            ) from exc
        self.providers: list[str] = list(self.session.get_providers())
        wanted = [p if isinstance(p, str) else p[0] for p in requested]
        if device == "cuda" and self.providers[0] == CPU:
            raise FacestreamError(
                f"ONNX Runtime was asked for CUDA but only {CPU} loaded (requested {wanted}).",
                "Check the CUDA/cuDNN libraries onnxruntime-gpu needs, or set embedder.device=cpu.",
            )
        if self.providers[0] != wanted[0]:
            log.warning("onnxruntime: requested %s but %s runs (provider failed to load)", wanted[0], self.providers[0])
        self.name = f"onnxruntime:{self.providers[0]}"
        self.threads = opts.intra_op_num_threads
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._output_name = self.session.get_outputs()[0].name
        log.info(
            "onnxruntime %s: model %s, providers %s, %d intra-op threads, max_batch %d",
            ort.__version__, spec.name, self.providers, self.threads, self.max_batch,
        )

    def _infer(self, chips: np.ndarray) -> np.ndarray:
        x = self.preprocess(chips)
        assert self.session is not None  # embed() refuses a closed engine
        (y,) = self.session.run([self._output_name], {self._input_name: x})
        return np.asarray(y, np.float32)

    def _release(self) -> None:
        self.session = None
