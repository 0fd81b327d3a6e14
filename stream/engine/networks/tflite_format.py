"""Read a TensorFlow Lite model file into plain numpy: its operators, their options, dense float32 constants.

MediaPipe's BlazeFace models ship as ``.tflite`` flatbuffers. They are parsed
with the flatbuffer bindings of PyPI ``tflite`` (no TensorFlow at run time).
Constants are stored as float16 behind ``DEQUANTIZE`` operators and, in the
full-range model, as sparse tensors behind ``DENSIFY`` operators; both are
resolved here, so a network built from the graph sees ordinary float32 weights
and only the operators that compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facestream.errors import FacestreamError

# TensorType values of the schema that the face models use
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
# Operators that only turn stored constants into float32: resolved while reading, never run.
_CONSTANT_OPS = {"DEQUANTIZE", "DENSIFY"}
ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}


class TfliteFormatError(FacestreamError):
    """The file is not a TFLite model this reader understands."""


@dataclass
class Operator:
    """One operator: its name (``CONV_2D``...), input and output tensor indices, and its options."""

    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfliteGraph:
    """The first subgraph of a model: operators in execution order and every constant as float32 (or int)."""

    operators: list[Operator]
    shapes: dict[int, tuple[int, ...]]
    names: dict[int, str]
    constants: dict[int, np.ndarray]
    inputs: list[int]
    outputs: list[int]


def _builtin_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _options(tflite: Any, op: Any, name: str) -> dict[str, Any]:
    """The options of the operators the face models use, as a plain dict."""
    table = {
        "CONV_2D": ("Conv2DOptions", ("Padding", "StrideH", "StrideW", "DilationHFactor", "DilationWFactor",
                                      "FusedActivationFunction")),
        "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("Padding", "StrideH", "StrideW", "DepthMultiplier",
                                                          "DilationHFactor", "DilationWFactor",
                                                          "FusedActivationFunction")),
        "ADD": ("AddOptions", ("FusedActivationFunction",)),
        "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideH", "StrideW", "FilterHeight", "FilterWidth",
                                          "FusedActivationFunction")),
        "RESIZE_BILINEAR": ("ResizeBilinearOptions", ("AlignCorners", "HalfPixelCenters")),
        "CONCATENATION": ("ConcatenationOptions", ("Axis", "FusedActivationFunction")),
        "DEPTH_TO_SPACE": ("DepthToSpaceOptions", ("BlockSize",)),
    }
    if name not in table:
        return {}
    cls_name, fields = table[name]
    table_bytes = op.BuiltinOptions()
    opt = getattr(tflite, cls_name)()
    opt.Init(table_bytes.Bytes, table_bytes.Pos)
    return {f: getattr(opt, f)() for f in fields}


def _buffer(model: Any, tensor: Any) -> np.ndarray | None:
    buf = model.Buffers(tensor.Buffer())
    if buf is None or buf.DataLength() == 0:
        return None
    dtype = _DTYPES.get(tensor.Type())
    if dtype is None:
        raise TfliteFormatError(f"Tensor {tensor.Name()!r} has the unsupported type {tensor.Type()}.",
                                "Use a float32/float16 TFLite model.")
    return np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype)


def _densify(values: np.ndarray, tensor: Any) -> np.ndarray:
    """A sparse constant (dense outer dimensions, CSR innermost) as its dense array."""
    sp = tensor.Sparsity()
    shape = tuple(int(s) for s in tensor.ShapeAsNumpy())
    order = sp.TraversalOrderAsNumpy()
    if sp.BlockMapLength() or list(order) != list(range(len(shape))):
        raise TfliteFormatError(f"Sparse tensor {tensor.Name()!r} uses block sparsity or a reordered traversal.",
                                "Only the row-major CSR layout of MediaPipe's models is supported.")
    dims = [sp.DimMetadata(d) for d in range(sp.DimMetadataLength())]
    if any(d.Format() != 0 for d in dims[:-1]) or dims[-1].Format() != 1:
        raise TfliteFormatError(f"Sparse tensor {tensor.Name()!r} is not dense-then-CSR.",
                                "Only the layout of MediaPipe's models is supported.")
    last = dims[-1]
    segments = _index_vector(last.ArraySegments(), last.ArraySegmentsType())
    indices = _index_vector(last.ArrayIndices(), last.ArrayIndicesType())
    rows = int(np.prod(shape[:-1]))
    dense = np.zeros((rows, shape[-1]), values.dtype)
    for r in range(rows):
        lo, hi = int(segments[r]), int(segments[r + 1])
        dense[r, indices[lo:hi]] = values[lo:hi]
    return dense.reshape(shape)


def _index_vector(table: Any, kind: int) -> np.ndarray:
    import tflite

    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}.get(kind)
    if cls is None:
        raise TfliteFormatError(f"Unknown sparse index vector type {kind}.", "Use a MediaPipe face model.")
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy()


def read_tflite(path: str | Path) -> TfliteGraph:
    """Parse a ``.tflite`` file's first subgraph, resolving its float16 and sparse constants.

    Raises:
        TfliteFormatError: not a TFLite flatbuffer, or a feature this reader does not handle.
    """
    import tflite

    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TfliteFormatError(f"{path} is not a TensorFlow Lite model.", "Pass a .tflite file.")
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    names = _builtin_names()
    shapes: dict[int, tuple[int, ...]] = {}
    tensor_names: dict[int, str] = {}
    constants: dict[int, np.ndarray] = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shapes[i] = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        tensor_names[i] = t.Name().decode()
        values = _buffer(model, t)
        if values is not None:
            constants[i] = _densify(values, t) if t.Sparsity() is not None else values.reshape(shapes[i])
    operators: list[Operator] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        ins = [int(j) for j in op.InputsAsNumpy()]
        outs = [int(j) for j in op.OutputsAsNumpy()]
        if name in _CONSTANT_OPS:
            if ins[0] not in constants:
                raise TfliteFormatError(f"{name} of a computed tensor in {path}.", "Use a MediaPipe face model.")
            constants[outs[0]] = constants[ins[0]].astype(np.float32)
            continue
        operators.append(Operator(name, ins, outs, _options(tflite, op, name)))
    return TfliteGraph(operators, shapes, tensor_names, constants,
                       [int(j) for j in graph.InputsAsNumpy()], [int(j) for j in graph.OutputsAsNumpy()])
