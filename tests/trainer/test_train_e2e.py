"""A real fine-tune on real photos, on the CPU, recorded in a real MLflow store, then used by the live runtime.

One short run (two epochs, the early stages frozen) of the dlib ResNet on the
celebrity photos; the pretrained model is evaluated on the same held-out
identities; the model is registered and becomes ``champion``; the runtime then
loads ``models:/facestream-embedder@champion`` and recognises people it was not
trained on. A from-scratch model, clearly worse, must not take the alias.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from facestream.stream.config import load_config
from facestream.trainer.data import load_chip_set
from tests.conftest import CELEBS, EXAMPLES, GROUPS

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

REGISTRY = "facestream-embedder"


@pytest.fixture(scope="module")
def celeb_chips(analyzer, chip_cache):
    return load_chip_set(CELEBS, analyzer, cache=chip_cache, progress=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    yield f"sqlite:///{root}/mlflow.db", root
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def config(store_uri: str, **train):
    overrides = {"mlflow.tracking_uri": store_uri, "train.batch_size": 16, "train.epochs": 2, **train}
    return load_config(overrides={f"train.{k}" if "." not in k else k: v for k, v in overrides.items()})


@pytest.fixture(scope="module")
def finetuned(celeb_chips, store, tmp_path_factory):
    from facestream.trainer.train import train_embedder

    uri, _ = store
    cfg = config(uri, freeze="stage3")
    return train_embedder(celeb_chips, cfg, out_dir=tmp_path_factory.mktemp("models"), progress=False)


def test_chips_come_from_every_usable_photo(celeb_chips):
    assert celeb_chips.counts() == {"images": 61, "identities": 13}
    assert celeb_chips.chips.shape[1:] == (150, 150, 3) and celeb_chips.chips.dtype == np.uint8
    assert not celeb_chips.report.skipped


def test_finetune_is_evaluated_against_pretrained_and_logged(finetuned, store):
    uri, _ = store
    r = finetuned
    for m in (r.metrics, r.pretrained_metrics):
        assert {"auc", "eer", "top1", "top5", "pairs_impostor"} <= set(m)
        assert "tar_far1e-3" not in m  # a few hundred impostor pairs cannot measure a FAR of 1e-3
        assert "accuracy" not in m  # nothing is fitted on the test people
    # the threshold was chosen on validation people for a stated target and judged on the test people
    assert {"threshold", "far_at_threshold", "frr_at_threshold", "accuracy_at_threshold"} <= set(r.metrics)
    # the pretrained dlib ResNet separates these held-out celebrities, and the fine-tune must not wreck it
    assert r.pretrained_metrics["auc"] > 0.95
    assert r.metrics["auc"] > 0.95 and r.metrics["top1"] >= 0.8
    assert len(r.history) == 2 and all(np.isfinite(h["train_loss"]) for h in r.history)

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(r.run_id)
    assert run.data.params["train.freeze"] == "stage3" and run.data.params["data_fingerprint"] == r.data_fingerprint
    assert run.data.params["test_split"] == r.test_split
    assert "test_far_at_threshold" in run.data.metrics and "pretrained_test_auc" in run.data.metrics
    assert run.data.params["threshold_rule"] in ("eer", "far=1e-03")
    assert len(client.get_metric_history(r.run_id, "train_loss")) == 2
    artifacts = {a.path for a in client.list_artifacts(r.run_id)} | {
        a.path for d in ("plots", "model") for a in client.list_artifacts(r.run_id, d)}
    assert {"plots/roc.png", "plots/training_curves.png", "model/spec.json", "model/model.onnx",
            "model/weights.pt", "config.json", "split.json"} <= artifacts
    spec = json.loads((r.model_dir / "spec.json").read_text())
    assert spec["threshold"] == pytest.approx(r.spec.threshold) and -1 < spec["threshold"] < 1
    assert spec["extra"]["threshold_rule"]["on"] in ("val", "train")
    people = spec["extra"]["identities"]  # whom it trained on: the champion rule and `eval` read this
    assert set(people["test"]).isdisjoint(set(people["train"]) | set(people["val"]))
    assert spec["input_size"] == 150 and spec["architecture"] == "dlib_resnet"


def test_frozen_stages_did_not_move_and_later_ones_did(finetuned, store):
    import torch

    from facestream.stream.engine.networks import create_model

    params = mlflow.MlflowClient(tracking_uri=store[0]).get_run(finetuned.run_id).data.params
    if int(params["best_epoch"]) == 0:
        pytest.fail("validation kept the starting weights: the fine-tune changed nothing")
    pre = create_model("dlib_resnet", pretrained=True).state_dict()
    new = torch.load(finetuned.spec.weights_path, map_location="cpu", weights_only=True)
    assert torch.equal(pre["stem.conv.weight"], new["stem.conv.weight"])
    assert torch.equal(pre["stage3.0.conv1.weight"], new["stage3.0.conv1.weight"])
    assert not torch.equal(pre["stage4.0.conv1.weight"], new["stage4.0.conv1.weight"])


def test_runtime_recognises_people_with_the_champion(finetuned, store, tmp_path):
    from facestream.gallery import open_store
    from facestream.stream.engine.analyzer import FaceAnalyzer
    from facestream.stream.engine.imageio import load_image
    from facestream.stream.recognition.enroll import Enroller, Photo
    from facestream.stream.recognition.identify import identify, open_matcher

    uri, _ = store
    assert finetuned.version == "1"
    # champion only if it beat the pretrained model on unseen people; the runtime loads any registered version
    assert finetuned.promoted or "does not beat the pretrained model" in finetuned.decision, finetuned.decision
    cfg = load_config(overrides={"mlflow.tracking_uri": uri,
                                 "embedder.model": f"models:/{REGISTRY}/1", "embedder.engine": "onnxruntime"})
    analyzer = FaceAnalyzer(cfg)
    assert analyzer.model_id == finetuned.spec.model_id
    assert analyzer.threshold == pytest.approx(finetuned.spec.threshold)
    store_ = open_store(f"sqlite:///{tmp_path}/gallery.db")
    enroller = Enroller(analyzer, store_, progress=False)
    # people the model never trained on
    for person, photo in [("Barack_Obama", "obama.jpg"), ("Joe_Biden", "biden.jpg"),
                          ("Kit_Harington", "john1.jpeg"), ("Rose_Leslie", "img1.jpg")]:
        enroller.enroll_person(person, [Photo.from_path(EXAMPLES / person / photo)])
    matcher = open_matcher(analyzer, store_, watch=False)
    faces, _ = identify(analyzer, matcher, load_image(EXAMPLES / "Barack_Obama" / "obama2.jpg"))
    assert faces.name == ["Barack_Obama"]
    faces, _ = identify(analyzer, matcher, load_image(GROUPS / "kit_with_rose.jpg"))
    assert sorted(faces.name) == ["Kit_Harington", "Rose_Leslie"]


def test_a_worse_model_does_not_take_the_champion(finetuned, celeb_chips, store, tmp_path):
    from facestream.trainer.train import train_embedder

    uri, _ = store
    cfg = config(uri, model="small_net", pretrained=False, epochs=1)
    worse = train_embedder(celeb_chips, cfg, out_dir=tmp_path, progress=False)
    assert worse.metrics["auc"] < finetuned.metrics["auc"]
    assert worse.version == "2" and not worse.promoted and "does not beat" in worse.decision
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_registered_model(REGISTRY).aliases.get("champion")
    assert champion == (finetuned.version if finetuned.promoted else None)
    assert worse.test_split == finetuned.test_split


def test_skips_unreadable_and_faceless_images_and_refuses_one_identity(analyzer, tmp_path):
    from facestream.errors import FacestreamError

    alice = tmp_path / "data" / "alice"
    alice.mkdir(parents=True)
    for src in sorted((CELEBS / "Angelina").iterdir())[:2]:
        (alice / src.name).write_bytes(src.read_bytes())
    (alice / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (alice / "group.jpg").write_bytes((GROUPS / "obama_and_biden.jpg").read_bytes())
    (tmp_path / "data" / "empty_person").mkdir()
    with pytest.raises(FacestreamError, match="1 identity"):
        load_chip_set(tmp_path / "data", analyzer, cache=tmp_path / "cache", progress=False)
    bob = tmp_path / "data" / "bob"
    bob.mkdir()
    for src in sorted((CELEBS / "Jack").iterdir())[:2]:
        (bob / src.name).write_bytes(src.read_bytes())
    cs = load_chip_set(tmp_path / "data", analyzer, cache=tmp_path / "cache", progress=False)
    assert cs.names == ["alice", "bob"] and len(cs) == 4
    reasons = {Path(p).name: why for p, why in cs.report.skipped}
    assert reasons["broken.jpg"].startswith("unreadable") and reasons["group.jpg"].startswith("3 usable faces")
    assert cs.report.empty_folders == [str(tmp_path / "data" / "empty_person")]


def test_eval_command_compares_with_pretrained_on_the_same_split(finetuned, chip_cache, tmp_path, capsys):
    from facestream.stream.cli import main

    out = tmp_path / "eval"
    rc = main(["eval", "--data", str(CELEBS), "--model", str(finetuned.model_dir), "--out", str(out), "--json",
               "--set", f"train.chip_cache={chip_cache}"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split_fingerprint"] == finetuned.test_split  # the split training held out
    assert result["model"] == finetuned.spec.model_id and result["pretrained"].startswith("dlib-resnet-v1@")
    # the runtime's ONNX engine reproduces what the trainer measured in torch
    assert result["excluded"] == []  # the held-out split: none of them trained on
    for k in ("auc", "eer", "top1"):
        assert result["metrics"][k] == pytest.approx(finetuned.metrics[k], abs=1e-3)
        assert result["pretrained_metrics"][k] == pytest.approx(finetuned.pretrained_metrics[k], abs=1e-3)
    assert (out / "roc.png").stat().st_size > 5000 and (out / "metrics.json").is_file()


def test_eval_never_scores_a_model_on_people_it_trained_on(finetuned, chip_cache, tmp_path, capsys):
    from facestream.stream.cli import main

    people = json.loads((finetuned.model_dir / "spec.json").read_text())["extra"]["identities"]
    seen = set(people["train"]) | set(people["val"])
    rc = main(["eval", "--data", str(CELEBS), "--model", str(finetuned.model_dir), "--split", "all", "--json",
               "--out", str(tmp_path / "all"), "--set", f"train.chip_cache={chip_cache}"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["excluded"]) == seen  # every person it trained on was left out, and said so
    assert result["identities"] == len(people["test"])
    # a data set of its training people only: refused, with the reason
    only_seen = tmp_path / "seen"
    for name in sorted(seen):
        (only_seen / name).mkdir(parents=True)
        for f in (CELEBS / name).iterdir():
            (only_seen / name / f.name).write_bytes(f.read_bytes())
    rc = main(["eval", "--data", str(only_seen), "--model", str(finetuned.model_dir), "--split", "all",
               "--out", str(tmp_path / "seen-out"), "--set", f"train.chip_cache={chip_cache}"])
    err = capsys.readouterr().err
    assert rc == 2 and "trained or calibrated on the people" in err
