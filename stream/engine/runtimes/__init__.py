"""Embedding engines: one :class:`ImageModel` interface, several back ends, one factory.

``create_runtime(spec, cfg)`` builds the engine the config asks for. With
``engine: auto`` it takes the fastest one that works here (native TensorRT, then
torch on CUDA, then ONNX Runtime on a GPU provider, then ONNX Runtime on the
CPU) and logs which one runs and why the faster ones were passed over. An
engine asked for by name either loads or fails with a :class:`FacestreamError`
naming the engine, the reason and the fix: never a silent fallback.
"""

from __future__ import annotations

import logging

from facestream.errors import FacestreamError
from facestream.stream.config import DetectorConfig, EmbedderConfig
from facestream.stream.engine.model_store import ModelSpec
from facestream.stream.engine.runtimes import onnxrt, tensorrt, torchrt
from facestream.stream.engine.runtimes.base import ImageModel, normalize_nchw, validate_chips

log = logging.getLogger(__name__)

__all__ = ["ImageModel", "available_engines", "create_runtime", "normalize_nchw", "validate_chips"]

ENGINES = ("tensorrt", "torch", "onnxruntime")
# the config sections that say how a model runs: engine, device, fp16, max_batch, threads
RuntimeSettings = EmbedderConfig | DetectorConfig


def available_engines() -> dict[str, str]:
    """``{engine: "ok" | reason}`` for every engine/device this package knows (for `facestream models info`)."""
    out: dict[str, str] = {}
    ok, why = tensorrt.available()
    out["tensorrt"] = "ok" if ok else why
    model_ok, model_why = torchrt.model_available()
    cuda_ok, cuda_why = torchrt.cuda_available()
    out["torch:cuda"] = cuda_why if not cuda_ok else ("ok" if model_ok else model_why)
    out["torch:cpu"] = "ok" if model_ok else model_why
    for provider, status in onnxrt.provider_status().items():
        out[f"onnxruntime:{provider}"] = status
    return out


def _onnxruntime(spec: ModelSpec, cfg: RuntimeSettings, device: str) -> ImageModel:
    return onnxrt.OnnxRuntimeModel(spec, max_batch=cfg.max_batch, threads=cfg.threads, device=device, fp16=cfg.fp16)


def _torch(spec: ModelSpec, cfg: RuntimeSettings, device: str) -> ImageModel:
    return torchrt.TorchModel(spec, max_batch=cfg.max_batch, device=device, fp16=cfg.fp16, threads=cfg.threads)


def _tensorrt(spec: ModelSpec, cfg: RuntimeSettings, device: str) -> ImageModel:
    if device == "cpu":
        section = _section(spec)
        raise FacestreamError(f"The tensorrt engine runs on CUDA only, but {section}.device=cpu.",
                              f"Set {section}.device=auto or cuda, or pick engine onnxruntime/torch for the CPU.")
    return tensorrt.TensorRTModel(spec, max_batch=cfg.max_batch, fp16=cfg.fp16)


_BUILDERS = {"onnxruntime": _onnxruntime, "torch": _torch, "tensorrt": _tensorrt}


def _section(spec: ModelSpec) -> str:
    """The config section whose settings run this model (for messages)."""
    return "detector" if spec.task == "detect" else "embedder"


def _explicit(spec: ModelSpec, cfg: RuntimeSettings) -> ImageModel:
    """The engine named in ``cfg.engine``, or a FacestreamError naming it, the reason and the fix."""
    build = _BUILDERS[cfg.engine]
    try:
        embedder = build(spec, cfg, cfg.device)
    except FacestreamError as exc:
        if cfg.engine in exc.problem.lower():
            raise
        raise FacestreamError(f"The {cfg.engine} engine cannot load: {exc.problem}", exc.fix) from exc
    log.info("%s: %s (engine %s requested in config)", _section(spec), embedder.name, cfg.engine)
    return embedder


def auto_plan(spec: ModelSpec | None, device: str = "auto") -> tuple[list[tuple[str, str]], list[str]]:
    """Candidates in preference order as ``(engine, device)``, and why faster ones were skipped.

    The first candidate that loads wins; the skip reasons go into the log line so
    a user can see why, say, a GPU engine did not run.
    """
    plan: list[tuple[str, str]] = []
    skipped: list[str] = []
    if device == "cpu":
        skipped.append("embedder.device=cpu")
    else:
        ok, why = tensorrt.available()
        if ok:
            plan.append(("tensorrt", "cuda"))
        else:
            skipped.append(f"tensorrt: {why}")
        cuda_ok, cuda_why = torchrt.cuda_available()
        model_ok, model_why = torchrt.model_available(spec)
        if cuda_ok and model_ok:
            plan.append(("torch", "cuda"))
        else:
            skipped.append(f"torch:cuda: {cuda_why if not cuda_ok else model_why}")
        if any(s == "ok" and p != onnxrt.CPU for p, s in onnxrt.provider_status().items()):
            plan.append(("onnxruntime", "cuda"))
        else:
            skipped.append("onnxruntime:CUDA/TensorRT providers: not in this onnxruntime build")
    if device != "cuda":  # device=cuda was asked for: never end up on the CPU
        plan.append(("onnxruntime", "cpu"))
    return plan, skipped


def create_runtime(spec: ModelSpec, cfg: RuntimeSettings | None = None) -> ImageModel:
    """The runtime for ``spec`` as configured by ``cfg`` (the ``embedder`` or ``detector`` config section).

    Raises:
        FacestreamError: an explicitly requested engine (or device) cannot run here.
    """
    if cfg is None:
        cfg = EmbedderConfig()
    section = _section(spec)
    if cfg.engine == "mediapipe":  # MediaPipe's graph is the detector's reference engine, not a runtime
        raise FacestreamError(f"{section}.engine=mediapipe cannot run {spec.name}.",
                              f"Use auto, onnxruntime, torch or tensorrt for {section}.engine.")
    if cfg.engine != "auto":
        return _explicit(spec, cfg)
    errors: list[str] = []
    plan, skipped = auto_plan(spec, cfg.device)
    if not plan:  # only device=cuda with no GPU engine usable: say why each one was passed over
        raise FacestreamError(f"{section}.device={cfg.device} was requested but no engine can use a GPU here: "
                              + "; ".join(skipped) + ".",
                              "Install CUDA builds of torch/onnxruntime (or TensorRT) on an NVIDIA GPU machine, "
                              f"or set {section}.device=cpu (or auto).")
    for engine, device in plan:
        try:
            embedder = _BUILDERS[engine](spec, cfg, device)
        except FacestreamError as exc:
            # Loud, not silent: the next candidate runs and the log says why this one did not.
            log.warning("%s auto: %s on %s failed to load (%s); trying the next engine", section, engine, device, exc)
            errors.append(f"{engine}:{device}: {exc}")
            continue
        passed_over = skipped + errors
        why = "; ".join(passed_over) if passed_over else "it is the fastest engine available"
        log.info("%s auto: running %s (passed over: %s)", section, embedder.name, why)
        return embedder
    what = "detection" if spec.task == "detect" else "embedding"
    raise FacestreamError(f"No {what} engine could load: " + " | ".join(skipped + errors) + ".",
                          "Fix the cause named for the engine you want; the log has each engine's error.")
