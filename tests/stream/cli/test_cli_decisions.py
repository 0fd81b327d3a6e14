"""The decision commands end to end, as a user types them: compare --pairs, identify over many photos,
calibrate on a small gallery, and feedback (not / is / list / undo)."""

from __future__ import annotations

import csv
import json

import pytest

from tests.cli import facestream
from tests.conftest import CELEBS, EXAMPLES

pytestmark = pytest.mark.slow  # whole commands over the shared photos (`make test-fast` skips it)


def test_compare_pairs_prints_a_line_per_pair_and_the_error_rates(tmp_path):
    rows = [
        (EXAMPLES / "Barack_Obama" / "obama.jpg", EXAMPLES / "Barack_Obama" / "obama2.jpg", "1"),
        (EXAMPLES / "Joe_Biden" / "biden.jpg", EXAMPLES / "Joe_Biden" / "biden2.jpg", "yes"),
        (EXAMPLES / "Barack_Obama" / "obama.jpg", EXAMPLES / "Joe_Biden" / "biden.jpg", "0"),
        (CELEBS / "Angelina" / "img1.jpg", CELEBS / "Jennifer" / "img3.jpg", "false"),
        ("missing.jpg", EXAMPLES / "Joe_Biden" / "biden.jpg", "0"),
    ]
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "same"])
        w.writerows(rows)
    out = facestream("compare", "--pairs", pairs)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == len(rows) + 1
    for line, (a, b, _) in zip(lines, rows, strict=False):
        assert line["a"] == str(a) and line["b"] == str(b)
    assert [x.get("same") for x in lines[:4]] == [True, True, False, False]
    assert all(0 <= x["similarity"] <= 1 and "expected" in x for x in lines[:4])
    assert "error" in lines[4] and "missing.jpg" in lines[4]["error"]
    summary = lines[-1]
    assert summary["summary"] and summary["pairs"] == 4 and summary["errors"] == 1
    assert summary["accuracy"] == 1.0 and summary["far"] == 0.0 and summary["frr"] == 0.0
    # without labels: no rates; a CSV without a,b columns is one clear message
    (tmp_path / "plain.csv").write_text(f"a,b\n{rows[0][0]},{rows[0][1]}\n")
    plain = [json.loads(x) for x in facestream("compare", "--pairs", tmp_path / "plain.csv").stdout.splitlines()]
    assert plain[0]["same"] is True and "expected" not in plain[0] and "accuracy" not in plain[-1]
    (tmp_path / "bad.csv").write_text("left,right\nx,y\n")
    bad = facestream("compare", "--pairs", tmp_path / "bad.csv")
    assert bad.returncode == 2 and "no columns a and b" in bad.stderr


def test_identify_many_photos_and_a_folder_prints_json_lines(tmp_path):
    gallery = f"sqlite:///{tmp_path}/g.db"
    assert facestream("enroll", EXAMPLES / "Joe_Biden" / "biden.jpg", "--name", "Joe Biden", "--gallery",
                      gallery, "--quiet").returncode == 0
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    photos = [EXAMPLES / "Joe_Biden" / "biden2.jpg", EXAMPLES / "Barack_Obama" / "obama.jpg", tmp_path / "broken.jpg"]
    out = facestream("identify", *photos, "--gallery", gallery)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["photo"] for x in lines] == [str(p) for p in photos]
    assert lines[0]["faces"][0]["name"] == "Joe Biden" and 0 < lines[0]["faces"][0]["far"] < 1e-3
    assert lines[0]["faces"][0]["confidence"] > 0.999 and lines[0]["faces"][0]["threshold"] > 0.9
    assert lines[1]["faces"][0]["name"] == "unknown"
    assert "error" in lines[2]
    folder = facestream("identify", EXAMPLES / "Joe_Biden", "--gallery", gallery)
    assert [json.loads(x)["photo"].rsplit("/", 1)[-1] for x in folder.stdout.splitlines()] == ["biden.jpg",
                                                                                             "biden2.jpg"]


def test_calibrate_on_a_small_gallery_says_it_has_too_little_data(tmp_path):
    gallery = f"sqlite:///{tmp_path}/g.db"
    assert facestream("enroll", EXAMPLES, "--gallery", gallery, "--quiet").returncode == 0
    out = facestream("calibrate", "--gallery", gallery, "--plot", tmp_path / "cal.png", "--strangers",
                     CELEBS / "Angelina", CELEBS / "Mark")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "too few to measure" in out.stdout and "not stored" in out.stdout
    assert "far 0.001 (chosen)" in out.stdout and (tmp_path / "cal.png").stat().st_size > 10_000
    js = json.loads(facestream("calibrate", "--gallery", gallery, "--plot", tmp_path / "c2.png", "--json",
                               "--dry-run").stdout)
    assert js["people"] == 6 and js["stored"] is False and js["shift"] is None and js["warnings"]
    chosen = next(r for r in js["thresholds"] if "chosen" in r["label"])
    assert chosen["target_far"] == 0.001 and 0.9 < chosen["threshold"] < 1.0
    # --force stores the operating point with the gallery; --reset takes it away
    forced = facestream("calibrate", "--gallery", gallery, "--plot", tmp_path / "c3.png", "--force", "--far", "0.01")
    assert forced.returncode == 0 and "stored with the gallery: far 0.01" in forced.stdout
    from facestream.gallery import open_store

    with open_store(gallery) as store:
        op = next(v for k, v in [(k, store.get_setting(k)) for k in _keys(store)] if v)
        assert op["far"] == 0.01 and op["people"] == 6
    assert facestream("calibrate", "--gallery", gallery, "--reset").returncode == 0
    with open_store(gallery) as store:
        assert not any(store.get_setting(k) for k in _keys(store))


def _keys(store) -> list[str]:
    return [f"operating_point:{m}" for m in store.model_counts()]


def test_feedback_not_list_undo_and_is(tmp_path):
    gallery = f"sqlite:///{tmp_path}/g.db"
    biden, biden2 = EXAMPLES / "Joe_Biden" / "biden.jpg", EXAMPLES / "Joe_Biden" / "biden2.jpg"
    assert facestream("enroll", biden, "--name", "Joe Biden", "--gallery", gallery, "--quiet").returncode == 0

    def name_of(photo) -> str:
        out = facestream("identify", photo, "--gallery", gallery, "--json")
        return json.loads(out.stdout)["faces"][0]["name"]

    assert name_of(biden2) == "Joe Biden"
    marked = json.loads(facestream("feedback", "not", biden2, "--person", "Joe Biden", "--gallery", gallery,
                                   "--json").stdout)
    assert marked["verdict"] == "not" and name_of(biden2) == "unknown" and name_of(biden) == "Joe Biden"
    listed = json.loads(facestream("feedback", "list", "--gallery", gallery, "--json").stdout)
    assert [x["id"] for x in listed] == [marked["id"]]
    assert facestream("feedback", "undo", marked["id"], "--gallery", gallery).returncode == 0
    assert name_of(biden2) == "Joe Biden"
    again = facestream("feedback", "undo", marked["id"], "--gallery", gallery)
    assert again.returncode == 2 and "Nothing to undo" in again.stderr
    # "this is": a new person through enrolment's checks, undoable
    obama = EXAMPLES / "Barack_Obama" / "obama.jpg"
    bad = facestream("feedback", "is", obama, "--person", "Barack", "--gallery", gallery)
    assert bad.returncode == 2 and "No person 'Barack'" in bad.stderr
    added = json.loads(facestream("feedback", "is", obama, "--person", "Barack", "--new", "--gallery", gallery,
                                  "--json").stdout)
    assert added["verdict"] == "is" and name_of(EXAMPLES / "Barack_Obama" / "obama2.jpg") == "Barack"
    refused = facestream("feedback", "is", obama, "--person", "Joe Biden", "--face", "1", "--gallery", gallery)
    assert refused.returncode == 2 and "not added" in refused.stderr  # Obama does not look like Joe
    assert facestream("feedback", "undo", added["id"], "--gallery", gallery).returncode == 0
    assert name_of(EXAMPLES / "Barack_Obama" / "obama2.jpg") == "unknown"
    assert facestream("feedback", "undo", "nonsense", "--gallery", gallery).returncode == 2


@pytest.mark.parametrize("args", [["compare"], ["compare", "a.jpg", "b.jpg", "--pairs", "p.csv"]])
def test_compare_needs_two_photos_or_pairs(args):
    out = facestream(*args)
    assert out.returncode == 2 and out.stderr.startswith("error:")
