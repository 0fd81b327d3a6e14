"""A user's corrections: "not this person" and "this is X", each one undoable; and "enrol this stranger".

* **not**: the face is kept as a negative of the person it was named as
  (:meth:`GalleryStore.add_negative`); the matcher stops naming faces that look
  more like that person's negatives than like the person.
* **is**: an unknown (or misnamed) face is added to a person through the same
  checks as enrolment (size, sharpness, head turn, does it look like them, does it
  look like somebody else): :meth:`Enroller.enroll_face`.

Both write to the gallery, so every worker that shares it sees the change at its
next search (SQLite compares the version; Redis announces it). A feedback id,
``<verdict>:<person id>:<hash>``, names everything needed to undo it, so undo
works from any process, after a restart too. Deleting the person deletes both kinds.

* **enrol this track**: a stranger's live track becomes a new person from its sharpest, most different
  views (:func:`enrol_track`), as a video does (:meth:`Enroller.enroll_views`); undone by deleting them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery.store import GalleryStore, check_name
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.recognition.enroll import Enroller, EnrollReport, encode_jpeg
from facestream.stream.recognition.video_enroll import VideoView

SOURCE_PREFIX = "feedback:"  # the source of faces added by "this is X" (how `list` finds them)


@dataclass
class FaceSample:
    """One embedded view of a face (a live track's latest, a face of a photo): what a correction stores."""

    chip: np.ndarray  # the aligned chip (RGB)
    embedding: np.ndarray
    landmarks: np.ndarray | None  # dlib's 5 points in the picture the face came from (head turn)
    width: float  # the face's size in that picture (px)
    where: str = ""  # e.g. "frame812"


@dataclass
class Feedback:
    """One correction."""

    id: str
    verdict: str  # "not" | "is"
    person_id: str
    name: str
    hash: str
    source: str
    created: float
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def feedback_id(verdict: str, person_id: str, hash: str) -> str:
    return f"{verdict}:{person_id}:{hash}"


def parse_id(text: str) -> tuple[str, str, str]:
    parts = str(text).strip().split(":")
    if len(parts) != 3 or parts[0] not in ("not", "is") or not all(parts):
        raise FacestreamError(f"{text!r} is not a feedback id.", "Use an id that `facestream feedback list` shows.")
    return parts[0], parts[1], parts[2]


def mark_not(store: GalleryStore, person: str, face: FaceSample, model_id: str, source: str) -> Feedback:
    """Keep a face as "not ``person``" (idempotent)."""
    p = store.get_person(person)
    chip = np.ascontiguousarray(face.chip, np.uint8)
    h = content_hash(chip.tobytes())
    store.add_negative(p.id, NewEmbedding(np.asarray(face.embedding, np.float32), model_id, h, encode_jpeg(chip),
                                          source, time.time(), negative=True))
    return Feedback(feedback_id("not", p.id, h), "not", p.id, p.name, h, source, time.time())


def mark_is(enroller: Enroller, person: str, face: FaceSample, source: str, create: bool = False) -> Feedback:
    """Add a face to ``person`` through enrolment's checks.

    Args:
        create: enrol a new person of that name when there is none (else an unknown name is an error).

    Raises:
        FacestreamError: unknown person (without ``create``), or the face failed a check (the verdict says which).
    """
    store = enroller.store
    existing = store.find_person(person)
    if existing is None and not create:
        store.get_person(person)  # the error with suggestions
    name = existing.name if existing else person
    chip = np.ascontiguousarray(face.chip, np.uint8)
    verdict = enroller.enroll_face(name, chip, face.width, face.landmarks, SOURCE_PREFIX + source,
                                   existing.id if existing else None)
    if verdict.verdict != "enrolled" and not (verdict.verdict == "duplicate" and verdict.detail == "already enrolled"):
        raise FacestreamError(f"The face was not added to {name}: {verdict.verdict.replace('_', ' ')}"
                              + (f" ({verdict.detail})" if verdict.detail else "") + ".",
                              "Pick a sharper, frontal view of the face, or a different person.")
    p = store.get_person(name)
    h = content_hash(chip.tobytes())
    return Feedback(feedback_id("is", p.id, h), "is", p.id, p.name, h, SOURCE_PREFIX + source, time.time(),
                    "; ".join(verdict.warnings) or verdict.detail)


def correct(analyzer: FaceAnalyzer, store: GalleryStore, verdict: str, person: str | None, face: FaceSample,
            source: str, named: str | None = None) -> Feedback:
    """One correction of a face: ``not`` (it is not ``person``, or not ``named``, whom it was named as) or
    ``is`` (it is ``person``, through enrolment's checks).

    Raises:
        FacestreamError: unknown verdict, nobody to mark, unknown person, or the face failed a check.
    """
    if verdict == "not":
        who = person or named
        if not who:
            raise FacestreamError("The face is not named; there is nobody to say it is not.",
                                  "Pass the person it must not be named as.")
        return mark_not(store, who, face, analyzer.model_id, source)
    if verdict == "is":
        if not person:
            raise FacestreamError("Whom is the face? No person given.", "Pass the person's name.")
        return mark_is(Enroller(analyzer, store, progress=False), person, face, source)
    raise FacestreamError(f"Unknown verdict {verdict!r}.", "Use 'not' or 'is'.")


def undo(store: GalleryStore, model_id: str, ident: str) -> Feedback:
    """Take a correction back.

    Raises:
        FacestreamError: malformed id, unknown person, or nothing to undo (already undone).
    """
    verdict, person_id, h = parse_id(ident)
    p = store.get_person(person_id)
    if verdict == "not":
        done = store.remove_negative(p.id, model_id, h)
    else:
        done = store.remove_embedding(p.id, model_id, h)
    if not done:
        kind = "negative" if verdict == "not" else "face"
        raise FacestreamError(f"Nothing to undo for {ident}: {p.name} has no such {kind} for model {model_id}.",
                              "It was undone already, or made with another model.")
    return Feedback(ident, verdict, p.id, p.name, h, "", time.time(), "undone")


def list_feedback(store: GalleryStore, person: str | None = None) -> list[Feedback]:
    """Every correction in force (of one person), oldest first."""
    people = [store.get_person(person)] if person else store.list_people()
    out = []
    for p in people:
        for e in store.negatives_of(p.id):
            out.append(Feedback(feedback_id("not", p.id, e.hash), "not", p.id, p.name, e.hash, e.source, e.created))
        for e in store.embeddings_of(p.id):
            if e.source.startswith(SOURCE_PREFIX):
                out.append(Feedback(feedback_id("is", p.id, e.hash), "is", p.id, p.name, e.hash, e.source, e.created))
    return sorted(out, key=lambda f: f.created)


def enrol_track(analyzer: FaceAnalyzer, store: GalleryStore, name: str, views: list[tuple[int, float, FaceSample]],
                source: str) -> EnrollReport:
    """Enrol a stranger's live track as the new person ``name``: its sharpest, most different views (up to
    :data:`~facestream.stream.recognition.video_enroll.VIEWS`), each through the checks a photo gets.

    Args:
        views: the track's distinct views as (frame, quality, face).
        source: where they came from (``camera:cam0#track7``), named in every verdict.

    Raises:
        FacestreamError: the name is taken (add a face with "this is" instead), or no view of the track.
    """
    taken = store.find_person(check_name(name))
    if taken is not None:
        raise FacestreamError(f"{taken.name} is already enrolled.",
                              f"To add this face to them, use \"This is {taken.name}\"; else pick another name.")
    if not views:
        raise FacestreamError("This track has no embedded view yet.", "Wait until its face has been seen up close.")
    found = [VideoView(frame, np.ascontiguousarray(face.chip, np.uint8), face.landmarks, face.width, quality,
                       np.asarray(face.embedding, np.float32))
             for frame, quality, face in views]
    return Enroller(analyzer, store, progress=False).enroll_views(name, found, SOURCE_PREFIX + source)
