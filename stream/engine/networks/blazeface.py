"""MediaPipe's BlazeFace face detectors, rebuilt in torch from the ``.tflite`` files in the mediapipe wheel.

Both models (short range, 128x128; full range, 192x192) are small convolutional
graphs. Rather than transcribe each by hand, :class:`TfliteNet` runs the parsed
graph operator by operator with the equivalent torch call, in NCHW layout
(TFLite is NHWC: paddings, reshapes, concatenations and depth-to-space are
translated). The result exports to ONNX with a dynamic batch, so tiles and crops
of many frames go through one model call on any engine.

Output contract (what :mod:`facestream.stream.engine.blazeface` decodes): one
row per image of ``anchors * 17`` floats, per anchor the 16 box/keypoint
regressors followed by the raw score logit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facestream.errors import FacestreamError
from facestream.stream.engine.networks.registry import register_network
from facestream.stream.engine.networks.tflite_format import ACTIVATIONS, Operator, TfliteGraph, read_tflite
from facestream.stream.engine.package_models import blazeface_file

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after): the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, kind: int) -> torch.Tensor:
    act = ACTIVATIONS.get(kind, "unknown")
    if act is None:
        return x
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "relu_n1_to_1":
        return x.clamp(-1.0, 1.0)
    raise FacestreamError(f"Unsupported fused activation {kind}.", "Use a MediaPipe face model.")


class TfliteNet(nn.Module):
    """A TFLite graph run as torch operations (NCHW), its weights as parameters.

    Args:
        graph: the parsed model (:func:`read_tflite`).
    """

    def __init__(self, graph: TfliteGraph):
        super().__init__()
        self.graph = graph
        self.weights = nn.ParameterDict()
        self.input_size = graph.shapes[graph.inputs[0]][1]
        for op in graph.operators:
            if op.name == "PRELU":  # alpha per channel, stored (1, 1, C) in NHWC
                alpha = graph.constants[op.inputs[1]].reshape(1, -1, 1, 1)
                self.weights[f"a{op.inputs[1]}"] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(alpha)))
            if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = graph.constants[op.inputs[1]]
                # TFLite: conv (O, kh, kw, I); depthwise (1, kh, kw, C*mult). torch: (O, I/groups, kh, kw).
                w = w.transpose(0, 3, 1, 2) if op.name == "CONV_2D" else w.transpose(3, 0, 1, 2)
                self.weights[f"w{op.inputs[1]}"] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(w)))
                if len(op.inputs) > 2 and op.inputs[2] >= 0:
                    b = graph.constants[op.inputs[2]]
                    self.weights[f"b{op.inputs[2]}"] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(b)))
        unknown = {op.name for op in graph.operators} - set(_RUN)
        if unknown:
            raise FacestreamError(f"The model uses operators this port does not run: {', '.join(sorted(unknown))}.",
                                  "Use MediaPipe's BlazeFace models.")

    def run(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The graph's outputs, in the file's order, for an NCHW input."""
        values: dict[int, torch.Tensor] = {self.graph.inputs[0]: x}
        for op in self.graph.operators:
            out = _RUN[op.name](self, op, values)
            values[op.outputs[0]] = out
        return [values[i] for i in self.graph.outputs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> (N, anchors * 17): per anchor 16 regressors, then the score logit."""
        boxes, scores = self.run(x)
        if boxes.shape[-1] == 1:  # outputs are listed scores-first in some files
            boxes, scores = scores, boxes
        return torch.cat([boxes, scores], dim=2).flatten(1)

    # -- operators ----------------------------------------------------------------------------
    def _conv(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        o = op.options
        x = values[op.inputs[0]]
        w = self.weights[f"w{op.inputs[1]}"]
        b = self.weights[f"b{op.inputs[2]}"] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        kh, kw = int(w.shape[2]), int(w.shape[3])
        if o["Padding"] == 0:  # SAME
            ph = _same_padding(x.shape[2], kh, o["StrideH"], o["DilationHFactor"])
            pw = _same_padding(x.shape[3], kw, o["StrideW"], o["DilationWFactor"])
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        groups = x.shape[1] if op.name == "DEPTHWISE_CONV_2D" else 1
        y = F.conv2d(x, w, b, stride=(o["StrideH"], o["StrideW"]),
                     dilation=(o["DilationHFactor"], o["DilationWFactor"]), groups=groups)
        return _activate(y, o["FusedActivationFunction"])

    def _add(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        return _activate(self._value(op.inputs[0], values) + self._value(op.inputs[1], values),
                         op.options["FusedActivationFunction"])

    def _value(self, index: int, values: dict[int, torch.Tensor]) -> torch.Tensor:
        if index in values:
            return values[index]
        const = self.graph.constants[index]  # a constant operand (not used by the face models' ADDs)
        t = torch.from_numpy(np.ascontiguousarray(const))
        return t.permute(0, 3, 1, 2) if t.ndim == 4 else t

    def _relu(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        return F.relu(values[op.inputs[0]])

    def _prelu(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        x = values[op.inputs[0]]
        return torch.where(x >= 0, x, x * self.weights[f"a{op.inputs[1]}"])

    def _pad(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        x = values[op.inputs[0]]
        p = self.graph.constants[op.inputs[1]].reshape(-1, 2).astype(int)  # NHWC (before, after) per dim
        if p[0].any():
            raise FacestreamError("Padding the batch dimension is not supported.", "Use a MediaPipe face model.")
        # F.pad lists the last dimension first: W, H, then C of NCHW
        return F.pad(x, (int(p[2, 0]), int(p[2, 1]), int(p[1, 0]), int(p[1, 1]), int(p[3, 0]), int(p[3, 1])))

    def _max_pool(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        o = op.options
        x = values[op.inputs[0]]
        k, s = (o["FilterHeight"], o["FilterWidth"]), (o["StrideH"], o["StrideW"])
        if o["Padding"] == 0:
            ph = _same_padding(x.shape[2], k[0], s[0], 1)
            pw = _same_padding(x.shape[3], k[1], s[1], 1)
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf"))
        return _activate(F.max_pool2d(x, k, s), o["FusedActivationFunction"])

    def _reshape(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        x = values[op.inputs[0]]
        if x.ndim == 4:
            x = x.permute(0, 2, 3, 1)  # flatten in TFLite's (H, W, C) order
        shape = self.graph.shapes[op.outputs[0]]
        return x.reshape(x.shape[0], *shape[1:])

    def _concat(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        parts = [values[i] for i in op.inputs]
        axis = op.options["Axis"] % parts[0].ndim
        if parts[0].ndim == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        return _activate(torch.cat(parts, dim=axis), op.options["FusedActivationFunction"])

    def _resize(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        o = op.options
        if not (o["AlignCorners"] or o["HalfPixelCenters"]):
            raise FacestreamError("Legacy TensorFlow bilinear resizing is not supported.", "Use a MediaPipe model.")
        h, w = (int(v) for v in self.graph.constants[op.inputs[1]])
        return F.interpolate(values[op.inputs[0]], size=(h, w), mode="bilinear",
                             align_corners=bool(o["AlignCorners"]))

    def _depth_to_space(self, op: Operator, values: dict[int, torch.Tensor]) -> torch.Tensor:
        # TensorFlow's order (DCR): out[h*b + i, w*b + j, c] = in[h, w, (i*b + j)*C + c]
        x = values[op.inputs[0]]
        bs = op.options["BlockSize"]
        n, c, h, w = x.shape
        x = x.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(n, c // (bs * bs), h * bs, w * bs)


_RUN: dict[str, Any] = {
    "CONV_2D": TfliteNet._conv, "DEPTHWISE_CONV_2D": TfliteNet._conv, "ADD": TfliteNet._add,
    "RELU": TfliteNet._relu, "PRELU": TfliteNet._prelu, "PAD": TfliteNet._pad, "MAX_POOL_2D": TfliteNet._max_pool,
    "RESHAPE": TfliteNet._reshape, "CONCATENATION": TfliteNet._concat, "RESIZE_BILINEAR": TfliteNet._resize,
    "DEPTH_TO_SPACE": TfliteNet._depth_to_space,
}


def load_blazeface(kind: str, path: str | Path | None = None) -> TfliteNet:
    """BlazeFace (``kind``: short or full) from its ``.tflite`` (default: the mediapipe wheel's), in eval mode."""
    return TfliteNet(read_tflite(path or blazeface_file(kind))).eval()


@register_network
def blazeface_short(pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """BlazeFace short range (128x128 RGB in [-1, 1]; faces within ~2 m). The graph comes with its weights."""
    return load_blazeface("short", **kwargs)


@register_network
def blazeface_full(pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """BlazeFace full range (192x192 RGB in [-1, 1]; faces within ~5 m, sparse weights densified)."""
    return load_blazeface("full", **kwargs)
