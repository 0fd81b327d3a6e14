"""Two `facestream train` runs at once into one MLflow store: one promotion decision at a time, taken on people
neither model trained on, and never for the worse model.

A fine-tune of the pretrained dlib ResNet and a small net from scratch (clearly worse) run concurrently as
separate processes on the celebrity photos. Whatever the order in which they finish, the store ends with at
most one champion; the small net never takes it; a champion, if any, beat the pretrained model on the people
both were measured on. (On these photos the pretrained model is already perfect, so "no champion" is a correct
end too: a tie with the model the runtime already uses is not a reason to switch.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pytest

from tests.conftest import CELEBS, ROOT

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

REGISTRY = "facestream-embedder"


def test_two_concurrent_train_runs_end_with_at_most_one_champion_never_the_worse(tmp_path, chip_cache):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--data", str(CELEBS), "--mlflow", uri, "--epochs", "1", "--json", "--out", str(tmp_path / "models"),
              "--set", f"train.chip_cache={chip_cache}", "--set", "train.batch_size=16"]
    runs = {
        "finetune": ["--freeze", "stage3"],
        "scratch": ["--model", "small_net", "--set", "train.pretrained=false"],
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FACESTREAM_CACHE": os.environ.get("FACESTREAM_CACHE", "")}
    env = {k: v for k, v in env.items() if v}
    procs = {name: subprocess.Popen([sys.executable, "-m", "facestream", "train", *common, *extra], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name, extra in runs.items()}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=900)
        assert p.returncode == 0, stderr[-3000:]
        out[name] = json.loads(stdout)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name='{REGISTRY}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]  # both registered
    champion = client.get_registered_model(REGISTRY).aliases.get("champion")
    promoted = [name for name, r in out.items() if r["champion"]]
    assert len(promoted) <= 1
    assert not out["scratch"]["champion"] and "does not beat" in out["scratch"]["decision"]
    for r in out.values():  # every decision names the people it was measured on
        assert "people" in r["decision"] or "not comparable" in r["decision"], r["decision"]
    if promoted:
        assert champion is not None and str(champion) == out[promoted[0]]["version"]
        assert "beats the pretrained model" in out[promoted[0]]["decision"] or \
            "and the pretrained model" in out[promoted[0]]["decision"]
    else:
        assert champion is None
        assert "does not beat the pretrained model" in out["finetune"]["decision"]
    # the lock beside the store did its job and stays harmless
    assert (tmp_path / f".mlflow.db.{REGISTRY}.champion.lock").exists()
