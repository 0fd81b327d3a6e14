"""1:1 verification on every pair of the shared photos, at the model's calibrated threshold."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tests.cli import facestream
from tests.conftest import EXAMPLES


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_every_pair_is_decided_right_at_the_calibrated_threshold(analyzer, photo_embeddings):
    threshold = analyzer.threshold
    misses, pairs = [], 0
    for (id_a, path_a, emb_a), (id_b, path_b, emb_b) in itertools.combinations(photo_embeddings, 2):
        pairs += 1
        similarity = float(np.dot(emb_a, emb_b))
        if (similarity >= threshold) != (id_a == id_b):
            kind = "false reject" if id_a == id_b else "false accept"
            misses.append(f"{kind}: {path_a.parent.name}/{path_a.name} vs {path_b.parent.name}/{path_b.name} "
                          f"similarity {similarity:.3f}")
    rate = len(misses) / pairs
    print(f"\ncompare: {pairs} pairs, {len(misses)} wrong ({rate:.2%}) at threshold {threshold:.3f}")
    for miss in misses:
        print("  " + miss)
    assert pairs > 3000
    assert rate <= 0.03


def _compare_cli(a, b):
    out = facestream("compare", a, b, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_compare_cli_json():
    same = _compare_cli(EXAMPLES / "Barack_Obama" / "obama.jpg", EXAMPLES / "Barack_Obama" / "knn_test_obama1.jpg")
    assert same["same"] is True and same["similarity"] >= same["threshold"]
    different = _compare_cli(EXAMPLES / "Barack_Obama" / "obama.jpg", EXAMPLES / "Joe_Biden" / "biden.jpg")
    assert different["same"] is False and different["similarity"] < different["threshold"]


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_compare_cli_without_a_face_is_one_clear_message(tmp_path):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (400, 300), (200, 190, 180)).save(blank)
    out = facestream("compare", blank, EXAMPLES / "Joe_Biden" / "biden.jpg")
    assert out.returncode == 2
    assert out.stderr.startswith("error: No face found in") and "Traceback" not in out.stderr
