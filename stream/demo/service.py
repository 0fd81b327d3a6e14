"""What the demo page does, without the page: recognise, verify, find look-alikes, enrol, list, delete.

The service owns one face engine and one gallery store for the whole process
(every browser shares them; both are thread-safe) and hands out one
:class:`~stream.demo.live.LiveSession` per browser for the webcam tab. Results
are small dataclasses the page renders; errors a visitor can cause are
:class:`FacestreamError` with a message fit to show as it is.

No recognition logic lives here: detection, embedding, matching, enrolment
verdicts and drawing come from the same modules the CLI and ``facestream run``
use, so the demo answers exactly what the rest of facestream would.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from gallery.store import check_name
from gallery.types import NewEmbedding, content_hash
from stream.config import Config
from stream.draw import draw_faces
from stream.errors import FacestreamError
from stream.faces import UNKNOWN, Faces
from stream.imageio import load_image

if TYPE_CHECKING:
    from stream.demo.live import LiveSession

log = logging.getLogger(__name__)

# Photos bigger than this are shown scaled down (detection and embedding still use the full image).
DISPLAY_SIDE = 1600


@dataclass
class FaceRow:
    """One face of a photo as the Photo tab lists it."""

    index: int
    name: str
    similarity: float | None
    box: tuple[int, int, int, int]

    @property
    def similarity_text(self) -> str:
        return "" if self.similarity is None else f"{self.similarity:.3f}"

    @property
    def box_text(self) -> str:
        return ", ".join(str(v) for v in self.box)


@dataclass
class PhotoResult:
    annotated: np.ndarray
    faces: list[FaceRow]
    summary: str


@dataclass
class VerifyResult:
    """A 1:1 answer: same person or not, and the numbers behind it."""

    same: bool
    similarity: float
    threshold: float
    against: str
    note: str = ""

    def markdown(self) -> str:
        head = "## Same person" if self.same else "## Different people"
        text = (f"{head}\n\nSimilarity **{self.similarity:.3f}** against {self.against}; "
                f"threshold {self.threshold:.3f} (same person at or above).")
        return text + (f"\n\n{self.note}" if self.note else "")


@dataclass
class LookAlike:
    rank: int
    name: str
    person_id: str
    similarity: float
    same: bool
    chip: np.ndarray | None


@dataclass
class PhotoVerdict:
    photo: str
    verdict: str
    enrolled: bool


@dataclass
class EnrolReport:
    name: str
    verdicts: list[PhotoVerdict]
    count: int

    def markdown(self) -> str:
        ok = sum(v.enrolled for v in self.verdicts)
        return (f"**{self.name}**: {ok} of {len(self.verdicts)} photos enrolled; "
                f"{self.name} now has {self.count} embedding{'s' if self.count != 1 else ''}.")


@dataclass
class PersonRow:
    id: str
    name: str
    count: int
    updated: str


@dataclass
class _Cache:
    people: list[Any] = field(default_factory=list)
    at: float = 0.0


def redact_url(url: str) -> str:
    """A store URL fit to show on a public page: no password."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


class DemoService:
    """The demo's recognition back end: one analyzer, one gallery, one tracker per browser.

    Args:
        config: the facestream configuration (gallery URL, thresholds, tracking).
        analyzer: a ready :class:`~stream.analyzer.FaceAnalyzer` to share (tests pass theirs);
            built from ``config`` when omitted.
    """

    def __init__(self, config: Config, analyzer: Any = None):
        self.config = config
        self._analyzer = analyzer
        self._lock = threading.Lock()
        self._chip_cache: dict[str, bytes] = {}
        self._chip_cache_version = -1

    # -- shared resources ----------------------------------------------------------------

    @cached_property
    def analyzer(self) -> Any:
        if self._analyzer is not None:
            return self._analyzer
        from stream.analyzer import FaceAnalyzer

        return FaceAnalyzer(self.config)

    @cached_property
    def store(self) -> Any:
        from gallery.store import open_store

        return open_store(self.config.gallery.url)

    def check(self) -> None:
        """Open the gallery and load the models now, so a bad setup fails at start, not on a click."""
        self.store  # noqa: B018
        self.analyzer.model_id  # noqa: B018

    def describe(self) -> str:
        return f"Gallery: `{redact_url(self.config.gallery.url)}`."

    @property
    def threshold(self) -> float:
        return self.analyzer.threshold

    def close(self) -> None:
        store = self.__dict__.get("store")
        if store is not None and hasattr(store, "close"):
            store.close()

    @cached_property
    def matcher(self) -> Any:
        from gallery.matcher import Matcher

        return Matcher(self.store, self.analyzer.model_id, self.threshold,
                       watch=self.config.gallery.url.startswith(("redis://", "rediss://", "unix://")))

    # -- live ------------------------------------------------------------------------------------

    def new_live_session(self) -> LiveSession:
        """A fresh tracker for one browser's webcam stream."""
        from stream.demo.live import LiveSession

        return LiveSession(self)

    def live_frame(self, session: LiveSession, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """One webcam frame of ``session``: annotated frame and status line."""
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        return session.process(rgb)

    # -- photos ----------------------------------------------------------------------------------

    def recognize(self, rgb: np.ndarray) -> Faces:
        """Every face of a photo with its name (or unknown) and similarity."""
        faces = self.analyzer.analyze(rgb)
        if len(faces):
            self.matcher.ensure_ready()
            apply_matches(faces, self.matcher.search(faces.embedding, top_k=1))
        return faces

    def identify(self, rgb: np.ndarray) -> PhotoResult:
        """The Photo tab: every face named, drawn, and listed left to right."""
        faces = self.recognize(rgb)
        order = np.argsort(faces.xyxy[:, 0], kind="stable") if len(faces) else np.zeros(0, int)
        faces = faces[order] if len(faces) else faces
        rows = [
            FaceRow(i + 1, faces.name[i], None if np.isnan(faces.similarity[i]) else float(faces.similarity[i]),
                    tuple(int(round(v)) for v in faces.xyxy[i]))
            for i in range(len(faces))
        ]
        return PhotoResult(self.draw(rgb, faces), rows, _summary(rows))

    def one_face(self, rgb: np.ndarray, what: str) -> np.ndarray:
        """The embedding of the single face a photo must hold (verification, look-alike).

        Raises:
            FacestreamError: no face, or several (which one was meant is a guess we do not make).
        """
        faces = self.analyzer.detect(rgb)
        if len(faces) == 0:
            raise FacestreamError(f"No face found in {what}.",
                                  "Use a photo where the face is visible and at least ~40 px wide.")
        if len(faces) > 1:
            raise FacestreamError(f"Found {len(faces)} faces in {what}, but this needs exactly one.",
                                  "Crop the photo to the person you mean.")
        return self.analyzer.embed(rgb, faces).embedding[0]

    def verify_photos(self, a: np.ndarray, b: np.ndarray) -> VerifyResult:
        """1:1: are the faces of two photos the same person?"""
        ea, eb = self.one_face(a, "the first photo"), self.one_face(b, "the second photo")
        sim = float(np.dot(ea, eb))
        return VerifyResult(sim >= self.threshold, sim, self.threshold, "the second photo")

    def verify_person(self, rgb: np.ndarray, ref: str) -> VerifyResult:
        """1:1 against an enrolled person: their closest embedding decides."""
        emb = self.one_face(rgb, "the photo")
        match, same = self.matcher.similarity_to(emb, ref.strip())
        return VerifyResult(same, match.similarity, self.threshold, f"**{match.name}** (best of their photos)")

    def lookalike(self, rgb: np.ndarray, k: int = 5) -> list[LookAlike]:
        """The ``k`` closest enrolled people, each with one of their enrolled face chips."""
        emb = self.one_face(rgb, "the photo")
        self.matcher.ensure_ready()
        result = self.matcher.search(emb[None], top_k=k)[0]
        chips = self._chips([m.person_id for m in result.candidates])
        return [
            LookAlike(m.rank, m.name, m.person_id, m.similarity, m.similarity >= self.threshold,
                      chips.get(m.person_id))
            for m in result.candidates
        ]

    def _chips(self, person_ids: list[str]) -> dict[str, np.ndarray]:
        """One enrolled chip (RGB) per person, cached until the gallery changes."""
        version = self.store.version()
        with self._lock:
            if self._chip_cache_version != version:
                self._chip_cache = {}
                for pid, _hash, _source, jpeg in self.store.iter_chips(self.analyzer.model_id):
                    self._chip_cache.setdefault(pid, jpeg)
                self._chip_cache_version = version
            cache = self._chip_cache
        out = {}
        for pid in person_ids:
            if pid in cache:
                try:
                    out[pid] = load_image(cache[pid])
                except FacestreamError:
                    log.warning("stored chip of %s is unreadable", pid)
        return out

    def draw(self, rgb: np.ndarray, faces: Faces) -> np.ndarray:
        """Annotate for display; big photos are drawn scaled down so the page stays quick."""
        scale = min(1.0, DISPLAY_SIDE / max(rgb.shape[:2]))
        if scale < 1.0:
            size = (int(round(rgb.shape[1] * scale)), int(round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            faces = faces[np.arange(len(faces))] if len(faces) else faces
            faces.xyxy = faces.xyxy * scale
            faces.landmarks = None if faces.landmarks is None else faces.landmarks * scale
            faces.kps = None if faces.kps is None else faces.kps * scale
        return draw_faces(rgb, faces)

    # -- enrolment -------------------------------------------------------------------------------

    def enroll(self, name: str, photos: list[Path]) -> EnrolReport:
        """Enrol one person from photos with one face each; every photo gets its own verdict.

        A bad photo (no face, several faces, not an image) is reported and skipped; the
        others are still enrolled, in one store transaction.
        """
        if not self.config.demo.allow_enrolment:
            raise FacestreamError("Enrolment is switched off on this demo.", "Set demo.allow_enrolment=true.")
        name = check_name(name)
        verdicts: list[PhotoVerdict] = []
        pending: list[tuple[int, NewEmbedding]] = []
        for path in photos:
            verdict, embedding = self._enrol_photo(Path(path))
            if embedding is not None and any(e.hash == embedding.hash for _, e in pending):
                verdict, embedding = PhotoVerdict(verdict.photo, "the same photo twice: skipped", False), None
            if embedding is not None:
                pending.append((len(verdicts), embedding))
            verdicts.append(verdict)
        if not pending:
            person = self.store.find_person(name)
            return EnrolReport(name, verdicts, person.n_embeddings if person else 0)
        person, _ = self.store.enroll(name, [e for _, e in pending])
        self.matcher.refresh(force=True)
        return EnrolReport(person.name, verdicts, person.n_embeddings)

    def _enrol_photo(self, path: Path) -> tuple[PhotoVerdict, NewEmbedding | None]:
        label = path.name
        try:
            data = path.read_bytes()
            rgb = load_image(data)
        except (OSError, FacestreamError) as exc:
            return PhotoVerdict(label, f"not an image: {exc}", False), None
        faces = self.analyzer.detect(rgb)
        if len(faces) == 0:
            return PhotoVerdict(label, "no face found: use a photo where the face is clearly visible", False), None
        if len(faces) > 1:
            return PhotoVerdict(label, f"{len(faces)} faces: use a photo of this person alone", False), None
        chips = self.analyzer.chips(rgb, faces)
        vector = self.analyzer.embed_chips(chips)[0]
        digest = content_hash(data)
        owner = self.store.owner_of(self.analyzer.model_id, digest)
        if owner is not None:
            who = self.store.find_person(owner)
            return PhotoVerdict(label, f"already enrolled as {who.name if who else owner}", False), None
        chip = _jpeg(chips[0])
        return PhotoVerdict(label, "enrolled", True), NewEmbedding(
            vector, self.analyzer.model_id, digest, chip, source=f"demo:{label}", created=time.time())

    # -- gallery -------------------------------------------------------------------------------

    def people(self) -> list[PersonRow]:
        """Everyone enrolled, sorted by name, with their number of embeddings."""
        return [PersonRow(p.id, p.name, p.n_embeddings, _when(p.updated)) for p in self.store.list_people()]

    def person_choices(self) -> list[str]:
        """Names for the person pickers; an unreachable store gives an empty list, not a broken page."""
        try:
            return [p.name for p in self.store.list_people()]
        except Exception as exc:  # the page must still render; the click will show the real error
            log.warning("cannot list people for the page: %s", exc)
            return []

    def delete(self, ref: str) -> str:
        person = self.store.delete_person(ref.strip())
        self.matcher.refresh(force=True)
        return f"Deleted **{person.name}** and all {person.n_embeddings} of their embeddings."


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def apply_matches(faces: Faces, results: list[Any]) -> Faces:
    """Fill ``identity``/``name``/``similarity`` of faces from matcher results (in place)."""
    faces.identity = [r.best.person_id if r.best else None for r in results]
    faces.name = [r.best.name if r.best else UNKNOWN for r in results]
    faces.similarity = np.array([r.similarity for r in results], dtype=np.float32)
    return faces


def _summary(rows: list[FaceRow]) -> str:
    if not rows:
        return "No face found in the photo. Faces need to be visible and at least ~20 px wide."
    known = [r.name for r in rows if r.name != UNKNOWN]
    unknown = len(rows) - len(known)
    parts = [f"**{len(rows)} face{'s' if len(rows) != 1 else ''}**"]
    if known:
        parts.append("recognised: " + ", ".join(known))
    if unknown:
        parts.append(f"{unknown} unknown")
    return "; ".join(parts) + "."


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FacestreamError("Cannot encode a face chip as JPEG.", "Check the OpenCV installation.")
    return buf.tobytes()
