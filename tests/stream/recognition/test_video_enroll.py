"""Enrolment from a video: several sharp, different views of the clip's main person, through enrolment's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.matcher import Matcher
from facestream.stream.engine.imageio import load_image
from facestream.stream.engine.quality import DUPLICATE_VIEW
from facestream.stream.recognition.enroll import Enroller
from facestream.stream.recognition.video_enroll import VIEWS, collect_views, main_person, pick_views
from tests.conftest import EXAMPLES, HAMILTON


def test_picks_distinct_views_of_the_main_person(analyzer):
    views = collect_views(analyzer, HAMILTON)
    main = main_person(views, analyzer.threshold)
    picked = pick_views(main)
    assert 3 <= len(picked) <= VIEWS and len(main) < len(views)  # somebody else was seen too, and left out
    emb = np.stack([v.embedding for v in picked])
    sims = emb @ emb.T
    assert sims[np.triu_indices(len(picked), 1)].max() < DUPLICATE_VIEW  # no near-duplicates
    assert min(v.quality for v in picked) >= np.median([v.quality for v in main])  # the better half


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_enroll_a_clip_then_name_a_photo(analyzer, tmp_path, capsys):
    from facestream.stream.cli import main

    url = f"sqlite:///{tmp_path}/g.db"
    assert main(["enroll", str(HAMILTON), "--name", "Lin", "--gallery", url, "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    stored = [v for v in report["images"] if v["verdict"] == "enrolled"]
    assert len(stored) >= 3 and all("#frame" in v["source"] for v in stored)
    store = open_store(url)
    assert store.get_person("Lin").n_embeddings == len(stored)
    with Matcher(store, analyzer.model_id, analyzer.threshold, tail=analyzer.impostor_tail, watch=False) as m:
        faces, _ = analyzer.largest_face(load_image(EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"))
        assert m.identify(faces.embedding[0]).best.name == "Lin"
    store.close()


def test_a_video_without_faces_stores_nothing(analyzer, tmp_path):
    import cv2

    clip = tmp_path / "empty.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(10):
        out.write(np.full((48, 64, 3), 128, np.uint8))
    out.release()
    store = open_store(f"sqlite:///{tmp_path}/g.db")
    report = Enroller(analyzer, store, progress=False).enroll_video(clip, "Nobody")
    assert [v.verdict for v in report.verdicts] == ["no_face"] and store.find_person("Nobody") is None
    store.close()
