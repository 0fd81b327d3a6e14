"""The frame step (live/recognizer.py): one per source, used by the pipeline and the webcam alike; track
templates with their own stranger tail; quality gating; roster scope."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.matcher import Matcher
from facestream.gallery.scope import Scope
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.config import SourceConfig, load_config
from facestream.stream.demo.webcam import WebcamSession
from facestream.stream.engine.imageio import load_image
from facestream.stream.engine.quality import face_quality
from facestream.stream.live.pipeline import Pipeline
from facestream.stream.live.recognizer import Recognizer
from facestream.stream.live.tracker import Track
from tests.conftest import EXAMPLES, HAMILTON

LIN = "Lin-Manuel Miranda"


@pytest.fixture
def lin_store(tmp_path, analyzer):
    s = open_store(f"sqlite:///{tmp_path}/gallery.db")
    photo = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"
    faces, _ = analyzer.largest_face(load_image(photo))
    s.enroll(LIN, [NewEmbedding(faces.embedding[0], analyzer.model_id, content_hash(photo.read_bytes()))])
    yield s
    s.close()


def clip_frames(every: int = 3, limit: int = 300):
    cap = cv2.VideoCapture(str(HAMILTON))
    i = 0
    while i < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % every == 0:
            yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_step_names_the_clip_and_returns_events(analyzer, lin_store):
    config = load_config(env={})
    with Matcher(lin_store, analyzer.model_id, analyzer.threshold, tail=analyzer.impostor_tail, watch=False) as m:
        rec = Recognizer("cam", config, analyzer, m)
        names, kinds = set(), []
        for i, rgb in clip_frames():
            step = rec.step(i, i / 30, rgb, analyzer.detect(rgb, with_landmarks=False))
            assert len(step.faces) == len(step.tracks) == len(step.embedded)
            assert step.faces.quality is not None and np.all((step.faces.quality >= 0) & (step.faces.quality <= 1))
            names.update(step.faces.name or [])
            kinds += [e.event for e in step.events]
        kinds += [e.event for e in rec.end(999, 999 / 30)]
    assert LIN in names
    assert {"track_started", "person_appeared", "person_left", "track_ended"} <= set(kinds)
    assert kinds.count("track_started") == kinds.count("track_ended")  # every track ends once, split ones too
    assert max(len(t.views) for t in rec.recent.values()) >= 2  # tracks gather distinct views


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_webcam_and_pipeline_share_the_frame_step(analyzer, lin_store):
    """The same clip through the live pipeline and through a browser's webcam session: both name Lin,
    both report quality and a track's views (one frame step, not two)."""
    config = load_config(overrides=["server.stats_every=0"], env={})
    with Matcher(lin_store, analyzer.model_id, analyzer.threshold, tail=analyzer.impostor_tail, watch=False) as m:
        piped: list[dict] = []
        pipeline = Pipeline(config, [SourceConfig(url=str(HAMILTON), id="cam0")], analyzer=analyzer, matcher=m,
                            wait_for_embeddings=True)
        pipeline.add_listener(lambda r, rgb: piped.extend(r.to_json()["faces"]))
        with pipeline:
            assert pipeline.wait(300)
        session = WebcamSession(config, analyzer, m)
        webcam = [session.step(rgb, i / 10) for i, rgb in clip_frames(every=3)]
    assert isinstance(pipeline.workers[0].recognizer, Recognizer) and isinstance(session.recognizer, Recognizer)
    assert LIN in {f["name"] for f in piped}
    assert LIN in {n for f in webcam for n in (f.name or [])}
    assert all("quality" in f for f in piped)


def test_near_duplicate_views_count_once_and_the_template_weighs_quality():
    a = np.eye(4, dtype=np.float32)[0]
    b = np.array([0.99, 0.14, 0, 0], np.float32) / np.linalg.norm([0.99, 0.14])  # cos 0.99 with a
    c = np.eye(4, dtype=np.float32)[1]
    t = Track(1, np.zeros(4, np.float32), 0, 0.0, 0, 0.0)
    assert t.template is None
    assert t.add_view(a, 0.5, 1) and not t.add_view(b, 0.9, 2)  # a near-duplicate replaces, sharper
    assert len(t.views) == 1 and t.views[0].frame == 2
    assert t.add_view(c, 0.1, 3) and len(t.views) == 2
    tmpl = t.template
    assert tmpl is not None and abs(float(np.linalg.norm(tmpl)) - 1) < 1e-6
    assert float(tmpl @ b) > float(tmpl @ c)  # the better view weighs more


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_template_names_someone_no_single_view_names(analyzer, photo_embeddings):
    """Real faces: a gallery of one photo per person. Two other photos of a person, each too unlike the
    enrolled one to be named alone at this gallery's far, are named as a track's template of 2 views,
    while the same template read as one photo would need no view shift (strangers' templates score higher)."""
    by_person: dict[str, list[np.ndarray]] = {}
    for identity, _, emb in photo_embeddings:
        by_person.setdefault(identity, []).append(np.asarray(emb, np.float32))
    store = open_store("sqlite:///:memory:")
    for name, embs in by_person.items():
        store.enroll(name, [NewEmbedding(embs[0], "m", content_hash(embs[0].tobytes()))])
    found = None
    # a strict far stands in for a big gallery (the bar a gallery of ~20 sets at 1e-6 is that of ~20,000 at 1e-3)
    with Matcher(store, "m", analyzer.threshold, tail=analyzer.impostor_tail, far=1e-6, watch=False) as m:
        for name, embs in by_person.items():
            for i in range(1, len(embs)):
                for j in range(i + 1, len(embs)):
                    singles = m.search(np.stack([embs[i], embs[j]]), top_k=1)
                    mean = (embs[i] + embs[j]) / np.linalg.norm(embs[i] + embs[j])
                    tmpl = m.search(mean, top_k=1, views=2)[0]
                    if all(r.best is None for r in singles) and tmpl.best is not None:
                        found = (name, tmpl)
                        break
                if found:
                    break
            if found:
                break
        assert found is not None, "no person whose two views are named only together"
        name, tmpl = found
        assert tmpl.best is not None and tmpl.best.name == name
        assert tmpl.threshold > m.search(mean, top_k=1, views=1)[0].threshold  # the template's bar is higher
    store.close()


def test_quality_gates_embedding(analyzer, lin_store):
    rgb = load_image(EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png")
    faces = analyzer.detect(rgb, with_landmarks=False)
    sharp = face_quality(rgb, faces)
    blurred = cv2.GaussianBlur(rgb, (0, 0), 6)
    assert face_quality(blurred, analyzer.detect(blurred, with_landmarks=False)).max() < sharp.max()
    strict = load_config(overrides=["tracking.min_quality=1.0"], env={})
    with Matcher(lin_store, analyzer.model_id, analyzer.threshold, tail=analyzer.impostor_tail, watch=False) as m:
        rec = Recognizer("cam", strict, analyzer, m)
        step = rec.step(0, 0.0, rgb, analyzer.detect(rgb, with_landmarks=False))
        assert not any(step.embedded) and rec.embedded == 0 and step.faces.name == ["unknown"]
        rec = Recognizer("cam", load_config(env={}), analyzer, m)
        step = rec.step(0, 0.0, rgb, analyzer.detect(rgb, with_landmarks=False))
        assert all(step.embedded)


def test_roster_scope_changes_the_decision(analyzer, photo_embeddings):
    """A class of 2 inside a gallery of everyone: judged as a gallery of 2 (a lower bar); someone enrolled
    but outside is unknown there, or named by the whole gallery's rule and marked outside."""
    by_person: dict[str, list[np.ndarray]] = {}
    for identity, _, emb in photo_embeddings:
        by_person.setdefault(identity, []).append(np.asarray(emb, np.float32))
    store = open_store("sqlite:///:memory:")
    people = sorted(p for p, e in by_person.items() if len(e) >= 2)
    for name, embs in by_person.items():
        store.enroll(name, [NewEmbedding(embs[0], "m", content_hash(embs[0].tobytes()))],
                     {"group": "class" if name in people[:2] else "other"})
    inside, outside = people[0], people[2]
    scope = Scope(groups=("class",)).resolve(store)
    assert scope is not None and len(scope) == 2
    with Matcher(store, "m", analyzer.threshold, tail=analyzer.impostor_tail, far=1e-3, watch=False) as m:
        probe = by_person[inside][1]
        whole, scoped = m.search(probe, top_k=1)[0], m.search(probe, top_k=1, scope=scope)[0]
        assert scoped.threshold < whole.threshold  # judged as a gallery of 2
        other = by_person[outside][1]
        assert m.search(other, top_k=1, scope=scope)[0].best is None
        wide = m.search(other, top_k=1, scope=scope, outside="gallery")[0]
        plain = m.search(other, top_k=1)[0]
        assert (wide.best is None) == (plain.best is None)
        if wide.best is not None:
            assert wide.best.name == outside and not wide.in_scope
    store.close()
