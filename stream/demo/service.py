"""What the demo page does, without the page: recognise, verify, find look-alikes, enrol, list, delete.

The service owns one face engine and one gallery store for the whole process
(every browser shares them; both are thread-safe) and hands out one
:class:`~facestream.stream.demo.webcam.WebcamSession` per browser for the webcam tab. Results
are small dataclasses the page renders; errors a visitor can cause are
:class:`FacestreamError` with a message fit to show as it is.

No recognition logic lives here: detection, embedding, matching, enrolment
verdicts and drawing come from the same modules the CLI and ``facestream run``
use, so the demo answers exactly what the rest of facestream would.
"""

from __future__ import annotations

import functools
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from facestream.errors import FacestreamError, redact
from facestream.gallery.matcher import Matcher
from facestream.gallery.store import GalleryStore, check_name
from facestream.stream.attendance.erase import erase_person
from facestream.stream.config import Config
from facestream.stream.demo.text import md
from facestream.stream.demo.webcam import WebcamSession
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.draw import draw_faces
from facestream.stream.engine.faces import UNKNOWN, Faces
from facestream.stream.engine.imageio import load_image
from facestream.stream.recognition import identify as recognize
from facestream.stream.recognition.clip_check import read_clip, verify_clip
from facestream.stream.recognition.enroll import Enroller, Photo
from facestream.stream.recognition.feedback import FaceSample, Feedback, mark_is, mark_not, undo
from facestream.stream.recognition.framing import photo_subject
from facestream.stream.recognition.identify import (
    gallery_url,
    open_gallery,
    open_matcher,
)
from facestream.stream.serve.rate_limit import WindowLimit

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
    far: float | None = None  # the chance a stranger scores this high against the gallery

    @property
    def similarity_text(self) -> str:
        return "" if self.similarity is None else f"{self.similarity:.3f}"

    @property
    def sure_text(self) -> str:
        """How sure the name is, as a percentage (empty for unknown faces)."""
        if self.far is None:
            return ""
        pct = 100 * (1 - self.far)
        return ">99.99%" if pct >= 99.995 else f"{pct:.2f}%"

    @property
    def box_text(self) -> str:
        return ", ".join(str(v) for v in self.box)


@dataclass
class PhotoResult:
    annotated: np.ndarray
    faces: list[FaceRow]
    summary: str
    samples: list[tuple[FaceSample | None, str | None]] = field(default_factory=list)  # per row: face, person id


@dataclass
class VerifyResult:
    """A 1:1 answer: same person or not, and the numbers behind it."""

    same: bool
    similarity: float
    threshold: float
    against: str
    note: str = ""
    head: str | None = None  # a heading other than same/different (a match that is not a live person)

    def markdown(self) -> str:
        head = self.head or ("## Same person" if self.same else "## Different people")
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
        return (f"**{md(self.name)}**: {ok} of {len(self.verdicts)} photos enrolled; "
                f"{md(self.name)} now has {self.count} embedding{'s' if self.count != 1 else ''}.")


@dataclass
class PersonRow:
    id: str
    name: str
    count: int
    updated: str


class DemoService:
    """The demo's recognition back end: one analyzer, one gallery, one tracker per browser.

    Args:
        config: the facestream configuration (gallery, thresholds, tracking, demo switches).
        analyzer: a ready :class:`~facestream.stream.engine.analyzer.FaceAnalyzer` to share (tests pass theirs);
            built from ``config`` when omitted.
        gallery: a gallery URL that wins over ``$FACESTREAM_GALLERY`` and ``gallery.url``.
    """

    def __init__(self, config: Config, analyzer: FaceAnalyzer | None = None, gallery: str | None = None):
        self.config = config
        self.gallery_url = gallery_url(config, gallery)
        self._analyzer = analyzer
        self._lock = threading.Lock()
        self._chip_cache: dict[str, bytes] = {}
        self._chip_cache_version = -1
        demo = config.demo
        self._limits = {"request": (WindowLimit(demo.requests_per_minute, 60.0), "requests", "a minute",
                                    "demo.requests_per_minute"),
                        "enrolment": (WindowLimit(demo.enrolments_per_hour, 3600.0), "enrolments", "an hour",
                                      "demo.enrolments_per_hour")}

    # -- shared resources ----------------------------------------------------------------

    @cached_property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is not None:
            return self._analyzer
        return FaceAnalyzer(self.config)

    @cached_property
    def store(self) -> GalleryStore:
        return open_gallery(self.config, self.gallery_url)

    @cached_property
    def matcher(self) -> Matcher:
        return open_matcher(self.analyzer, self.store)

    def check(self) -> None:
        """Open the gallery and load the models now, so a bad setup fails at start, not on a click."""
        self.matcher  # noqa: B018  (opens the store and prepares the model)

    def describe(self) -> str:
        return f"Gallery: `{redact(self.gallery_url)}`."

    @property
    def threshold(self) -> float:
        return self.analyzer.threshold

    def close(self) -> None:
        for name in ("matcher", "store"):
            resource = self.__dict__.pop(name, None)
            if resource is not None:
                resource.close()

    def admit(self, kind: str, visitor: str | None) -> None:
        """Count one ``kind`` of work (``"request"``: a photo to identify, verify or compare; ``"enrolment"``)
        for the visitor's address; an anonymous page must not be a free face-search or enrolment service.

        Raises:
            FacestreamError: the visitor is over the limit (how long to wait, and the setting).
        """
        limit, what, per, setting = self._limits[kind]
        wait = limit.take(visitor or "unknown")
        if wait:
            raise FacestreamError(f"Too many {what} from your address (at most {limit.limit} {per}).",
                                  f"Try again in {wait} s (the operator sets {setting}).")

    # -- live ------------------------------------------------------------------------------------

    def new_live_session(self) -> WebcamSession:
        """A fresh tracker for one browser's webcam stream."""
        return WebcamSession(self.config, self.analyzer, self.matcher)

    def live_frame(self, session: WebcamSession, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """One webcam frame of ``session``: annotated frame and status line."""
        rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
        return session.process(rgb)

    # -- photos ----------------------------------------------------------------------------------

    def identify(self, rgb: np.ndarray) -> PhotoResult:
        """The Photo tab: every face named (as ``facestream identify`` does), drawn, listed left to right."""
        faces, _ = recognize.identify(self.analyzer, self.matcher, rgb, top_k=1)
        if len(faces):
            faces = faces[np.argsort(faces.xyxy[:, 0], kind="stable")]
        names, sims, fars = faces.name or [], faces.similarity, faces.far  # identify() labels every face
        assert sims is not None and fars is not None
        rows = [
            FaceRow(i + 1, names[i], None if np.isnan(sims[i]) else float(sims[i]), _box(faces.xyxy[i]),
                    None if np.isnan(fars[i]) else float(fars[i]))
            for i in range(len(faces))
        ]
        return PhotoResult(self.draw(rgb, faces), rows, _summary(rows), self._samples(rgb, faces))

    def _samples(self, rgb: np.ndarray, faces: Faces) -> list[tuple[FaceSample | None, str | None]]:
        """Each face as a correction would store it (faces too small to embed have none)."""
        out: list[tuple[FaceSample | None, str | None]] = []
        ids = faces.identity or [None] * len(faces)
        for i in range(len(faces)):
            emb = None if faces.embedding is None else faces.embedding[i]
            if emb is None or not np.all(np.isfinite(emb)):
                out.append((None, ids[i]))
                continue
            one = faces[[i]]
            chip = self.analyzer.chips(rgb, one)[0]
            out.append((FaceSample(chip, emb, None if one.landmarks is None else one.landmarks[0],
                                   float(one.width[0]), f"face{i + 1}"), ids[i]))
        return out

    # -- corrections -----------------------------------------------------------------------------

    def correct(self, result: PhotoResult | None, face: int, verdict: str, person: str | None = None,
                admin_token: str | None = None) -> Feedback:
        """"Not this person" (face ``face`` of the last recognised photo is not who it was named as, or not
        ``person``) or "this is ``person``" (through enrolment's checks): as ``facestream feedback`` does.
        Naming a face as a new person is enrolment; anything that changes an enrolled person takes the
        admin token."""
        if not self.config.demo.allow_enrolment:
            raise FacestreamError("Corrections are switched off on this demo.", "Set demo.allow_enrolment=true.")
        if result is None or not result.samples:
            raise FacestreamError("No recognised photo to correct.", "Recognise a photo first.")
        if not 1 <= face <= len(result.samples):
            raise FacestreamError(f"There is no face {face}.", f"Pick a face between 1 and {len(result.samples)}.")
        sample, person_id = result.samples[face - 1]
        if sample is None:
            raise FacestreamError(f"Face {face} is too small to recognise or correct.", "Pick a bigger face.")
        person = (person or "").strip() or None
        source = f"demo:{sample.where}"
        if verdict == "not":
            who = person or person_id
            if not who:
                raise FacestreamError(f"Face {face} is not named; there is nobody to say it is not.",
                                      "Use 'This is…' to name it.")
            self.check_admin(admin_token, "Saying a face is not an enrolled person")
            self._person(who)
            return mark_not(self.store, who, sample, self.analyzer.model_id, source)
        if not person:
            raise FacestreamError("Who is it? No name given.", "Type the person's name.")
        existing = self.store.find_person(person)
        if existing is not None:
            self.check_admin(admin_token, f"Adding a face to {existing.name}, who is already enrolled,")
        return mark_is(Enroller(self.analyzer, self.store, progress=False), person, sample, source, create=True)

    def _person(self, ref: str):
        """The enrolled person ``ref``; on a kiosk, an unknown name gets no "Did you mean ..." (that would
        tell a passer-by who is enrolled)."""
        try:
            return self.store.get_person(ref)
        except FacestreamError:
            if self.config.demo.kiosk_mode:
                raise FacestreamError("Nobody by that exact name is enrolled here.",
                                      "Type the full name as it was enrolled (this kiosk suggests no names).") from None
            raise

    def undo(self, feedback_id: str, admin_token: str | None = None) -> Feedback:
        """Take a correction back."""
        self.check_admin(admin_token, "Undoing a correction")
        return undo(self.store, self.analyzer.model_id, feedback_id)

    def _one_face(self, rgb: np.ndarray, what: str) -> np.ndarray:
        """The embedding of the person of a photo that must show one (verify, look-alike), by enrolment's rule:
        a small bystander is fine (the largest face is meant), and so is a photo framed on its largest face;
        two faces of similar size, none alone at the centre, are not (:func:`photo_subject`).

        Not ``analyzer.largest_face``: that would detect a second time to apply the one-person rule.

        Raises:
            FacestreamError: no face, or several faces of similar size.
        """
        faces = self.analyzer.detect(rgb, with_landmarks=False)
        if len(faces) == 0:
            raise FacestreamError(f"No face found in {what}.",
                                  "Use a photo where the face is visible and at least ~40 px wide.")
        subject, _ = photo_subject(faces.width, faces.xyxy, rgb.shape)
        if subject is None:
            raise FacestreamError(f"Found {len(faces)} faces in {what}, but this needs one person.",
                                  "Crop the photo to the person you mean.")
        return self.analyzer.embed_chips(self.analyzer.chips(rgb, faces[[subject]]))[0]

    def verify_photos(self, a: np.ndarray, b: np.ndarray) -> VerifyResult:
        """1:1: are the faces of two photos the same person (``facestream compare``)?"""
        ea = self._one_face(a, "the first photo")
        eb = self._one_face(b, "the second photo")
        sim = self.analyzer.similarity(ea, eb)
        return VerifyResult(sim >= self.threshold, sim, self.threshold, "the second photo")

    def verify_person(self, rgb: np.ndarray, person: str) -> VerifyResult:
        """1:1 against an enrolled person (``facestream verify``): the mean of their photos decides.

        Raises:
            FacestreamError: ``liveness.mode: require`` (a photo cannot show a person is present), unknown person.
        """
        person = person.strip()
        if self.config.liveness.mode == "require":
            raise FacestreamError("Checking someone against an enrolled person needs a live face here, and one "
                                  "photo cannot show that (liveness.mode is require).",
                                  "Record a 2-3 s video of the face turning a little, and use 'Verify with liveness'.")
        self._person(person)  # an unknown name fails before any model work
        embedding = self._one_face(rgb, "the photo")
        match, same, threshold = self.matcher.similarity_to(embedding, person)
        return VerifyResult(same, match.similarity, threshold, f"**{md(match.name)}** (the mean of their photos)")

    def verify_clip(self, video: bytes, person: str) -> VerifyResult:
        """1:1 on a short video against an enrolled person, with liveness: a photo held up is not them."""
        person = person.strip()
        self._person(person)
        check = verify_clip(self.analyzer, self.matcher, read_clip(video, "the video"), person,
                            require_live=self.config.liveness.mode != "off")
        live = check.liveness
        note = (f"Liveness: **{live.state}** ({live.reason}; {live.samples} frames with a face mesh"
                + (f", depth {live.depth:.4f}" if live.depth is not None else "") + ").")
        head = None
        if check.match.same and not check.verified:
            note += " The face matches, but it was not shown to be a live person: **not verified**."
            head = "## Not verified: no live person shown"
        return VerifyResult(check.verified, check.match.similarity, check.match.threshold,
                            f"**{md(check.match.name)}** ({len(check.views)} views of the video)", note, head)

    def lookalike(self, rgb: np.ndarray, k: int = 5) -> list[LookAlike]:
        """The ``k`` closest enrolled people, each with one of their enrolled face chips."""
        embedding = self._one_face(rgb, "the photo")
        self.matcher.ensure_ready()
        result = self.matcher.identify(embedding, top_k=k)
        candidates = result.candidates
        kiosk = self.config.demo.kiosk_mode
        if kiosk:  # a kiosk names only whom it recognises in the visitor's photo, and shows no enrolled face
            candidates = [m for m in candidates if m.similarity >= self.threshold]
        chips = {} if kiosk else self._chips([m.person_id for m in candidates])
        return [
            LookAlike(m.rank, m.name, m.person_id, m.similarity, m.similarity >= self.threshold,
                      chips.get(m.person_id))
            for m in candidates
        ]

    def _chips(self, person_ids: list[str]) -> dict[str, np.ndarray]:
        """One enrolled chip (RGB) per person, cached until the gallery changes."""
        with self._lock:
            version = self.store.version()
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
            faces = faces[np.arange(len(faces))]  # a copy: the caller's faces keep their pixels
            faces.xyxy = faces.xyxy * scale
            faces.landmarks = None if faces.landmarks is None else faces.landmarks * scale
            faces.kps = None if faces.kps is None else faces.kps * scale
        return draw_faces(rgb, faces)

    # -- enrolment -------------------------------------------------------------------------------

    def check_admin(self, token: str | None, what: str) -> None:
        """Changing an enrolled person (their faces, corrections, deleting) takes the admin token: a visitor
        who could add their face to someone would be recognised, and marked present, as them.

        Raises:
            FacestreamError: no admin token configured (the action is off), or a wrong one.
        """
        expected = self.config.demo.admin_token
        if not expected:
            raise FacestreamError(f"{what} is switched off on this demo.",
                                  "Set demo.admin_token to allow it for whoever knows the token.")
        if not token or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise FacestreamError(f"{what} needs the admin token.", "Type the demo's admin token.")

    def enroll(self, name: str, photos: list[Path], admin_token: str | None = None) -> EnrolReport:
        """Enrol a new person from photos, as ``facestream enroll --name`` does, with a verdict per photo.

        Bad photos (no face, several faces, too small, blurred, not an image, already enrolled)
        are reported and skipped; the good ones are stored in one transaction. A name already
        enrolled (any case) takes the admin token: visitors create people, they never add to one.
        """
        if not self.config.demo.allow_enrolment:
            raise FacestreamError("Enrolment is switched off on this demo.", "Set demo.allow_enrolment=true.")
        name = check_name(name)
        existing = self.store.find_person(name)
        if existing is not None:
            self.check_admin(admin_token, f"Adding photos to {existing.name}, who is already enrolled,")
        enroller = Enroller(self.analyzer, self.store, progress=False)
        items = [Photo(Path(p).name, functools.partial(_read, Path(p))) for p in photos]
        verdicts = [
            PhotoVerdict(v.source, v.verdict.replace("_", " ") + (f": {v.detail}" if v.detail else "")
                         + "".join(f" (warning: {w})" for w in v.warnings), v.enrolled)
            for v in enroller.enroll_person(name, items)
        ]
        person = self.store.find_person(name)
        return EnrolReport(person.name if person else name, verdicts, person.n_embeddings if person else 0)

    # -- gallery -------------------------------------------------------------------------------

    def people(self) -> list[PersonRow]:
        """Everyone enrolled, sorted by name, with their number of embeddings (not on a kiosk)."""
        if self.config.demo.kiosk_mode:
            raise FacestreamError("This demo does not list the people enrolled (kiosk mode).",
                                  "Ask the operator; set demo.kiosk=false on a private demo.")
        return [PersonRow(p.id, p.name, p.n_embeddings, _when(p.updated)) for p in self.store.list_people()]

    def person_choices(self) -> list[str]:
        """Names for the person pickers (none on a kiosk); an unreachable store gives an empty list, not a broken
        page."""
        if self.config.demo.kiosk_mode:
            return []
        try:
            return [p.name for p in self.store.list_people()]
        except Exception as exc:  # the page must still render; a click shows the real error
            log.warning("cannot list people for the page: %s", exc)
            return []

    def delete(self, person: str, admin_token: str | None = None) -> str:
        """Remove a person and every trace of them, attendance included (``facestream people delete``)."""
        self.check_admin(admin_token, "Deleting people")
        gone = erase_person(self.store, person.strip())
        return (f"Deleted **{md(gone.name)}**: {gone.embeddings} embedding(s), and their attendance in "
                f"{gone.sessions} session(s).")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FacestreamError(f"Cannot read {path.name} ({exc.strerror}).", "Upload it again.") from None


def _box(xyxy: np.ndarray) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    return x1, y1, x2, y2


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def _summary(rows: list[FaceRow]) -> str:
    if not rows:
        return "No face found in the photo. Faces need to be visible and at least ~20 px wide."
    known = [r.name for r in rows if r.name != UNKNOWN]
    unknown = len(rows) - len(known)
    parts = [f"**{len(rows)} face{'s' if len(rows) != 1 else ''}**"]
    if known:
        parts.append("recognised: " + ", ".join(md(n) for n in known))
    if unknown:
        parts.append(f"{unknown} unknown")
    return "; ".join(parts) + "."
