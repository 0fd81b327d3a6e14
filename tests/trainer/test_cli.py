"""``facestream train`` / ``eval`` / ``train classifier`` on bad input: one clear message, exit code 2."""

from __future__ import annotations

import socket

import mlflow
import pytest

from facestream.stream.cli import main
from tests.conftest import CELEBS


@pytest.fixture(autouse=True)
def _reset_mlflow():
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_train_without_data(capsys):
    rc, text = run(capsys, "train")
    assert rc == 2 and "needs --data" in text


def test_unreachable_tracking_server_fails_before_any_work(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, text = run(capsys, "train", "--data", str(CELEBS), "--mlflow", f"http://127.0.0.1:{port}")
    assert rc == 2 and "not reachable" in text and "Traceback" not in text


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_missing_data_folder_and_bad_options(capsys, tmp_path):
    store = f"sqlite:///{tmp_path}/m.db"
    rc, text = run(capsys, "train", "--data", str(tmp_path / "nope"), "--mlflow", store)
    assert rc == 2 and "does not exist" in text
    rc, text = run(capsys, "train", "--data", str(CELEBS), "--mlflow", store, "--epochs", "0")
    assert rc == 2 and "train.epochs" in text
    rc, text = run(capsys, "train", "--data", str(CELEBS), "--mlflow", store, "--model", "resnet9000")
    assert rc == 2 and "Unknown model architecture" in text and "dlib_resnet" in text


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_single_identity_is_refused(capsys, tmp_path):
    person = tmp_path / "data" / "only_one"
    person.mkdir(parents=True)
    for src in sorted((CELEBS / "Elon").iterdir())[:2]:
        (person / src.name).write_bytes(src.read_bytes())
    rc, text = run(capsys, "train", "--data", str(tmp_path / "data"), "--mlflow", f"sqlite:///{tmp_path}/m.db",
                   "--set", f"train.chip_cache={tmp_path / 'chips'}")
    assert rc == 2 and "1 identity" in text


def test_classifier_with_missing_labels_file(capsys, tmp_path):
    rc, text = run(capsys, "train", "classifier", "--labels", str(tmp_path / "labels.csv"))
    assert rc == 2 and "not found" in text
