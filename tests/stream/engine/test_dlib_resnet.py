"""The dlib ResNet port: the .dat is read to its last byte, and torch and ONNX equal dlib itself.

dlib-bin is the reference: chips are cut by dlib (frontal detector, 5-point
shape predictor, get_face_chip) so that any difference is the network's.
"""

from __future__ import annotations

import csv
import math

import dlib  # dlib-bin: the reference implementation (a declared dependency)
import numpy as np
import pytest
import torch

from facestream.stream.engine.networks import create_model, list_networks, register_network
from facestream.stream.engine.networks import registry as models_module
from facestream.stream.engine.networks.dlib_format import DlibFormatError, DlibReader
from facestream.stream.engine.networks.dlib_resnet import (
    STAGE_NAMES,
    DlibResNet,
    _expected_kinds,
    add_zero_padded,
    default_model_path,
    load_dlib_resnet,
    read_dlib_resnet,
    read_layers,
)
from tests.conftest import EXAMPLES

TOL = 1e-5


# --------------------------------------------------------------------------- serialization primitives


def _compact(value: int) -> bytes:
    """dlib's compact integer encoding, written from its definition (the reader must invert it)."""
    neg = value < 0
    mag = abs(value)
    payload = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(payload) | (0x80 if neg else 0)]) + payload


@pytest.mark.parametrize("value", [0, 1, 127, 255, 256, -1, -300, 2**31 - 1, -(2**40), 2**63 - 1])
def test_compact_integers(value):
    r = DlibReader(_compact(value) + _compact(7))
    assert r.read_int() == value
    assert r.read_int() == 7
    r.expect_end()


def test_floats_and_special_values():
    # 0.6 as dlib writes a float: mantissa 0x99999a, exponent -24 (bytes taken from the real file)
    r = DlibReader(bytes([0x03, 0x9A, 0x99, 0x99, 0x81, 0x18]))
    assert r.read_float() == pytest.approx(0.6, abs=1e-7)
    data = _compact(0) + _compact(32000) + _compact(0) + _compact(32001) + _compact(0) + _compact(32002)
    data += _compact(-3) + _compact(-1)
    r = DlibReader(data)
    assert r.read_float() == math.inf
    assert r.read_float() == -math.inf
    assert math.isnan(r.read_float())
    assert r.read_float() == -1.5
    r.expect_end()


def test_strings_tensors_and_leftovers():
    values = np.arange(6, dtype="<f4")
    blob = _compact(5) + b"hello" + _compact(2) + b"".join(_compact(d) for d in (1, 2, 3, 1)) + values.tobytes()
    r = DlibReader(blob + b"\x00")
    assert r.read_string() == "hello"
    np.testing.assert_array_equal(r.read_tensor(), values.reshape(1, 2, 3, 1))
    with pytest.raises(DlibFormatError, match="1 bytes left unread"):
        r.expect_end()
    with pytest.raises(DlibFormatError, match="wanted"):
        DlibReader(_compact(10) + b"short").read_string()


def test_matrix_new_and_old_dimension_order():
    elems = b"".join(_compact(v) + _compact(0) for v in range(6))  # floats 0..5 (mantissa, exponent 0)
    new = DlibReader(_compact(-2) + _compact(-3) + elems).read_matrix()
    old = DlibReader(_compact(3) + _compact(2) + elems).read_matrix()  # old files wrote nc, nr
    np.testing.assert_array_equal(new, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(old, new)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_generic_reader_consumes_the_5_point_shape_predictor():
    """The same primitives read a different dlib model to its last byte (what a numpy port would use)."""
    r = DlibReader.from_file(default_model_path().parent / "shape_predictor_5_face_landmarks.dat")
    r.expect_int(1)
    initial_shape = r.read_matrix()

    def split(r):  # impl::split_feature: idx1, idx2, thresh
        return r.read_uint(), r.read_uint(), r.read_float()

    def tree(r):  # impl::regression_tree: splits, leaf_values
        return r.read_vector(split), r.read_vector(DlibReader.read_matrix)

    forests = r.read_vector(lambda r: r.read_vector(tree))
    anchor_idx = r.read_vector(lambda r: r.read_vector(DlibReader.read_uint))
    deltas = r.read_vector(lambda r: r.read_vector(lambda r: (r.read_float(), r.read_float())))
    r.expect_end()
    assert initial_shape.shape == (10, 1)  # 5 points, x and y
    assert len(forests) == len(anchor_idx) == len(deltas) == 15  # cascade depth
    splits, leaves = forests[0][0]
    assert len(leaves) == len(splits) + 1 and leaves[0].shape == (10, 1)
    assert 0.2 < initial_shape.max() <= 1.0  # normalised to the face box


# --------------------------------------------------------------------------- the model file


def test_reader_consumes_the_whole_file():
    layers, loss = read_layers(default_model_path())
    assert [layer.kind for layer in layers] == _expected_kinds()
    assert sum(layer.kind == "con_4" for layer in layers) == 29
    assert loss["distance_threshold"] == pytest.approx(0.6)
    assert layers[0].info["size"] == (150, 150)


def test_trailing_or_missing_bytes_are_rejected(tmp_path):
    data = default_model_path().read_bytes()
    longer = tmp_path / "longer.dat"
    longer.write_bytes(data + b"\x01")
    with pytest.raises(DlibFormatError, match="left unread"):
        read_layers(longer)
    shorter = tmp_path / "shorter.dat"
    shorter.write_bytes(data[:-100])
    with pytest.raises(DlibFormatError):
        read_layers(shorter)


def test_state_dict_matches_the_torch_module():
    state, mean = read_dlib_resnet()
    model = DlibResNet(mean)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)


# --------------------------------------------------------------------------- zero-padded add_prev


def test_add_zero_padded_pads_the_end_of_channels_rows_and_columns():
    a = torch.ones(1, 2, 2, 2)
    b = torch.full((1, 1, 3, 3), 10.0)
    out = add_zero_padded(a, b)
    assert out.shape == (1, 2, 3, 3)
    assert torch.all(out[0, 0, :2, :2] == 11)  # overlap
    assert torch.all(out[0, 0, 2, :] == 10) and torch.all(out[0, 0, :, 2] == 10)  # b alone
    assert torch.all(out[0, 1, :2, :2] == 1)  # a's second channel, b padded with zeros
    assert torch.all(out[0, 1, 2, :] == 0) and torch.all(out[0, 1, :, 2] == 0)


def test_last_stage_really_needs_the_padding(dlib_model):
    """stage5's block makes 1x1 from 4x4 while its shortcut pool makes 2x2: dlib pads, not crops."""
    x = torch.zeros(1, 3, 150, 150)
    with torch.no_grad():
        for name in STAGE_NAMES[:-2]:
            x = getattr(dlib_model, name)(x)
        assert x.shape[2:] == (4, 4)
        assert dlib_model.stage5(x).shape == (1, 256, 2, 2)


# --------------------------------------------------------------------------- parity with dlib


@pytest.fixture(scope="session")
def dlib_model() -> DlibResNet:
    return load_dlib_resnet()


@pytest.fixture(scope="session")
def dlib_chips() -> np.ndarray:
    """One 150x150 chip per person in face_recognition_examples (6 people), cut by dlib itself."""
    from facestream.stream.engine.imageio import load_image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(default_model_path().parent / "shape_predictor_5_face_landmarks.dat"))
    chips, seen = [], set()
    with open(EXAMPLES / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["identity"] in seen:
                continue
            img = load_image(EXAMPLES / row["relative_path"])
            dets = detector(img, 0) or detector(img, 1)  # upsample only when needed: it is slow
            if not dets:
                continue
            shape = predictor(img, max(dets, key=lambda d: d.area()))
            chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
            seen.add(row["identity"])
    assert len(chips) >= 6, "expected a chip for each of the 6 people"
    return np.stack(chips)


@pytest.fixture(scope="session")
def dlib_descriptors(dlib_chips) -> np.ndarray:
    net = dlib.face_recognition_model_v1(str(default_model_path()))
    return np.array([np.array(net.compute_face_descriptor(chip)) for chip in dlib_chips], dtype=np.float64)


def _normalise(chips: np.ndarray, mean) -> np.ndarray:
    x = (chips.astype(np.float32) - np.asarray(mean, np.float32)) / 256.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def test_torch_equals_dlib(dlib_model, dlib_chips, dlib_descriptors):
    with torch.no_grad():
        out = dlib_model(torch.from_numpy(_normalise(dlib_chips, dlib_model.mean_rgb))).numpy()
    assert out.shape == (len(dlib_chips), 128)
    diff = np.abs(out - dlib_descriptors).max()
    assert diff < TOL, f"torch vs dlib max abs diff {diff:.2e}"
    # different people really are different (the comparison is not trivially satisfied)
    assert np.linalg.norm(dlib_descriptors[0] - dlib_descriptors[1]) > 0.3


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_onnx_equals_dlib_with_dynamic_batch(tmp_path, dlib_model, dlib_chips, dlib_descriptors):
    import onnxruntime as ort

    from facestream.stream.engine.export import export_onnx

    path = export_onnx(dlib_model, tmp_path / "model.onnx", input_size=150)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = _normalise(dlib_chips, dlib_model.mean_rgb)
    full = session.run(None, {name: x})[0]
    one = session.run(None, {name: x[:1]})[0]
    diff = np.abs(full - dlib_descriptors).max()
    assert diff < TOL, f"onnx vs dlib max abs diff {diff:.2e}"
    assert np.abs(one[0] - dlib_descriptors[0]).max() < TOL


# --------------------------------------------------------------------------- trainability and registry


def test_freeze_up_to_a_named_stage():
    model = DlibResNet()
    model.freeze_up_to("stage3")
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("stem.") for n in frozen) and any(n.startswith("stage3.") for n in frozen)
    assert not any(n.startswith(("stage4.", "stage5.", "head.")) for n in frozen)
    x = torch.randn(1, 3, 150, 150)
    model.train()(x).sum().backward()
    assert model.head.fc.weight.grad is not None and model.stem.conv.weight.grad is None
    with pytest.raises(ValueError, match="unknown stage"):
        model.freeze_up_to("stage9")


def test_registry():
    from facestream.errors import FacestreamError

    assert "dlib_resnet" in list_networks()
    model = create_model("dlib_resnet", pretrained=False)
    assert isinstance(model, DlibResNet)
    with pytest.raises(FacestreamError, match="dlib_resnet"):
        create_model("no_such_net")

    @register_network(name="_test_tiny")
    def tiny(pretrained: bool = True, **kw):
        return torch.nn.Linear(2, 2)

    try:
        assert "_test_tiny" in list_networks()
        assert isinstance(create_model("_test_tiny"), torch.nn.Linear)
        with pytest.raises(ValueError, match="already registered"):
            register_network(lambda pretrained=True: None, name="_test_tiny")
    finally:
        models_module._REGISTRY.pop("_test_tiny", None)  # leave the registry as other tests expect it
