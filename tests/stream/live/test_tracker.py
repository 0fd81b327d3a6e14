"""Tracking and identity voting on synthetic boxes (the geometry is the whole input here)."""

from __future__ import annotations

import numpy as np

from facestream.stream.config import TrackingConfig
from facestream.stream.engine.boxes import box_iou as iou_matrix
from facestream.stream.engine.faces import UNKNOWN, Faces
from facestream.stream.live.tracker import Tracker, Vote


def faces(*boxes) -> Faces:
    return Faces(xyxy=np.array(boxes, np.float32).reshape(-1, 4), score=np.ones(len(boxes), np.float32))


def test_iou_matrix():
    iou = iou_matrix([[0, 0, 10, 10], [100, 100, 110, 110]], [[0, 0, 10, 10], [5, 0, 15, 10]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150], [0.0, 0.0]], atol=1e-6)


def test_two_people_keep_their_ids_while_moving_and_crossing_order():
    tr = Tracker(TrackingConfig(iou_match=0.3))
    first = tr.update(faces([0, 0, 50, 50], [200, 0, 250, 50]), 0, 0.0)
    a, b = first.track_ids
    assert a != b and len(first.started) == 2
    for k in range(1, 20):
        # move 4 px per frame; list them in swapped order on odd frames
        boxes = [[4 * k, 0, 50 + 4 * k, 50], [200 - 4 * k, 0, 250 - 4 * k, 50]]
        f = faces(*(boxes if k % 2 == 0 else boxes[::-1]))
        upd = tr.update(f, k, k / 30)
        ids = list(upd.track_ids) if k % 2 == 0 else list(upd.track_ids[::-1])
        assert ids == [a, b] and not upd.started and not upd.ended
        assert list(f.track_id) == list(upd.track_ids)
    assert upd.tracks[0].age_frames == 20 and abs(max(t.age_s for t in upd.tracks) - 19 / 30) < 1e-9


def test_missing_frames_survive_then_end_and_new_person_gets_new_id():
    tr = Tracker(TrackingConfig(max_missing=3))
    (tid,) = tr.update(faces([0, 0, 50, 50]), 0, 0.0).track_ids
    for k in range(1, 4):  # three empty frames: still alive
        assert tr.update(Faces.empty(), k, k).ended == []
    assert tr.update(faces([2, 2, 52, 52]), 4, 4.0).track_ids[0] == tid
    ended = []
    for k in range(5, 10):
        ended += tr.update(Faces.empty(), k, k).ended
    assert [t.track_id for t in ended] == [tid]
    upd = tr.update(faces([0, 0, 50, 50]), 10, 10.0)
    assert upd.track_ids[0] != tid and len(upd.started) == 1
    assert [t.track_id for t in tr.end_all()] == [upd.track_ids[0]] and tr.tracks == []


def test_far_jump_starts_a_new_track():
    tr = Tracker(TrackingConfig(iou_match=0.3))
    (a,) = tr.update(faces([0, 0, 50, 50]), 0, 0.0).track_ids
    (b,) = tr.update(faces([300, 300, 350, 350]), 1, 0.1).track_ids
    assert a != b


def test_vote_needs_min_votes_and_one_bad_frame_does_not_rename():
    cfg = TrackingConfig(vote_window=5, min_votes=2, embed_every=10)
    tr = Tracker(cfg)
    (t,) = tr.update(faces([0, 0, 50, 50]), 0, 0.0).tracks
    assert tr.needs_embedding(t, 0)  # new
    assert not tr.vote(t, Vote("ada", "Ada", 0.9, 0))
    assert t.name == UNKNOWN and tr.uncertain(t) and tr.needs_embedding(t, 1)
    assert tr.vote(t, Vote("ada", "Ada", 0.92, 1))
    assert (t.person_id, t.name) == ("ada", "Ada") and abs(t.similarity - 0.91) < 1e-6
    assert not tr.uncertain(t)
    assert not tr.needs_embedding(t, 5) and tr.needs_embedding(t, 11)  # every embed_every frames
    # one bad frame: somebody else
    assert not tr.vote(t, Vote("bob", "Bob", 0.7, 11))
    assert t.name == "Ada" and tr.uncertain(t) and tr.needs_embedding(t, 12)  # disagreement: check again soon
    tr.vote(t, Vote("ada", "Ada", 0.9, 12))
    assert t.name == "Ada" and not tr.uncertain(t)
    # nobody-votes never name the track, but push old votes out of the window
    for k in range(13, 18):
        tr.vote(t, Vote(None, UNKNOWN, 0.2, k))
    assert t.name == UNKNOWN and t.person_id is None


def test_unknown_votes_count_against_a_name():
    """Two chance matches of a stranger among five "nobody" votes must not name the track."""
    tr = Tracker(TrackingConfig(vote_window=7, min_votes=2))
    (t,) = tr.update(faces([0, 0, 50, 50]), 0, 0.0).tracks
    for k, pid in enumerate([None, "ada", None, None, "ada", None, None]):
        tr.vote(t, Vote(pid, "Ada" if pid else UNKNOWN, 0.93 if pid else 0.85, k))
    assert t.name == UNKNOWN and t.person_id is None
    # the named votes must outnumber the unknown ones: 4 Ada, 3 nobody names her
    for k, pid in enumerate(["ada", "ada", "ada"], start=7):
        tr.vote(t, Vote(pid, "Ada", 0.95, k))
    assert [v.person_id for v in t.votes].count("ada") == 4 and t.name == "Ada"


def test_tie_keeps_current_name():
    tr = Tracker(TrackingConfig(vote_window=4, min_votes=2))
    (t,) = tr.update(faces([0, 0, 50, 50]), 0, 0.0).tracks
    for k, pid in enumerate(["ada", "ada", "bob"]):
        tr.vote(t, Vote(pid, pid.title(), 0.8, k))
    tr.vote(t, Vote("bob", "Bob", 0.99, 3))  # 2:2, Bob more similar, but Ada holds the name
    assert t.name == "Ada"
    tr.vote(t, Vote("bob", "Bob", 0.9, 4))  # window ada, bob, bob, bob
    assert t.name == "Bob"


def test_unknown_person_stays_unknown_with_stable_id_and_settles():
    cfg = TrackingConfig(vote_window=7, min_votes=2, embed_every=5)
    tr = Tracker(cfg)
    embeds = 0
    tid = None
    for k in range(30):
        upd = tr.update(faces([10 + k, 10, 60 + k, 60]), k, k / 30)
        (t,) = upd.tracks
        tid = tid or t.track_id
        assert t.track_id == tid
        if tr.needs_embedding(t, k):
            embeds += 1
            tr.vote(t, Vote(None, UNKNOWN, 0.3, k))
        assert t.name == UNKNOWN
    # two votes settle "unknown"; after that, one check every 5 frames: 0,1, 6, 11, 16, 21, 26
    assert embeds == 7


def unit(*v) -> np.ndarray:
    x = np.array(v, np.float32)
    return x / np.linalg.norm(x)


def test_a_weak_overlap_triggers_a_check_and_a_new_face_splits_the_track():
    tr = Tracker(TrackingConfig(iou_match=0.3, vote_window=5, min_votes=2, embed_every=10))
    (t,) = tr.update(faces([0, 0, 100, 100]), 0, 0.0).tracks
    for k in range(2):
        t, split = tr.check_appearance(t, unit(1, 0, 0), 0.9, k, k)
        assert split is None
        tr.vote(t, Vote("ada", "Ada", 0.95, k))
    tr.update(faces([2, 0, 102, 100]), 2, 2.0)
    assert t.name == "Ada" and not tr.needs_embedding(t, 2)
    # a scene cut: a smaller face overlapping the old box continues the track (IoU ~0.36)...
    (same,) = tr.update(faces([40, 20, 100, 80]), 3, 3.0).tracks
    assert same is t and tr.needs_embedding(t, 3)  # ...but is checked at once
    same_look, split = tr.check_appearance(t, unit(0.99, 0.14, 0), 0.9, 3, 3.0)
    assert split is None and same_look is t and not t.jumped
    new, split = tr.check_appearance(t, unit(0, 1, 0), 0.9, 3, 3.0)  # somebody else
    assert split is t and new is not t and new.track_id != t.track_id
    assert new.name == UNKNOWN and not new.votes and tr.tracks == [new]
    np.testing.assert_array_equal(new.box, t.box)


def test_a_person_excluded_by_a_user_is_never_voted_for_that_track():
    tr = Tracker(TrackingConfig(vote_window=5, min_votes=2))
    (t,) = tr.update(faces([0, 0, 50, 50]), 0, 0.0).tracks
    for k in range(3):
        tr.vote(t, Vote("ada", "Ada", 0.95, k))
    assert t.name == "Ada"
    t.excluded.add("ada")  # "not Ada", from the dashboard
    tr.forget_identity(t)
    assert t.name == UNKNOWN and tr.needs_embedding(t, 3)
    for k in range(3, 9):
        tr.vote(t, Vote("ada", "Ada", 0.97, k))
    assert t.name == UNKNOWN and all(v.person_id is None for v in t.votes)
    tr.vote(t, Vote("bob", "Bob", 0.96, 9))
    tr.vote(t, Vote("bob", "Bob", 0.96, 10))
    assert t.name == UNKNOWN  # two Bob votes against three unknown
    t.excluded.discard("ada")  # undone
    for k in range(11, 14):
        tr.vote(t, Vote("ada", "Ada", 0.97, k))
    assert t.name == "Ada"
