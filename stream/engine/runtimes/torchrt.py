"""torch engine: float32 on CPU; fp16, channels-last and CUDA graphs on a GPU.

On CUDA the per-call overhead (kernel launches, host work) dominates small
batches, so every batch is padded up to a fixed bucket size (1, 8, 32, ...)
whose whole forward pass was captured once as a CUDA graph; a replay is a
single launch. Chips are uploaded as uint8 (4x less PCIe traffic than float32)
and normalised on the GPU.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.model_store import ModelSpec
from facestream.stream.engine.runtimes.base import ImageModel

if TYPE_CHECKING:  # torch is imported only when this engine is used
    from torch import nn

log = logging.getLogger(__name__)

#: Batch sizes captured as CUDA graphs (those <= max_batch, plus max_batch itself).
BUCKETS = (1, 8, 32, 64, 256, 1024)


def buckets_for(max_batch: int) -> tuple[int, ...]:
    """Captured batch sizes for ``max_batch``: every batch <= max_batch has one to pad up to."""
    sizes = {b for b in BUCKETS if b <= max_batch}
    sizes.add(max_batch)
    return tuple(sorted(sizes))


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest captured batch size that holds ``n`` chips."""
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"batch of {n} exceeds the largest bucket {buckets[-1]}")


def cuda_available() -> tuple[bool, str]:
    """Whether torch can use a CUDA GPU here, with the reason if not."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - a hard dependency
        return False, f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
        return False, f"torch {torch.__version__} ({build}) sees no CUDA GPU"
    return True, f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}"


def model_available(spec: ModelSpec | None = None) -> tuple[bool, str]:
    """Whether, given a spec, its network is defined in :mod:`facestream.stream.engine.networks` and has weights."""
    if spec is None:
        return True, "ok"
    if spec.architecture is None or spec.weights_path is None:
        return False, f"model '{spec.name}' has no torch weights or architecture (ONNX only)"
    from facestream.stream.engine.networks import list_networks

    if spec.architecture not in list_networks():
        return False, f"model '{spec.name}' names the unknown network '{spec.architecture}'"
    return True, "ok"


def load_model(spec: ModelSpec) -> nn.Module:
    """The spec's torch module with its weights, in eval mode on the CPU."""
    import torch

    ok, why = model_available(spec)
    if not ok:
        raise FacestreamError(
            f"The torch engine cannot load model '{spec.name}': {why}.",
            "Use embedder.engine=onnxruntime for this model, or give the spec a torch state_dict.",
        )
    from facestream.stream.engine.networks import create_model

    assert spec.architecture is not None and spec.weights_path is not None  # model_available() checked both
    model = create_model(spec.architecture, pretrained=False)
    try:
        state = torch.load(spec.weights_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise FacestreamError(
            f"Cannot read torch weights for model '{spec.name}' from {spec.weights_path} ({exc}).",
            "Run `facestream models prepare` to rebuild the cached weights.",
        ) from exc
    model.load_state_dict(state)
    return model.eval()


class TorchModel(ImageModel):
    """Runs the spec's torch module.

    Args:
        spec: the model spec (needs ``architecture`` and ``weights_path``).
        max_batch: largest batch per forward pass (and the largest CUDA graph).
        device: "cpu", "cuda" or "auto" (CUDA when available).
        fp16: half precision on CUDA (ignored on CPU, where fp16 is slower).
        threads: torch intra-op threads on CPU; 0 leaves torch's default (all cores).
        cuda_graphs: capture a CUDA graph per bucket size (CUDA only).
        model: an already built torch module to run instead of loading the spec's
            weights (the trainer evaluates in-memory models this way).
    """

    def __init__(
        self,
        spec: ModelSpec,
        max_batch: int = 64,
        device: str = "auto",
        fp16: bool = True,
        threads: int = 0,
        cuda_graphs: bool = True,
        model: Any = None,
    ):
        super().__init__(spec, max_batch)
        import torch

        has_cuda, why = cuda_available()
        if device == "cuda" and not has_cuda:
            raise FacestreamError(
                f"The torch engine was asked for CUDA but {why}.",
                "Install a CUDA build of torch on a machine with an NVIDIA GPU, or set embedder.device=cpu.",
            )
        self.device = torch.device("cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu")
        self.cuda = self.device.type == "cuda"
        self.fp16 = bool(fp16) and self.cuda
        self.dtype = torch.float16 if self.fp16 else torch.float32
        if not self.cuda and threads > 0:
            torch.set_num_threads(threads)  # process-wide: torch has no per-module pool
        model = load_model(spec) if model is None else model.eval()
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed chip size: let cuDNN pick the fastest kernels once
            model = model.to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        self.model = model
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.cuda_graphs = bool(cuda_graphs) and self.cuda
        self.buckets = buckets_for(self.max_batch)
        self._graphs: dict[int, Any] = {}
        if self.cuda:
            self._stream = torch.cuda.Stream(self.device)
            self._pinned = torch.empty(
                (self.max_batch, self.input_size, self.input_size, 3), dtype=torch.uint8
            ).pin_memory()
        precision = "fp16" if self.fp16 else "fp32"
        self.name = f"torch:{self.device.type}:{precision}"
        log.info(
            "torch %s: model %s on %s, %s, threads %d, CUDA graphs %s (buckets %s)",
            torch.__version__, spec.name, self.device, precision, torch.get_num_threads(),
            "on" if self.cuda_graphs else "off", self.buckets if self.cuda_graphs else "-",
        )

    # -- the forward pass, shared by eager and captured execution ------------------------------
    def _forward(self, x_u8):
        """uint8 NHWC on the device -> float32 (n, D) descriptors, all on the device."""
        import torch

        x = x_u8.permute(0, 3, 1, 2).float()  # NHWC memory seen as NCHW: already channels-last
        x = (x - self._mean) / self.std
        x = x.to(self.dtype, memory_format=torch.channels_last) if self.cuda else x.contiguous()
        return self.model(x).float()

    def _infer(self, chips: np.ndarray) -> np.ndarray:
        import torch

        n = len(chips)
        if not self.cuda:
            with torch.inference_mode():
                return self._forward(torch.from_numpy(chips)).numpy()
        host = self._pinned[:n]
        host.numpy()[...] = chips
        with torch.cuda.stream(self._stream), torch.inference_mode():
            if self.cuda_graphs:
                b = bucket_for(n, self.buckets)
                static_in, static_out, graph = self._graph(b)
                static_in[:n].copy_(host, non_blocking=True)
                graph.replay()
                out = static_out[:n].to("cpu", non_blocking=False)
            else:
                out = self._forward(host.to(self.device, non_blocking=True)).to("cpu")
        self._stream.synchronize()
        return out.numpy()

    def _graph(self, b: int):
        """The (input, output, CUDAGraph) for bucket ``b``, captured on first use."""
        if b not in self._graphs:
            self._graphs[b] = self._capture(b)
        return self._graphs[b]

    def _capture(self, b: int):
        """Capture the whole forward pass for a fixed batch ``b`` (runs it eagerly first, as CUDA requires)."""
        import torch

        static_in = torch.zeros((b, self.input_size, self.input_size, 3), dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # cuDNN autotuning and allocator warm-up must happen outside capture
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if not hasattr(self, "_pool"):
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), torch.inference_mode():
            static_out = self._forward(static_in)
        log.debug("torch: captured CUDA graph for batch %d", b)
        return static_in, static_out, graph

    def warmup(self, batch_sizes: tuple[int, ...] | None = None) -> None:
        """On CUDA with graphs: capture every bucket, largest first, so smaller ones reuse its memory pool."""
        if self.cuda_graphs:
            with self._lock:
                for b in sorted(batch_sizes or self.buckets, reverse=True):
                    self._graph(bucket_for(min(int(b), self.max_batch), self.buckets))
        super().warmup(batch_sizes)

    def _release(self) -> None:
        self._graphs.clear()
        self.model = None
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
