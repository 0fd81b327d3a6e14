"""Enrolment: photos in, people with embeddings out, with a verdict for every image.

Sources: a folder of folders (one per person: ``people/Alice/*.jpg`` or
``0/``..``1679/``), single photos with a name, or a roster CSV/XLSX with a name
column and a photo column (path relative to the roster, or an http(s) URL);
other roster columns and ``--meta key=value`` become metadata.

Each image gets one verdict: ``enrolled``, ``duplicate`` (same bytes already
stored for this model: keyed by content hash, so re-running is idempotent),
``no_face``, ``several_faces``, ``too_small``, ``blurred``, ``turned`` (the head
turned away more than ``gallery.enroll_max_yaw``), ``unreadable``, and two that
keep a gallery from being poisoned: ``mismatch`` (the face does not look like the
person's other photos: another person's photo filed under their name?) and
``looks_like_other`` (it looks more like a different enrolled person). Flagged
photos are not stored unless the caller accepts them (``--accept-flagged``);
milder problems (a head turned more than ``enroll_warn_yaw``) are stored with a
warning.
All embeddings of one person are written in one store transaction, so an
interrupted run keeps every person finished so far and no half-enrolled one;
running the same command again completes the rest.
"""

from __future__ import annotations

import io
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.gallery.store import GalleryStore
from facestream.gallery.types import NewEmbedding, content_hash
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.imageio import image_files, load_image
from facestream.stream.engine.quality import head_yaw, sharpness
from facestream.stream.recognition.download import fetch_url
from facestream.stream.recognition.framing import photo_subject
from facestream.stream.recognition.roster_table import (
    ID_COLUMNS,
    NAME_COLUMNS,
    PHOTO_COLUMNS,
    pick_column,
    read_table,
)
from facestream.stream.recognition.video_enroll import (
    VIEWS,
    VideoView,
    collect_views,
    is_video,
    main_person,
    pick_views,
)

if TYPE_CHECKING:
    from facestream.gallery.matcher import Matcher

log = logging.getLogger(__name__)

ROSTER_EXTS = {".csv", ".tsv", ".xlsx"}
# Galleries up to this many embeddings are reloaded after each person of a run (later people are checked
# against earlier ones); bigger ones are checked against the gallery as the run found it.
FOLLOW_ROWS = 50_000

VERDICTS = ("enrolled", "duplicate", "no_face", "several_faces", "too_small", "blurred", "turned", "mismatch",
            "looks_like_other", "unreadable")
FLAGS = ("mismatch", "looks_like_other")  # refused unless accepted: the photo may be of someone else


@dataclass
class ImageVerdict:
    """What happened to one image (``warnings``: stored, but worth a look)."""

    source: str
    person: str
    verdict: str
    detail: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def enrolled(self) -> bool:
        return self.verdict == "enrolled"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "person": self.person, "verdict": self.verdict,
                               "detail": self.detail}
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass
class EnrollReport:
    """Every verdict of a run, and the people written."""

    verdicts: list[ImageVerdict] = field(default_factory=list)
    people: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(v.verdict for v in self.verdicts)
        return {k: c[k] for k in VERDICTS if c[k]}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.counts().items()) or "no images"
        warned = sum(1 for v in self.verdicts if v.warnings)
        return (f"{len(self.verdicts)} images, {len(self.people)} people: {counts}."
                + (f" {warned} with a warning." if warned else ""))

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.counts(), "people": self.people, "images": [v.to_json() for v in self.verdicts]}


@dataclass
class Photo:
    """One image to enrol: a label for messages and a way to get its bytes."""

    label: str
    read: Callable[[], bytes]

    @classmethod
    def from_path(cls, path: str | Path) -> Photo:
        p = Path(path)
        return cls(str(p), lambda: _read_file(p))

    @classmethod
    def from_url(cls, url: str, allow_private: bool = False) -> Photo:
        return cls(url, lambda: fetch_url(url, allow_private=allow_private))

    @classmethod
    def refused(cls, label: str, error: FacestreamError) -> Photo:
        """A photo that will not be read (its verdict says why; the rest of the batch goes on)."""

        def read() -> bytes:
            raise error

        return cls(label, read)


# One person to enrol: (name, photos, metadata, person id or None for a new id).
PersonPhotos = tuple[str, list[Photo], dict[str, Any], str | None]


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise FacestreamError(f"Image not found: {path}.", "Check the path.")
    return path.read_bytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def parse_meta(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` from ``--meta`` into a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FacestreamError(f"--meta {item!r} is not key=value.", "Write it as --meta group=B2.")
        out[key.strip()] = value.strip()
    return out


@dataclass
class Candidate:
    """A face that passed the picture checks, waiting for its embedding and the identity checks."""

    label: str
    hash: str
    chip: np.ndarray
    warnings: list[str]


class Enroller:
    """Turns photos into stored embeddings with the analyzer's model.

    Args:
        analyzer: a :class:`facestream.stream.engine.analyzer.FaceAnalyzer`.
        store: the gallery store to write to.
        progress: show a tqdm bar on stderr.
        on_person: called with each person's name after their transaction commits (hooks, tests).
        accept_flagged: store photos flagged ``mismatch`` or ``looks_like_other`` anyway (with a warning).
        allow_local: trust rosters with local reach: photo URLs may point at loopback or private addresses, and
            a roster's photo paths may leave the roster's folder. Off by default (CLI ``--allow-local`` turns it
            on; servers never do): a roster from someone else must not read the machine's files or services.
    """

    def __init__(self, analyzer: FaceAnalyzer, store: GalleryStore, progress: bool = True,
                 on_person: Callable[[str], None] | None = None, accept_flagged: bool = False,
                 allow_local: bool = False):
        self.analyzer = analyzer
        self.store = store
        self.cfg = analyzer.config.gallery
        self.progress = progress
        self.on_person = on_person
        self.accept_flagged = accept_flagged
        self.allow_local = allow_local
        self._seen: dict[str, str] = {}  # hash -> person, within this run
        self._matcher: Matcher | None = None

    @property
    def matcher(self) -> Matcher:
        """The gallery as it stands, for the identity checks (opened on first use)."""
        if self._matcher is None:
            from facestream.stream.recognition.identify import open_matcher

            self._matcher = open_matcher(self.analyzer, self.store, watch=False)
            # a big gallery is not reloaded after every person of a bulk run (checks use the run's start)
            self._matcher.follow_store = self._matcher.rows < FOLLOW_ROWS
        return self._matcher

    # -- one face -----------------------------------------------------------------------------
    def check_face(self, chip: np.ndarray, width: float, landmarks: np.ndarray | None) -> tuple[str, str, list[str]]:
        """The picture checks of one face: (verdict, detail, warnings); verdict ``enrolled`` when it passes."""
        if width < self.cfg.enroll_min_face:
            return "too_small", f"face is {width:.0f} px wide, need {self.cfg.enroll_min_face}", []
        sharp = sharpness(chip)
        if sharp < self.cfg.enroll_min_sharpness:
            return "blurred", f"sharpness {sharp:.1f} < {self.cfg.enroll_min_sharpness}", []
        warnings = []
        if landmarks is not None:
            yaw = head_yaw(landmarks)
            if yaw > self.cfg.enroll_max_yaw:
                return "turned", f"head turned ~{yaw:.0f} degrees (at most {self.cfg.enroll_max_yaw:.0f}); " \
                                 "use a photo facing the camera", []
            if yaw > self.cfg.enroll_warn_yaw:
                warnings.append(f"head turned ~{yaw:.0f} degrees: a frontal photo recognises better")
        return "enrolled", "", warnings

    def check_identity(self, name: str, vectors: np.ndarray, person_id: str | None = None
                       ) -> list[tuple[str, str] | None]:
        """Per new embedding of ``name``: None, or a flag (``mismatch`` / ``looks_like_other``, detail).

        A photo is compared with the person's other photos (stored, and the other new
        ones), at the model's 1:1 point for that many photos, and searched in the
        gallery: a face named as somebody else, and closer to them than to its own
        person, is ``looks_like_other``.
        """
        matcher = self.matcher
        if person_id is None:
            found = self.store.find_person(name)
            person_id = found.id if found else None
        stored = matcher.rows_of(person_id) if person_id else np.zeros((0, vectors.shape[1]), np.float32)
        flags: list[tuple[str, str] | None] = []
        for j, v in enumerate(vectors):
            ref = np.concatenate([stored.reshape(-1, vectors.shape[1]), np.delete(vectors, j, axis=0)])
            flag = None
            own = None
            if len(ref):
                mean = ref.mean(axis=0)
                own = float(v @ (mean / max(float(np.linalg.norm(mean)), 1e-12)))
                need = matcher.decision.verify_threshold_for(len(ref))
                if own < need:
                    flag = ("mismatch", f"similarity {own:.3f} to {name}'s other {len(ref)} photo(s); the same "
                                        f"person scores {need:.3f} or more. Is it someone else?")
            if len(matcher):
                res = matcher.identify(v, top_k=1)
                if res.best is not None and res.best.person_id != person_id and \
                        (own is None or res.best.similarity > own):
                    flag = ("looks_like_other", f"looks like {res.best.name} (similarity {res.best.similarity:.3f}), "
                                                f"who is enrolled; enrolling it would confuse the two")
            flags.append(flag)
        return flags

    # -- one image ----------------------------------------------------------------------------
    def _prepare(self, photo: Photo, name: str, model_id: str) -> tuple[ImageVerdict, Candidate | None]:
        """Read, dedupe, detect, check the picture; returns the verdict so far and the face to embed."""
        def verdict(v: str, detail: str = "", warnings: list[str] | None = None) -> ImageVerdict:
            return ImageVerdict(photo.label, name, v, detail, warnings or [])

        try:
            data = photo.read()
        except FacestreamError as exc:
            return verdict("unreadable", exc.problem), None
        h = content_hash(data)
        owner = self._seen.get(h)
        if owner is None:
            pid = self.store.owner_of(model_id, h)  # a store outage must stop the run, not read as a bad photo
            if pid is not None:
                p = self.store.find_person(pid)
                owner = p.name if p else pid
        if owner is not None:
            same = owner.casefold() == name.casefold()
            return verdict("duplicate", "already enrolled" + ("" if same else f" as {owner}")), None
        try:
            rgb = load_image(data)
        except FacestreamError as exc:
            return verdict("unreadable", exc.problem), None
        try:
            faces = self.analyzer.detect(rgb)
        except FacestreamError as exc:  # e.g. a 2x20000 strip: this photo's verdict, never the batch's end
            return verdict("unreadable", exc.problem), None
        if not len(faces):
            return verdict("no_face"), None
        subject, crowded = photo_subject(faces.width, faces.xyxy, rgb.shape)
        if subject is None:
            return verdict("several_faces", f"{len(faces)} faces of similar size and none alone at the centre; "
                                            "crop to one person"), None
        one = faces[[subject]]
        chip = self.analyzer.chips(rgb, one)[0]
        landmarks = one.landmarks[0] if one.landmarks is not None else None
        v, detail, warnings = self.check_face(chip, float(one.width[0]), landmarks)
        if v != "enrolled":
            return verdict(v, detail), None
        if crowded:
            warnings.append(f"{len(faces)} faces in the photo: enrolled the one at its centre")
        return verdict("enrolled", "", warnings), Candidate(photo.label, h, chip, warnings)

    # -- one person ---------------------------------------------------------------------------
    def enroll_person(self, name: str, photos: list[Photo], metadata: dict[str, Any] | None = None,
                      person_id: str | None = None, bar: Any = None) -> list[ImageVerdict]:
        """Enrol one person from several photos in one transaction (all or nothing)."""
        model_id = self.analyzer.model_id
        verdicts: list[ImageVerdict] = []
        waiting: list[tuple[ImageVerdict, Candidate]] = []
        for photo in photos:
            v, cand = self._prepare(photo, name, model_id)
            verdicts.append(v)
            if cand is not None:
                waiting.append((v, cand))
                self._seen[cand.hash] = name
            if bar is not None:
                bar.update(1)
        stored = self._store_checked(name, [c for _, c in waiting], [v for v, _ in waiting], metadata, person_id)
        if not stored and metadata and self.store.find_person(name) is not None:
            self.store.set_metadata(name, metadata)
        if stored and self.on_person is not None:
            self.on_person(name)
        return verdicts

    def _store_checked(self, name: str, faces: list[Candidate], verdicts: list[ImageVerdict],
                       metadata: dict[str, Any] | None, person_id: str | None, source: str | None = None) -> int:
        """Embed the faces, run the identity checks (updating ``verdicts``) and store what passes, in one
        transaction; returns how many embeddings were stored."""
        if not faces:
            return 0
        model_id = self.analyzer.model_id
        vectors = self.analyzer.embed_chips(np.stack([c.chip for c in faces]))
        flags = self.check_identity(name, vectors, person_id)
        embs = []
        for vec, cand, verdict, flag in zip(vectors, faces, verdicts, flags, strict=True):
            if flag is not None:
                if not self.accept_flagged:
                    verdict.verdict, verdict.detail = flag
                    self._seen.pop(cand.hash, None)
                    continue
                verdict.warnings.append(f"{flag[0].replace('_', ' ')}: {flag[1]} (accepted)")
            embs.append(NewEmbedding(vec, model_id, cand.hash, encode_jpeg(cand.chip) if self.cfg.keep_chips else None,
                                     source or cand.label))
        if embs:
            self.store.enroll(name, embs, metadata, person_id)
        return len(embs)

    def enroll_face(self, name: str, chip: np.ndarray, width: float, landmarks: np.ndarray | None, source: str,
                    person_id: str | None = None) -> ImageVerdict:
        """One face seen elsewhere (a live track, the demo's camera), through the same checks as a photo.

        Returns:
            The verdict; ``enrolled`` when stored (keyed by the hash of the chip's pixels).
        """
        chip = np.ascontiguousarray(chip, np.uint8)
        v, detail, warnings = self.check_face(chip, width, landmarks)
        verdict = ImageVerdict(source, name, v, detail, warnings)
        if v == "enrolled":
            h = content_hash(chip.tobytes())
            owner = self.store.owner_of(self.analyzer.model_id, h)
            if owner is not None:
                p = self.store.find_person(owner)
                mine = p is not None and (p.id == person_id or p.name.casefold() == name.casefold())
                verdict.verdict = "duplicate"
                verdict.detail = "already enrolled" + ("" if mine else f" as {p.name if p else owner}")
                return verdict
            self._store_checked(name, [Candidate(source, h, chip, warnings)], [verdict], None, person_id, source)
        return verdict

    def enroll_chips(self, name: str, chips: np.ndarray, metadata: dict[str, Any] | None = None,
                     source: str = "camera", person_id: str | None = None) -> int:
        """Enrol aligned chips (n, S, S, 3) captured elsewhere (a live track, the demo's webcam).

        The chips are trusted (the caller picked sharp, frontal ones); each is keyed by the hash
        of its pixels. One transaction; returns how many embeddings were added.
        """
        chips = np.asarray(chips, np.uint8)
        if chips.ndim != 4 or not len(chips):
            raise FacestreamError("No face chips to enrol.", "Capture at least one face first.")
        vectors = self.analyzer.embed_chips(chips)
        embs = [NewEmbedding(v, self.analyzer.model_id, content_hash(c.tobytes()),
                             encode_jpeg(c) if self.cfg.keep_chips else None, source)
                for v, c in zip(vectors, chips, strict=True)]
        _, added = self.store.enroll(name, embs, metadata, person_id)
        return added

    def run(self, groups: list[PersonPhotos]) -> EnrollReport:
        """Enrol ``(name, photos, metadata, person_id)`` groups with a progress bar; stops cleanly on store loss."""
        from tqdm import tqdm

        report = EnrollReport()
        total = sum(len(g[1]) for g in groups)
        with tqdm(total=total, unit="img", file=sys.stderr, disable=not self.progress, desc="enrol") as bar:
            for done, (name, photos, meta, pid) in enumerate(groups):
                try:
                    verdicts = self.enroll_person(name, photos, meta, pid, bar)
                except FacestreamError as exc:
                    raise FacestreamError(
                        f"Enrolment stopped at {name!r} (person {done + 1} of {len(groups)}): {exc.problem} "
                        f"The {len(report.people)} people finished before it are stored; {name!r} was not written.",
                        "Fix the cause and run the same command again: stored photos are skipped.") from None
                report.verdicts.extend(verdicts)
                if any(v.enrolled for v in verdicts):
                    report.people.append(name)
        log.info("enrolment: %s", report.summary())
        return report

    # -- sources ------------------------------------------------------------------------------
    def enroll_folder(self, root: str | Path, metadata: dict[str, Any] | None = None) -> EnrollReport:
        """A folder of folders, one per person (the folder name is the person's name)."""
        root = Path(root)
        groups: list[PersonPhotos] = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            photos = [Photo.from_path(f) for f in image_files(folder)]
            if photos:
                groups.append((folder.name, photos, dict(metadata or {}), None))
        if not groups:
            raise FacestreamError(f"{root} holds no person folders with images.",
                                  "Lay it out as people/<name>/*.jpg, or pass photos with --name.")
        return self.run(groups)

    def enroll_video(self, path: str | Path, name: str, metadata: dict[str, Any] | None = None,
                     views: int = VIEWS) -> EnrollReport:
        """Several sharp, different views of the clip's main person (:mod:`.video_enroll`), through the same
        checks as photos, stored in one transaction."""
        found = main_person(collect_views(self.analyzer, path), self.analyzer.threshold)
        if not found:
            report = EnrollReport()
            report.verdicts.append(ImageVerdict(str(path), name, "no_face", "in any sampled frame"))
            return report
        report = self.enroll_views(name, found, str(path), metadata, views)
        log.info("%s: %d sampled views of the main person, %d picked, %d stored", path, len(found),
                 len(report.verdicts), sum(v.enrolled for v in report.verdicts))
        return report

    def enroll_views(self, name: str, found: list[VideoView], where: str, metadata: dict[str, Any] | None = None,
                     views: int = VIEWS) -> EnrollReport:
        """Up to ``views`` sharp, different views of one person (a clip's, a live track's), each through the
        checks a photo gets, stored in one transaction (``where``: the source named in each verdict)."""
        report = EnrollReport()
        candidates: list[Candidate] = []
        waiting: list[ImageVerdict] = []
        for view in pick_views(found, views):
            label = f"{where}#frame{view.frame}"
            v, detail, warnings = self.check_face(view.chip, view.width, view.landmarks)
            verdict = ImageVerdict(label, name, v, detail, warnings)
            report.verdicts.append(verdict)
            if v == "enrolled":
                candidates.append(Candidate(label, content_hash(view.chip.tobytes()), view.chip, warnings))
                waiting.append(verdict)
        if self._store_checked(name, candidates, waiting, metadata, None):
            report.people.append(name)
            if self.on_person is not None:
                self.on_person(name)
        return report

    def enroll_photos(self, paths: list[str | Path], name: str, metadata: dict[str, Any] | None = None
                      ) -> EnrollReport:
        """Single photos (or a flat folder of them) of one named person."""
        photos: list[Photo] = []
        for p in map(Path, paths):
            if p.is_dir():
                photos += [Photo.from_path(f) for f in image_files(p)]
            elif str(p).startswith(("http://", "https://")):
                photos.append(Photo.from_url(str(p), self.allow_local))
            else:
                photos.append(Photo.from_path(p))
        return self.run([(name, photos, dict(metadata or {}), None)])

    def enroll_roster(self, path: str | Path, metadata: dict[str, Any] | None = None,
                      name_column: str | None = None, photo_column: str | None = None) -> EnrollReport:
        """A CSV/XLSX roster: one row per photo; rows sharing a name are one person."""
        path = Path(path)
        header, rows = read_table(path)
        name_col = pick_column(header, name_column, NAME_COLUMNS, "name", path)
        photo_col = pick_column(header, photo_column, PHOTO_COLUMNS, "photo", path)
        id_col = next((c for c in header if c.strip().casefold() in ID_COLUMNS), None)
        groups: dict[str, PersonPhotos] = {}
        for row in rows:
            name = (row.get(name_col) or "").strip()
            ref = (row.get(photo_col) or "").strip()
            if not name and not ref:
                continue
            if not name:
                raise FacestreamError(f"{path}: a row has photo {ref!r} but no name.", f"Fill the {name_col!r} column.")
            meta = {**(metadata or {}), **{k: v.strip() for k, v in row.items()
                                           if k not in (name_col, photo_col, id_col) and k and str(v).strip()}}
            key = name.casefold()
            if key not in groups:
                groups[key] = (name, [], meta, (row.get(id_col) or "").strip() or None if id_col else None)
            else:
                groups[key][2].update(meta)
            if ref:
                if ref.startswith(("http://", "https://")):
                    groups[key][1].append(Photo.from_url(ref, self.allow_local))
                else:
                    groups[key][1].append(self._roster_photo(path, ref))
        if not groups:
            raise FacestreamError(f"{path} has no rows.", "Add one row per photo: name, photo.")
        return self.run(list(groups.values()))

    def _roster_photo(self, roster: Path, ref: str) -> Photo:
        """A photo path named in a roster cell, relative to the roster's folder and (unless ``allow_local``)
        inside it: a roster must not make enrolment read ``/etc`` or someone's home."""
        p = Path(ref).expanduser() if self.allow_local else Path(ref)
        p = p if p.is_absolute() else roster.parent / p
        folder = roster.parent.resolve()
        if not self.allow_local and not p.resolve().is_relative_to(folder):
            return Photo.refused(ref, FacestreamError(
                f"The photo {ref!r} is outside the roster's folder {folder}.",
                "Put the photos beside the roster (or in a folder under it), or pass --allow-local for a roster "
                "you trust."))
        return Photo.from_path(p)

    def enroll_path(self, sources: list[str | Path], name: str | None = None,
                    metadata: dict[str, Any] | None = None, name_column: str | None = None,
                    photo_column: str | None = None) -> EnrollReport:
        """Dispatch on what the user passed: roster file, folder of folders, or photos with ``name``."""
        if not sources:
            raise FacestreamError("Nothing to enrol.", "Pass a folder, photos with --name, or a roster CSV/XLSX.")
        first = Path(sources[0])
        is_url = str(sources[0]).startswith(("http://", "https://"))
        if not is_url and not first.exists():
            raise FacestreamError(f"{first} does not exist.", "Check the path.")
        if len(sources) == 1 and first.suffix.lower() in ROSTER_EXTS and not is_url:
            return self.enroll_roster(first, metadata, name_column, photo_column)
        if name and all(is_video(s) for s in sources) and not is_url:
            report = EnrollReport()
            for clip in sources:
                part = self.enroll_video(clip, name, metadata)
                report.verdicts += part.verdicts
                report.people += [p for p in part.people if p not in report.people]
            return report
        if name:
            return self.enroll_photos(list(sources), name, metadata)
        if len(sources) == 1 and first.is_dir():
            return self.enroll_folder(first, metadata)
        raise FacestreamError("Photos need a name.", "Pass --name NAME, or a folder with one sub-folder per person.")

    def reembed(self, from_model: str) -> EnrollReport:
        """Re-embed every stored chip of ``from_model`` with the current model (after a model change)."""
        spec = self.analyzer.spec
        report = EnrollReport()
        items = list(self.store.iter_chips(from_model))
        by_person: dict[str, list[tuple[str, str, bytes]]] = {}
        for pid, h, source, jpeg in items:
            by_person.setdefault(pid, []).append((h, source, jpeg))
        for pid, chips in by_person.items():
            person = self.store.find_person(pid)
            if person is None:
                continue
            embs, rgbs, keep = [], [], []
            for h, source, jpeg in chips:
                rgb = load_image(jpeg)
                if rgb.shape[0] != spec.input_size or rgb.shape[1] != spec.input_size:
                    faces = self.analyzer.detect(rgb)
                    if not len(faces):
                        report.verdicts.append(ImageVerdict(source or h, person.name, "no_face", "in stored chip"))
                        continue
                    rgb = self.analyzer.chips(rgb, faces[[int(np.argmax(faces.width))]])[0]
                rgbs.append(rgb)
                keep.append((h, source))
            if rgbs:
                vectors = self.analyzer.embed_chips(np.stack(rgbs))
                for vec, (h, source), rgb in zip(vectors, keep, rgbs, strict=True):
                    embs.append(NewEmbedding(vec, self.analyzer.model_id, h, encode_jpeg(rgb), source))
                self.store.enroll(person.name, embs, None, person.id)
                report.people.append(person.name)
                report.verdicts += [ImageVerdict(s or h, person.name, "enrolled") for h, s in keep]
        return report
