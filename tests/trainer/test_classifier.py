"""Per-image classifier heads on real face embeddings: CelebA-format attributes and a CSV verifier."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.stream.config import load_config
from facestream.trainer.classifier import read_labels, train_classifier
from tests.conftest import CELEBS

WOMEN = {"Angelina", "Scarlett", "Jennifer", "Marissa", "Katy"}


def celeb_images() -> list[tuple[str, str]]:
    return [(p.parent.name, f"{p.parent.name}/{p.name}") for p in sorted(CELEBS.glob("*/*.jpg"))
            if not p.parent.name.startswith("_")]


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_celeba_attributes_are_learned_and_logged(analyzer, tmp_path, chip_cache):
    rows = celeb_images()
    lines = [str(len(rows)), "Male Is_Angelina"]
    lines += [f"{rel} {'-1' if who in WOMEN else '1'} {'1' if who == 'Angelina' else '-1'}" for who, rel in rows]
    labels = tmp_path / "list_attr_celeba.txt"
    labels.write_text("\n".join(lines) + "\n")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config(overrides={"mlflow.tracking_uri": uri})
    try:
        result = train_classifier(labels, cfg, images_dir=CELEBS, analyzer=analyzer, out_dir=tmp_path / "out",
                                  progress=False, cache=chip_cache)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    m = result.metrics
    assert result.names == ["Male", "Is_Angelina"]
    assert m["accuracy_Male"] >= 0.8 and m["f1_Male"] >= 0.75  # gender from a face embedding: easy
    assert {"f1_Is_Angelina", "accuracy_Is_Angelina", "f1_macro"} <= set(m)
    assert (result.out_dir / "confusion.png").stat().st_size > 1000
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.data.metrics["test_accuracy_Male"] == pytest.approx(m["accuracy_Male"])
    assert {a.path for a in client.list_artifacts(result.run_id, "classifier")} >= {
        "classifier/classifier.json", "classifier/classifier.pt", "classifier/confusion.png"}


def test_csv_labels_and_value_spellings(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("image,is_obama,smiling\na.jpg,yes,0\nb.jpg,no,1\nc.jpg,TRUE,-1\n")
    t = read_labels(f)
    assert t.names == ["is_obama", "smiling"] and t.images == ["a.jpg", "b.jpg", "c.jpg"]
    assert t.values.tolist() == [[True, False], [False, True], [True, False]]
    assert t.values.dtype == np.bool_


def test_bad_labels_files_are_clear_errors(tmp_path):
    cfg = load_config()
    with pytest.raises(FacestreamError, match="not found"):
        train_classifier(tmp_path / "nope.csv", cfg)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,x\na.jpg,maybe\n")
    with pytest.raises(FacestreamError, match="'maybe' is not 0/1"):
        read_labels(bad)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("image,x,y\na.jpg,1\n")
    with pytest.raises(FacestreamError, match="1 values for 2 labels"):
        read_labels(ragged)
    missing = tmp_path / "missing.csv"
    missing.write_text("image,x\nAngelina/img1.jpg,1\nghost/1.jpg,0\nghost/2.jpg,1\n")
    with pytest.raises(FacestreamError, match=r"names 2 image\(s\) that do not exist: .*ghost/1.jpg"):
        train_classifier(missing, cfg, images_dir=CELEBS)
