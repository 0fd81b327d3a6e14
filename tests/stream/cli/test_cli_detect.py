"""`facestream detect` on every kind of bad input: works, or one clear message and no traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.cli import facestream
from tests.conftest import EXAMPLES, GROUPS

BIDEN = EXAMPLES / "Joe_Biden" / "biden.jpg"


def _detect(*args):
    out = facestream("detect", *args, "--json")
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_detect_json_and_drawing(tmp_path):
    out = _detect(GROUPS / "obama_and_biden.jpg", "--out", tmp_path / "drawn.jpg")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    # the two men, and (photos are searched at every scale) the girl looking down at the bottom right
    assert len(report["faces"]) == 3
    face = report["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0 < face["score"] <= 1
    assert (tmp_path / "drawn.jpg").stat().st_size > 0


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_bad_inputs_each_get_one_message_and_the_good_ones_still_run(tmp_path):
    rgb = np.asarray(Image.open(BIDEN).convert("RGB"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "cut.jpg").write_bytes(BIDEN.read_bytes()[:2500])
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.jpg")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    sixteen = (np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    Image.new("RGB", (640, 480), (120, 130, 140)).save(tmp_path / "noface.png")
    # A face cut by the border: keep only the right 60% of a portrait's face box.
    h, w = rgb.shape[:2]
    Image.fromarray(rgb[:, int(w * 0.45):]).save(tmp_path / "border.jpg")
    bad = ["missing.jpg", "empty.jpg", "text.jpg", "cut.jpg"]
    good = ["grey.jpg", "rgba.png", "sixteen.png", "noface.png", "border.jpg"]
    out = _detect(*[tmp_path / n for n in bad + good], tmp_path)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad) + 1  # + the directory
    report = {item["image"].rsplit("/", 1)[-1]: item for item in json.loads(out.stdout)}
    for name in ("grey.jpg", "rgba.png", "sixteen.png"):
        assert len(report[name]["faces"]) == 1, name
    assert report["noface.png"]["faces"] == []
    assert "error" not in report["border.jpg"]


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_one_pixel_high_image_gets_one_message(tmp_path):
    Image.new("RGB", (40, 1), (120, 130, 140)).save(tmp_path / "sliver.png")
    out = _detect(tmp_path / "sliver.png")
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "too small" in errors[0] and "40x1" in errors[0], out.stderr
