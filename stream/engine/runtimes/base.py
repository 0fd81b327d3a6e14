"""The one interface every runtime implements: square uint8 RGB images in, one float row per image out.

The face embedders (aligned chips -> raw descriptors) and the BlazeFace detector
(letterboxed tiles and crops -> anchor regressors and scores) are both such
models, so both run on every runtime. The shared parts (validating the images,
normalising them as the spec says, splitting into batches, the lock that keeps
one stateful session safe across threads) live here so each runtime only writes
``_infer``: one batch in, one batch of rows out.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.engine.model_store import ModelSpec

log = logging.getLogger(__name__)


def validate_chips(chips: Any, size: int) -> np.ndarray:
    """``chips`` as a C-contiguous uint8 (n, size, size, 3) array, or a clear error.

    A chip of the wrong size means the caller aligned for a different model; a
    silent resize would hide that and ruin accuracy, so it is an error instead.
    """
    arr = np.asarray(chips)
    if arr.ndim == 3 and arr.shape == (size, size, 3):
        raise FacestreamError(
            f"Expected a batch of chips (n, {size}, {size}, 3), got one chip of shape {arr.shape}.",
            "Pass chips[None] or a list of chips.",
        )
    if arr.ndim != 4 or arr.shape[1:] != (size, size, 3):
        raise FacestreamError(
            f"Face chips have shape {arr.shape}, but this model needs (n, {size}, {size}, 3) RGB chips.",
            f"Align faces with the model's spec (input_size={size}), e.g. FaceAnalyzer.chips().",
        )
    if arr.dtype != np.uint8:
        raise FacestreamError(
            f"Face chips have dtype {arr.dtype}, but the engines take uint8 pixels.",
            "Pass the uint8 chips from alignment, not normalised floats.",
        )
    return np.ascontiguousarray(arr)


def normalize_nchw(chips: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    """uint8 NHWC chips -> float32 NCHW ``(pixel - mean) / std`` in one vectorised pass."""
    out = np.empty((chips.shape[0], 3, chips.shape[1], chips.shape[2]), np.float32)
    np.subtract(chips.transpose(0, 3, 1, 2), mean.reshape(1, 3, 1, 1), out=out)
    out /= np.float32(std)
    return out


class ImageModel(ABC):
    """A model's raw output rows for uint8 RGB images of its input size (embedder chips, detector tiles).

    Subclasses implement :meth:`_infer` for one batch of at most ``max_batch``
    images; :meth:`run` validates, splits and reassembles. ``_infer`` runs under
    ``self._lock`` because sessions, CUDA graphs and static buffers are state.

    Attributes:
        name: which engine and device actually run, e.g. ``onnxruntime:CPUExecutionProvider``.
        spec: the :class:`facestream.stream.engine.model_store.ModelSpec` this engine serves.
        max_batch: the largest batch sent to the model at once.
    """

    name: str = "model"

    def __init__(self, spec: ModelSpec, max_batch: int = 64):
        if max_batch < 1:
            raise FacestreamError(f"max_batch must be >= 1, got {max_batch}.", "Set embedder.max_batch to 1 or more.")
        self.spec = spec
        self.max_batch = int(max_batch)
        self.input_size = int(spec.input_size)
        self.output_dim = int(spec.output_dim)
        self.mean = np.asarray(spec.mean, np.float32).reshape(3)
        self.std = float(spec.std)
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} model={getattr(self.spec, 'name', '?')} max_batch={self.max_batch}>"

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        """float32 NCHW model input for uint8 NHWC chips (on the CPU)."""
        return normalize_nchw(chips, self.mean, self.std)

    def run(self, chips: Any) -> np.ndarray:
        """Raw descriptors (n, D) float32 for uint8 RGB chips (n, S, S, 3).

        Any n is accepted; the engine splits it into batches of ``max_batch``.
        Safe to call from several threads at once.
        """
        if self._closed:
            raise FacestreamError(f"ImageModel {self.name} was closed.", "Create a new one with create_runtime().")
        chips = validate_chips(chips, self.input_size)
        n = len(chips)
        out = np.empty((n, self.output_dim), np.float32)
        for start in range(0, n, self.max_batch):
            stop = min(start + self.max_batch, n)
            with self._lock:
                out[start:stop] = self._infer(chips[start:stop])
        return out

    def warmup(self, batch_sizes: tuple[int, ...] | None = None) -> None:
        """Run the model once per batch size so first real calls are not slow (allocations, autotuning)."""
        sizes = batch_sizes or (1, min(self.max_batch, 8))
        for b in sorted({min(int(s), self.max_batch) for s in sizes}):
            self.run(np.zeros((b, self.input_size, self.input_size, 3), np.uint8))

    def close(self) -> None:
        """Release sessions and device memory; the embedder cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._release()

    def __enter__(self) -> ImageModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _infer(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors (b, D) for one validated uint8 batch (b <= max_batch); called under the lock."""

    def _release(self) -> None:
        """Free engine resources; engines holding sessions or device memory override this."""
        return None
