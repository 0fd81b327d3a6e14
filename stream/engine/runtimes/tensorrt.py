"""Native TensorRT engine: an fp16 engine built from the model's ONNX file, cached on disk.

Building a TensorRT engine takes minutes and the result is only valid for one
GPU model and one TensorRT version, so the serialized engine is stored under
``facestream.stream.engine.model_store.cache_dir()/tensorrt`` with a name derived from everything it
depends on (GPU name, TensorRT version, ONNX file hash, precision, batch
range); any change yields a new file instead of a stale engine. Buffers are
torch CUDA tensors, so pre-processing runs on the GPU as in the torch engine.

``import tensorrt`` is guarded: on machines without it :func:`available` says why,
and only an explicit ``engine: tensorrt`` request turns that into an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.model_store import ModelSpec, cache_dir, file_sha256
from facestream.stream.engine.runtimes.base import ImageModel
from facestream.stream.engine.runtimes.torchrt import cuda_available

log = logging.getLogger(__name__)

INSTALL_FIX = (
    "Install TensorRT's Python package (`pip install tensorrt`, matching your CUDA) and a CUDA build of torch "
    "on a machine with an NVIDIA GPU, or set embedder.engine=auto (or onnxruntime / torch)."
)


def _import_trt():
    """The tensorrt module, or None and the reason it cannot be used."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken install failing to load libnvinfer
        return None, f"the tensorrt Python package is not importable ({type(exc).__name__}: {exc})"
    if not hasattr(trt.IExecutionContext, "execute_async_v3"):
        return None, f"TensorRT {trt.__version__} is too old (need >= 8.5 for execute_async_v3)"
    return trt, "ok"


def available() -> tuple[bool, str]:
    """Whether the native TensorRT engine can run here, and why not if it cannot."""
    trt, why = _import_trt()
    if trt is None:
        return False, why
    has_cuda, cuda_why = cuda_available()
    if not has_cuda:
        return False, f"TensorRT {trt.__version__} is installed but {cuda_why} (buffers are torch CUDA tensors)"
    return True, f"TensorRT {trt.__version__}, {cuda_why}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_cache_key(
    onnx_path: Path, gpu_name: str, trt_version: str, precision: str, max_batch: int, model_name: str = "model"
) -> str:
    """File name of the cached engine: readable parts plus a hash over all of them.

    Every input that changes the compiled engine is part of the key, so a new GPU,
    a TensorRT upgrade, a re-exported ONNX file or another batch range never
    loads an engine built for something else.
    """
    onnx_hash = file_sha256(Path(onnx_path))
    parts = [model_name, gpu_name, f"trt{trt_version}", precision, f"b{max_batch}", onnx_hash]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{_slug(model_name)}-{_slug(gpu_name)}-trt{_slug(trt_version)}-{precision}-b{max_batch}-{digest}.engine"


def engine_cache_dir() -> Path:
    """Directory for serialized TensorRT engines (created on demand)."""
    path = Path(cache_dir()) / "tensorrt"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fp16_supported(trt: Any) -> bool:
    """TensorRT 8-10 take ``BuilderFlag.FP16``; 11 removed it in favour of strongly typed (fp16) ONNX models."""
    return hasattr(trt.BuilderFlag, "FP16")


def build_engine(trt: Any, onnx_path: Path, input_size: int, max_batch: int, fp16: bool, opt_batch: int) -> bytes:
    """Parse the ONNX file and build a serialized engine for batches 1..max_batch."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(1 << int(flag) if flag is not None and major < 10 else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FacestreamError(f"TensorRT cannot parse {onnx_path}: {errors}.", "Re-export the ONNX model.")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # allows fp16 kernels; TensorRT keeps fp32 where faster/needed
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    shape = (3, input_size, input_size)
    profile.set_shape(inp.name, (1, *shape), (opt_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FacestreamError(f"TensorRT failed to build an engine from {onnx_path}.", "See the TensorRT log above.")
    return bytes(serialized)


class TensorRTModel(ImageModel):
    """Runs the spec's ONNX model as a native TensorRT engine on CUDA.

    Args:
        spec: the model spec (``onnx_path`` with a dynamic batch axis).
        max_batch: the profile's largest batch (the engine accepts 1..max_batch).
        fp16: build with fp16 kernels allowed.
        cache_dir: where serialized engines live; default ``facestream.stream.engine.model_store.cache_dir()/tensorrt``.
    """

    def __init__(self, spec: ModelSpec, max_batch: int = 64, fp16: bool = True, cache_dir: Path | None = None):
        super().__init__(spec, max_batch)
        trt, why = _import_trt()
        ok, detail = available()
        if trt is None or not ok:
            raise FacestreamError(f"The tensorrt engine cannot load: {why if trt is None else detail}.", INSTALL_FIX)
        import torch

        self.trt = trt
        self.device = torch.device("cuda", torch.cuda.current_device())
        gpu = torch.cuda.get_device_name(self.device)
        if fp16 and not fp16_supported(trt):
            log.warning("tensorrt %s has no BuilderFlag.FP16 (strongly typed networks only); building in fp32",
                        trt.__version__)
            fp16 = False
        precision = "fp16" if fp16 else "fp32"
        onnx_path = Path(spec.onnx_path)
        if not onnx_path.is_file():
            raise FacestreamError(f"ONNX file for model '{spec.name}' not found at {onnx_path}.",
                                  "Run `facestream models prepare`.")
        folder = Path(cache_dir) if cache_dir is not None else engine_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.engine_path = folder / engine_cache_key(onnx_path, gpu, trt.__version__, precision, self.max_batch,
                                                     spec.name)
        self._logger = trt.Logger(trt.Logger.WARNING)
        if self.engine_path.is_file():
            log.info("tensorrt: loading cached engine %s", self.engine_path)
            blob = self.engine_path.read_bytes()
        else:
            log.info("tensorrt: building %s engine for %s on %s (takes a few minutes, once)", precision, spec.name, gpu)
            blob = build_engine(trt, onnx_path, self.input_size, self.max_batch, fp16, min(32, self.max_batch))
            tmp = self.engine_path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.replace(self.engine_path)  # atomic: a crash never leaves half an engine behind
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise FacestreamError(f"TensorRT could not deserialize {self.engine_path}.",
                                  "Delete that file so the engine is rebuilt.")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise FacestreamError(f"Engine {self.engine_path} has inputs {inputs} and outputs {outputs}.",
                                  "The embedding model must have one input and one output.")
        self._in, self._out = inputs[0], outputs[0]
        self._in_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self._in))
        self._out_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self._out))
        s = self.input_size
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._upload = torch.empty((self.max_batch, s, s, 3), dtype=torch.uint8).pin_memory()
        self._x = torch.empty((self.max_batch, 3, s, s), dtype=self._in_dtype, device=self.device)
        self._y = torch.empty((self.max_batch, self.output_dim), dtype=self._out_dtype, device=self.device)
        self._stream = torch.cuda.Stream(self.device)
        self.name = f"tensorrt:{precision}"
        log.info("tensorrt %s: model %s on %s, %s, batches 1..%d, engine %s",
                 trt.__version__, spec.name, gpu, precision, self.max_batch, self.engine_path.name)

    def _infer(self, chips: np.ndarray) -> np.ndarray:
        import torch

        n = len(chips)
        s = self.input_size
        host = self._upload[:n]
        host.numpy()[...] = chips
        x, y = self._x[:n], self._y[:n]  # leading-dim slices of contiguous buffers stay contiguous
        with torch.cuda.stream(self._stream), torch.inference_mode():
            dev = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
            x.copy_((dev - self._mean) / self.std)
            self.context.set_input_shape(self._in, (n, 3, s, s))
            self.context.set_tensor_address(self._in, x.data_ptr())
            self.context.set_tensor_address(self._out, y.data_ptr())
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            out = y.float().cpu()
        self._stream.synchronize()
        return out.numpy()

    def _release(self) -> None:
        self.context = None
        self.engine = None


def _torch_dtype(trt: Any, dtype: Any):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in table:
        raise FacestreamError(f"Unsupported TensorRT tensor type {dtype}.", "Export the model with float inputs.")
    return table[dtype]
