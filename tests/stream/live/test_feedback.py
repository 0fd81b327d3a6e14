"""Corrections in a live run: "not this person" turns a named face unknown on the next frames, undo names
it again; "this is X" names an unknown face; corrections of an unknown track or source are clear errors."""

from __future__ import annotations

import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.gallery.matcher import Matcher
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.config import SourceConfig, load_config
from facestream.stream.engine.imageio import load_image
from facestream.stream.live.pipeline import Pipeline
from tests.conftest import EXAMPLES, HAMILTON

LIN = "Lin-Manuel Miranda"


@pytest.fixture
def store(tmp_path, analyzer):
    s = open_store(f"sqlite:///{tmp_path}/gallery.db")
    photo = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"
    faces, _ = analyzer.largest_face(load_image(photo))
    s.enroll(LIN, [NewEmbedding(faces.embedding[0], analyzer.model_id, content_hash(photo.read_bytes()))])
    s.add_person("Alex Lacamoire")
    yield s
    s.close()


def run_clip(analyzer, store, on_frame) -> dict[int, list[dict]]:
    """The clip through the pipeline (every frame waits for its embeddings: reproducible); ``on_frame(pipeline,
    result)`` runs on the worker thread after each frame. Returns each frame's faces as JSON."""
    config = load_config(overrides=["server.stats_every=0"], env={})
    matcher = Matcher(store, analyzer.model_id, analyzer.threshold, tail=analyzer.impostor_tail, watch=False)
    frames: dict[int, list[dict]] = {}
    pipeline = Pipeline(config, [SourceConfig(url=str(HAMILTON), id="cam0")], analyzer=analyzer, matcher=matcher,
                        wait_for_embeddings=True)

    def listener(result, rgb):
        frames[result.frame_index] = result.to_json()["faces"]
        on_frame(pipeline, result)

    pipeline.add_listener(listener)
    with pipeline:
        assert pipeline.wait(300)
    matcher.close()
    return frames


def lin_frames(frames: dict[int, list[dict]], lo: int, hi: int) -> list[int]:
    return [k for k in range(lo, hi) if any(f["name"] == LIN for f in frames.get(k, []))]


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_not_this_person_then_undo_in_a_live_run(analyzer, store):
    state: dict = {}

    def on_frame(pipeline, result):
        faces = result.to_json()["faces"]
        lin = next((f for f in faces if f["name"] == LIN), None)
        if "not" not in state and lin is not None and result.frame_index >= 100:  # his frontal part of the clip
            state["not"] = pipeline.feedback("cam0", lin["track_id"], "not")
            state["not_frame"] = result.frame_index
        elif "not" in state and "undo" not in state and result.frame_index >= state["not_frame"] + 25:
            state["undo"] = pipeline.undo_feedback(state["not"].id)
            state["undo_frame"] = result.frame_index

    frames = run_clip(analyzer, store, on_frame)
    assert "not" in state and "undo" in state, "Lin was never named"
    fb = state["not"]
    assert fb.verdict == "not" and fb.name == LIN and fb.id.startswith("not:")
    f0, f1 = state["not_frame"], state["undo_frame"]
    faced = [k for k in range(f0 + 1, f1 + 1) if frames.get(k)]
    assert len(faced) >= 20 and lin_frames(frames, f0 + 1, f1 + 1) == [], "named after 'not this person'"
    assert store.negatives_of(LIN) == []  # undone
    named_again = lin_frames(frames, f1 + 1, 275)
    assert named_again and named_again[0] <= f1 + 10, f"not named again soon after undo: {named_again[:5]}"


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_this_is_names_an_unknown_face(analyzer, store):
    """Alex Lacamoire (the pianist, frames ~20-80) is enrolled without a photo: unknown until a user says
    "this is Alex" on his face, through enrolment's checks; named on the next frames."""
    state: dict = {}

    def on_frame(pipeline, result):
        if "is" in state or not 25 <= result.frame_index <= 70:
            return
        faces = result.to_json()["faces"]
        big = [f for f in faces if f["box"][2] - f["box"][0] >= 60 and f.get("embedded") is not None]
        for f in big:
            track = pipeline.workers[0].find_track(f["track_id"])
            if track is not None and track.sample is not None:
                try:
                    state["is"] = pipeline.feedback("cam0", f["track_id"], "is", "Alex Lacamoire")
                    state["frame"], state["track"] = result.frame_index, f["track_id"]
                except FacestreamError as exc:  # a profile view is refused by the checks: try a later frame
                    state.setdefault("refused", []).append(str(exc))
                return

    frames = run_clip(analyzer, store, on_frame)
    assert "is" in state, f"no view of him passed the checks: {state.get('refused')}"
    assert state["is"].verdict == "is" and store.get_person("Alex Lacamoire").n_embeddings == 1
    after = [f["name"] for k in range(state["frame"] + 1, state["frame"] + 15) for f in frames.get(k, [])
             if f["track_id"] == state["track"]]
    assert "Alex Lacamoire" in after, after


def test_corrections_that_cannot_apply_say_why(analyzer, store):
    config = load_config(overrides=["server.stats_every=0"], env={})
    matcher = Matcher(store, analyzer.model_id, analyzer.threshold, watch=False)
    pipeline = Pipeline(config, [SourceConfig(url=str(HAMILTON), id="cam0")], analyzer=analyzer, matcher=matcher,
                        max_frames=5)
    with pipeline:
        pipeline.wait(60)
        with pytest.raises(FacestreamError, match="No source 'cam9'"):
            pipeline.feedback("cam9", 1, "not")
        with pytest.raises(FacestreamError, match="not known here"):
            pipeline.feedback("cam0", 987654, "not")
        with pytest.raises(FacestreamError, match="not a feedback id"):
            pipeline.undo_feedback("garbage")
    matcher.close()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_enrol_a_strangers_track_as_a_new_person(analyzer, store):
    """Issue 19, item 4: a stranger's live track (the pianist, frames ~20-80, not enrolled) becomes a new person
    from several of its sharpest, most different views, through enrolment's checks, and is named from its
    next frames; a taken name is refused with the way to add a face instead."""
    state: dict = {}

    def on_frame(pipeline, result):
        if "report" in state or not 40 <= result.frame_index <= 75:
            return
        for f in result.to_json()["faces"]:
            track = pipeline.workers[0].find_track(f["track_id"])
            if f["name"] != "unknown" or track is None or len(track.views) < 3 or f["box"][2] - f["box"][0] < 60:
                continue
            with pytest.raises(FacestreamError, match=f"{LIN} is already enrolled.*This is {LIN}"):
                pipeline.enrol_track("cam0", f["track_id"], LIN)
            try:
                state["report"] = pipeline.enrol_track("cam0", f["track_id"], "The Pianist")
                state["frame"], state["track"] = result.frame_index, f["track_id"]
            except FacestreamError as exc:  # every view refused (turned, small): try a later frame
                state.setdefault("refused", []).append(str(exc))
            return

    frames = run_clip(analyzer, store, on_frame)
    assert "report" in state, f"no view passed the checks: {state.get('refused')}"
    report = state["report"]
    stored = [v for v in report.verdicts if v.enrolled]
    assert report.people == ["The Pianist"] and len(stored) >= 2, report.to_json()
    assert all(v.source.startswith(f"feedback:camera:cam0#track{state['track']}#frame") for v in report.verdicts)
    assert store.get_person("The Pianist").n_embeddings == len(stored)
    after = [f["name"] for k in range(state["frame"] + 1, state["frame"] + 15) for f in frames.get(k, [])
             if f["track_id"] == state["track"]]
    assert "The Pianist" in after, after
