"""Export an embedding model to ONNX and prove the file computes what torch computes.

The runtime's ONNX Runtime and TensorRT engines only ever see this file, so an
export is not done until onnxruntime has run it on a batch and matched torch.
The batch axis is dynamic (the runtime batches faces from many streams); the
spatial size is fixed by the model spec.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facestream.errors import FacestreamError

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


EXPORT_FIX = ("No model file was written. The exporter or ONNX Runtime handles one of the model's operations "
              "differently from torch, or the model is random in eval mode: check the installed "
              "torch and onnxruntime versions and the model's forward.")


class ExportMismatchError(FacestreamError):
    """ONNX Runtime's output differs from torch's beyond the tolerance.

    A FacestreamError, so the CLI shows the message and the fix instead of a traceback.
    """

    def __init__(self, problem: str, fix: str | None = EXPORT_FIX):
        super().__init__(problem, fix)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: int = 150,
    opset: int = 18,
    atol: float = 1e-5,
    verify_batch: int = 3,
    input_range: float = 0.5,
) -> Path:
    """Write ``model`` to ``path`` as ONNX (input ``NCHW float32``, dynamic batch) and verify it.

    Uses torch's dynamo exporter (the default since torch 2.9) with a dynamic
    batch dimension, all weights inside the one ``.onnx`` file. The file is
    written next to ``path`` and renamed into place only after verification.

    Args:
        model: the network; exported in eval mode (its mode is restored afterwards).
        path: the ``.onnx`` file to write.
        input_size: chip side in pixels.
        opset: ONNX opset; 18 is the lowest torch's dynamo exporter writes without a
            lossy down-conversion (ONNX has no Pad adapter to 17). ONNX Runtime and
            TensorRT >= 8.6 read it.
        atol: largest allowed absolute difference between torch and ONNX Runtime.
        verify_batch: batch size of the verification run (different from the
            export example's, so the dynamic axis is exercised).
        input_range: the verification input is uniform in ±this (what the model sees:
            0.5 for the embedders' ``(pixel - mean) / 256``, 1.0 for BlazeFace's [-1, 1]).

    Raises:
        ExportMismatchError: onnxruntime disagrees with torch by more than ``atol``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(2, 3, input_size, input_size, device=device)
    batch = torch.export.Dim("batch", min=1, max=4096)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    tmp = Path(tmp_name)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter_logs():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                dynamic_shapes={"x": {0: batch}},
                verbose=False,
            )
        log.info("exported %s in %.1f s", path.name, time.perf_counter() - t0)
        diff = verify_onnx(model, tmp, input_size=input_size, batch=verify_batch, input_range=input_range)
        if diff > atol:
            raise ExportMismatchError(f"ONNX output differs from torch by {diff:.2e} (> {atol:.0e})")
        log.info("ONNX Runtime matches torch: max abs diff %.2e", diff)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model cache is shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path


@contextlib.contextmanager
def _quiet_exporter_logs():
    """The exporter logs pages of INFO/WARNING (optimizer passes, missing torchvision ops) that
    say nothing about our model; keep only errors while it runs."""
    names = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def verify_onnx(model: nn.Module, path: str | Path, input_size: int = 150, batch: int = 3, seed: int = 0,
                input_range: float = 0.5) -> float:
    """Largest absolute difference between torch and ONNX Runtime (CPU) on a random batch.

    The input looks like the model's real input (uniform in ``±input_range``), so
    the tolerance means the same thing it does on faces.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    x = rng.uniform(-input_range, input_range, size=(batch, 3, input_size, input_size)).astype(np.float32)
    device = next(model.parameters()).device
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x).to(device)).float().cpu().numpy()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    if got.shape != want.shape:
        raise ExportMismatchError(f"ONNX output shape {got.shape} differs from torch's {want.shape}")
    return float(np.abs(got - want).max())
