"""Recognition on still images: who is in this photo (1:N), is this that person (1:1).

The glue between the face engine (:class:`~facestream.stream.engine.analyzer.FaceAnalyzer`)
and the gallery (:mod:`facestream.gallery`): which gallery to open (``--gallery``,
else ``gallery.url``, in which :func:`~facestream.stream.config.load_config`
already applied ``$FACESTREAM_GALLERY``), a matcher for the analyzer's model, and
the per-image answers the CLI, the demo and the live pipeline share.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.gallery.matcher import Matcher
from facestream.gallery.store import GalleryStore
from facestream.gallery.types import MatchResult
from facestream.stream.config import Config
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.faces import UNKNOWN, Faces

log = logging.getLogger(__name__)


def gallery_url(config: Config, url: str | None = None) -> str:
    """The gallery to use: an explicit URL, else ``gallery.url`` (which ``$FACESTREAM_GALLERY`` sets).

    Reading the environment only in :func:`facestream.stream.config.load_config` keeps one answer for
    recognition and attendance, which records into ``config.gallery.url``.
    """
    return url or config.gallery.url


def open_gallery(config: Config, url: str | None = None) -> GalleryStore:
    """Open the configured store, with a FacestreamError (not a traceback) when it cannot be."""
    return open_store(gallery_url(config, url))


def open_matcher(analyzer: FaceAnalyzer, store: GalleryStore | None = None, watch: bool = True) -> Matcher:
    """A matcher for the analyzer's model and its calibration (``match.far``, or a fixed ``match.threshold``);
    warns when the gallery holds other models.

    Args:
        store: the gallery to search; default: the configured one (:func:`open_gallery`).
        watch: follow the store's change events (live runs) instead of checking its version per search.

    Raises:
        FacestreamError: the store cannot be opened (bad URL, Redis down).
    """
    config: Config = analyzer.config
    store = store if store is not None else open_gallery(config)
    device = "cpu" if config.embedder.device == "cpu" else "auto"
    matcher = Matcher(store, analyzer.model_id, analyzer.spec.threshold, tail=analyzer.impostor_tail,
                      far=config.match.far, fixed_threshold=config.match.threshold,
                      min_margin=config.match.min_margin, margin_weight=config.match.margin_weight,
                      device=device, watch=watch)
    other = {m: c for m, c in store.model_counts().items() if m != analyzer.model_id}
    if other:
        log.warning("the gallery also holds %s embeddings of other models (%s); they are not searched. "
                    "Run `facestream gallery reembed` to re-embed their chips with %s.",
                    sum(other.values()), ", ".join(other), analyzer.model_id)
    return matcher


def label_faces(matcher: Matcher, faces: Faces, top_k: int = 1) -> list[MatchResult]:
    """Fill ``faces.identity``, ``.name`` and ``.similarity`` from ``faces.embedding`` (in place).

    Faces without an embedding (rows of NaN or a missing field) stay unknown. Returns one
    :class:`MatchResult` per face, with the ``top_k`` closest people.
    """
    n = len(faces)
    results = [MatchResult(None, [], float("nan")) for _ in range(n)]
    if faces.embedding is not None and n:
        ok = np.all(np.isfinite(faces.embedding), axis=1)
        if ok.any():
            found = matcher.search(faces.embedding[ok], top_k=top_k)
            for i, res in zip(np.flatnonzero(ok), found, strict=True):
                results[i] = res
    faces.identity = [r.best.person_id if r.best else None for r in results]
    faces.name = [r.best.name if r.best else UNKNOWN for r in results]
    faces.similarity = np.array([r.similarity for r in results], np.float32)
    faces.far = np.array([r.far if r.best is not None else np.nan for r in results], np.float32)
    return results


def identify(analyzer: FaceAnalyzer, matcher: Matcher, rgb: np.ndarray,
             top_k: int = 5) -> tuple[Faces, list[MatchResult]]:
    """Every face in an image with its name (or ``unknown``), similarity, box, and its ``top_k`` look-alikes.

    Faces narrower than ``match.min_face`` pixels are reported but not embedded (unknown, nan).

    Returns:
        The faces (``identity``/``name``/``similarity`` filled) and one MatchResult per face.
    """
    faces = analyzer.detect(rgb)
    if not len(faces):
        faces.identity, faces.name, faces.similarity = [], [], np.zeros(0, np.float32)
        faces.far = np.zeros(0, np.float32)
        return faces, []
    big = np.minimum(faces.width, faces.height) >= analyzer.config.match.min_face
    emb = np.full((len(faces), analyzer.spec.embedding_dim), np.nan, np.float32)
    if big.any():
        emb[big] = analyzer.embed_chips(analyzer.chips(rgb, faces[big]))
    faces.embedding = emb
    return faces, label_faces(matcher, faces, top_k=top_k)


@dataclass
class Verification:
    """The answer of a 1:1 check."""

    person_id: str
    name: str
    similarity: float
    threshold: float
    same: bool
    box: list[float]
    faces_in_photo: int

    def to_json(self) -> dict[str, Any]:
        return {"person_id": self.person_id, "name": self.name, "similarity": round(self.similarity, 4),
                "threshold": round(self.threshold, 4), "same_person": self.same, "box": self.box,
                "faces_in_photo": self.faces_in_photo}


def verify(analyzer: FaceAnalyzer, matcher: Matcher, rgb: np.ndarray, person: str) -> Verification:
    """Is the (largest) face in the photo this enrolled person?

    Raises:
        FacestreamError: no face in the photo, unknown person, person without embeddings of this model.
    """
    matcher.store.get_person(person)  # unknown person fails before any model work
    faces = analyzer.detect(rgb)
    if not len(faces):
        raise FacestreamError("No face found in the photo.", "Use a photo where the face is visible and frontal.")
    i = int(np.argmax(faces.width * faces.height))
    one = faces[[i]]
    emb = analyzer.embed_chips(analyzer.chips(rgb, one))[0]
    match, same, threshold = matcher.similarity_to(emb, person)
    box = [round(float(v), 1) for v in one.xyxy[0]]
    return Verification(match.person_id, match.name, match.similarity, threshold, same, box, len(faces))


@dataclass
class Comparison:
    """The answer of a 1:1 check of two photos (their largest faces)."""

    same: bool
    similarity: float
    threshold: float
    model: str
    faces_in_a: int
    faces_in_b: int


def compare_photos(analyzer: FaceAnalyzer, a: np.ndarray, b: np.ndarray, name_a: str = "the first photo",
                   name_b: str = "the second photo") -> Comparison:
    """Are the largest faces of two photos the same person, at the model's 1:1 threshold?

    Raises:
        FacestreamError: a photo without a face (named by ``name_a`` / ``name_b``).
    """
    face_a, n_a = analyzer.largest_face(a, name_a)
    face_b, n_b = analyzer.largest_face(b, name_b)
    assert face_a.embedding is not None and face_b.embedding is not None  # largest_face embeds
    similarity = analyzer.similarity(face_a.embedding[0], face_b.embedding[0])
    return Comparison(bool(similarity >= analyzer.threshold), similarity, analyzer.threshold, analyzer.model_id,
                      n_a, n_b)


def results_to_json(faces: Faces, results: list[MatchResult]) -> list[dict[str, Any]]:
    """Faces.to_json() plus each face's look-alike list and margin."""
    items = faces.to_json()
    for item, res in zip(items, results, strict=True):
        item["matches"] = [m.to_json() for m in res.candidates]
        item["margin"] = None if math.isnan(res.margin) or math.isinf(res.margin) else round(res.margin, 4)
        item["threshold"] = None if math.isnan(res.threshold) else round(res.threshold, 4)
        if res.vetoed:
            item["not"] = res.vetoed  # people whose "not this person" faces this one resembles
    return items
