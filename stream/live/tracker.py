"""Tracks and identities: boxes associated across frames, a template of each track's views, names voted.

Embedding is the expensive step, so a track is embedded only when it is new,
while its identity is uncertain, or every ``embed_every`` frames; in between it
keeps its voted identity. Every embedding becomes a **view** of the track; views
that look alike (near-duplicate frames) count once, and the track's **template**
(the quality-weighted mean of its distinct views) is what is matched: several
views of one person beat any single one of them (``bench/templates.py``). The
vote over recent template matches means one bad match never renames a person.
The live recognizer (:mod:`facestream.stream.live.recognizer`) drives this module.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from facestream.gallery.types import MatchResult
from facestream.stream.config import TrackingConfig
from facestream.stream.engine.boxes import box_iou
from facestream.stream.engine.faces import UNKNOWN, Faces
from facestream.stream.engine.liveness import TrackLiveness
from facestream.stream.engine.quality import DUPLICATE_VIEW
from facestream.stream.recognition.feedback import FaceSample

log = logging.getLogger(__name__)


@dataclass
class Vote:
    """One recognition of a track: who it looked like (None = nobody) and how much."""

    person_id: str | None
    name: str
    similarity: float
    frame: int
    far: float = float("nan")  # the chance a stranger scores this high against the gallery
    views: int = 1  # distinct views in the template that was matched
    in_scope: bool = True  # False: named by the whole gallery though outside the camera's roster

    @classmethod
    def from_match(cls, result: MatchResult, frame: int, views: int = 1) -> Vote:
        """The vote of one gallery search result (``facestream.gallery.matcher`` answer: ``best`` and
        ``similarity``)."""
        best = result.best
        return cls(best.person_id if best else None, best.name if best else UNKNOWN, float(result.similarity), frame,
                   float(result.far), views, result.in_scope)


MAX_VIEWS = 8  # a track's most distinct views: beyond this the poorest is dropped
MIN_VIEW_WEIGHT = 0.05  # a view's weight in the template never falls below this (quality 0 still counts a little)


@dataclass(eq=False)
class View:
    """One embedded frame of a track (with its face, so a stranger's track can be enrolled)."""

    embedding: np.ndarray
    quality: float
    frame: int
    sample: FaceSample | None = None


@dataclass(eq=False)
class Track:
    """One person walking by, as seen by one source.

    ``person_id``/``name``/``similarity`` hold the voted identity (unknown until
    ``min_votes`` recent matches agree); ``first_seen``/``last_seen`` are capture
    times, so ``age_s`` is how long the person has been in view.
    """

    track_id: int
    box: np.ndarray
    first_frame: int
    first_seen: float
    last_frame: int
    last_seen: float
    hits: int = 1
    missing: int = 0
    votes: deque[Vote] = field(default_factory=deque)
    last_embed_frame: int | None = None
    person_id: str | None = None
    name: str = UNKNOWN
    similarity: float = float("nan")
    far: float = float("nan")  # the best (lowest) stranger chance among the votes for the name
    appearance: np.ndarray | None = None  # mean of recent embeddings (normalised): who this track looks like
    jumped: bool = False  # the last association was a weak overlap: maybe another face, check it
    pending: bool = False  # an embedding of this track is being computed (live pipeline)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # box change per frame
    sample: FaceSample | None = None  # the face as last embedded (a user's "not this person" / "this is X")
    reconsider: bool = False  # set by another thread (a user's correction): forget the votes on the next frame
    excluded: set[str] = field(default_factory=set)  # people a user said this face is not: never voted for it
    views: list[View] = field(default_factory=list)  # distinct embedded views, the template's parts
    quality: float = float("nan")  # the face's quality on the last frame it was seen
    in_scope: bool = True  # the name is on the camera's roster (False: named by the whole gallery's rule)
    liveness: TrackLiveness | None = None  # face-mesh evidence, gathered once the track is (about to be) named

    def add_view(self, embedding: np.ndarray, quality: float, frame: int, sample: FaceSample | None = None) -> bool:
        """Add an embedded frame to the template; a near-duplicate of a view replaces it only when sharper.
        Returns whether the view counts as a new distinct view."""
        emb = np.asarray(embedding, np.float32).reshape(-1)
        view = View(emb, float(quality) if quality == quality else 0.0, frame, sample)
        if self.views:
            sims = np.stack([v.embedding for v in self.views]) @ emb
            j = int(np.argmax(sims))
            if float(sims[j]) >= DUPLICATE_VIEW:
                if view.quality > self.views[j].quality:
                    self.views[j] = view
                return False
        self.views.append(view)
        if len(self.views) > MAX_VIEWS:
            del self.views[int(np.argmin([v.quality for v in self.views]))]
        return True

    @property
    def template(self) -> np.ndarray | None:
        """The quality-weighted mean of the distinct views, L2-normalised (None before the first)."""
        if not self.views:
            return None
        w = np.array([max(v.quality, MIN_VIEW_WEIGHT) for v in self.views], np.float32)
        mean = (w[:, None] * np.stack([v.embedding for v in self.views])).sum(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def predict(self, frame: int) -> np.ndarray:
        """Where the box should be on ``frame``, moving on as it moved (for crops and association)."""
        return self.box + self.velocity * float(max(0, frame - self.last_frame))

    @property
    def age_frames(self) -> int:
        return self.last_frame - self.first_frame + 1

    @property
    def age_s(self) -> float:
        return max(0.0, self.last_seen - self.first_seen)

    @property
    def known(self) -> bool:
        return self.person_id is not None

    def info(self) -> dict:
        """The track as plain JSON values (what result messages carry per face)."""
        return {
            "track_id": self.track_id,
            "age_frames": self.age_frames,
            "age_s": round(self.age_s, 3),
            "hits": self.hits,
            "person_id": self.person_id,
            "name": self.name,
            "similarity": None if np.isnan(self.similarity) else round(float(self.similarity), 4),
            "far": None if np.isnan(self.far) else float(f"{self.far:.3g}"),
            "votes": len(self.votes),
            "views": len(self.views),
            "on_roster": None if self.person_id is None else self.in_scope,
            "quality": None if np.isnan(self.quality) else round(float(self.quality), 3),
            "liveness": None if self.liveness is None else self.liveness.verdict.to_json(),
        }


@dataclass
class TrackUpdate:
    """What one frame did to the tracks: who is where, and what changed.

    """

    track_ids: np.ndarray            # (n,) per input face
    tracks: list[Track]              # per input face
    started: list[Track]
    ended: list[Track]



class Tracker:
    """IoU tracker (Hungarian assignment) with per-track identity voting, for one source.

    Boxes alone cannot tell a scene cut or two people crossing from one person
    moving, so appearance keeps tracks honest: a track whose box jumped (weak
    overlap) is re-embedded at once, and a track whose new embedding no longer
    looks like its past ones is split (:meth:`check_appearance`), so a name
    never passes from one person to another.

    Not thread-safe: each source's worker owns one tracker.
    """

    JUMP_IOU = 0.5  # an association weaker than this triggers an immediate appearance check

    def __init__(self, config: TrackingConfig | None = None, first_id: int = 1):
        self.config = config or TrackingConfig()
        self.tracks: list[Track] = []
        self._next_id = first_id

    # -- association -----------------------------------------------------
    def update(self, faces: Faces, frame: int, timestamp: float) -> TrackUpdate:
        """Associate this frame's boxes with the live tracks; sets ``faces.track_id``.

        Boxes are matched to where each track is predicted to be (moving on as it
        moved); tracks unmatched for more than ``max_missing`` frames end.
        """
        boxes = faces.xyxy
        n = len(boxes)
        assigned: list[Track | None] = [None] * n
        live = self.tracks
        if n and live:
            iou = box_iou(boxes, np.stack([t.predict(frame) for t in live]))
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= self.config.iou_match:
                    assigned[r] = live[c]
                    live[c].jumped = bool(iou[r, c] < self.JUMP_IOU)
        matched = {id(t) for t in assigned if t is not None}
        started: list[Track] = []
        old = len(self.tracks)
        tracks: list[Track] = []
        for i, t in enumerate(assigned):
            if t is None:
                t = Track(self._next_id, boxes[i].copy(), frame, timestamp, frame, timestamp)
                self._next_id += 1
                self.tracks.append(t)
                started.append(t)
            else:
                step = boxes[i] - t.box
                t.velocity = 0.5 * t.velocity + 0.5 * step / float(max(1, frame - t.last_frame))
                t.box = boxes[i].copy()
                t.last_frame, t.last_seen = frame, timestamp
                t.hits += 1
                t.missing = 0
            tracks.append(t)
        ended: list[Track] = []
        keep: list[Track] = []
        for k, t in enumerate(self.tracks):
            if k < old and id(t) not in matched:
                t.missing += 1
                if t.missing > self.config.max_missing:
                    ended.append(t)
                    continue
            keep.append(t)
        self.tracks = keep
        ids = np.array([t.track_id for t in tracks], dtype=np.int64)
        faces.track_id = ids
        return TrackUpdate(ids, tracks, started, ended)

    def forget_identity(self, track: Track) -> None:
        """Drop the track's votes and name and embed it again at once (after a user's correction)."""
        track.votes.clear()
        track.person_id, track.name, track.similarity = None, UNKNOWN, float("nan")
        track.far = float("nan")
        track.last_embed_frame = None
        track.reconsider = False

    def end_all(self) -> list[Track]:
        """End every track (source stopped); returns them for 'left' events."""
        ended, self.tracks = self.tracks, []
        return ended

    # -- identity ----------------------------------------------------------
    def to_embed(self, tracks: list[Track], side: np.ndarray, frame: int, min_face: float,
                 quality: np.ndarray | None = None) -> list[int]:
        """Indices of this frame's tracks to embed now: big enough to recognise, good enough
        (``min_quality``), and new, uncertain or due."""
        good = np.ones(len(tracks), bool) if quality is None else quality >= self.config.min_quality
        return [i for i, t in enumerate(tracks)
                if side[i] >= min_face and good[i] and self.needs_embedding(t, frame)]

    def needs_embedding(self, track: Track, frame: int) -> bool:
        """New, uncertain, or due for its periodic re-check (and no embedding of it already in flight)."""
        if track.pending:
            return False
        if track.last_embed_frame is None or track.jumped:
            return True
        if self.uncertain(track):
            return True
        return frame - track.last_embed_frame >= self.config.embed_every

    def uncertain(self, track: Track) -> bool:
        """Too few votes to settle on a name or on unknown, or the latest vote disagrees."""
        if not track.votes:
            return True
        if track.known:
            return track.votes[-1].person_id != track.person_id
        unknown_votes = sum(v.person_id is None for v in track.votes)
        return unknown_votes < self.config.min_votes and len(track.votes) < self.config.vote_window

    def check_appearance(self, track: Track, embedding: np.ndarray, threshold: float, frame: int,
                         timestamp: float) -> tuple[Track, Track | None]:
        """Keep the track if ``embedding`` still looks like it, else split it.

        Args:
            embedding: the face's new L2-normalised embedding.
            threshold: cosine similarity at or above which two faces are the same person.

        Returns:
            (the track the face belongs to, the ended track or None). On a split the
            new track starts fresh (new id, no votes) at the same box.
        """
        emb = np.asarray(embedding, np.float32).reshape(-1)
        track.jumped = False
        if track.appearance is not None and float(track.appearance @ emb) < threshold:
            fresh = Track(self._next_id, track.box.copy(), frame, timestamp, frame, timestamp)
            self._next_id += 1
            self.tracks = [fresh if t is track else t for t in self.tracks]
            log.debug("track %d split: new face, now track %d", track.track_id, fresh.track_id)
            fresh.appearance = emb
            fresh.quality = track.quality
            return fresh, track
        mean = emb if track.appearance is None else 0.7 * track.appearance + 0.3 * emb
        track.appearance = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return track, None

    def vote(self, track: Track, vote: Vote) -> bool:
        """Record a recognition and re-decide the identity; True when the name changed.

        The name is the person with the most votes in the last ``vote_window`` if
        they have at least ``min_votes`` and more than "nobody" has: an unknown
        vote is a vote against every name, so two chance matches of a stranger
        among five unknowns leave the stranger unknown. An unknown vote counts
        against a name only when its template had at least as many views as the
        name's best: a template that grew by a new view supersedes what its
        smaller self could not decide. Ties between two names keep the current
        name, then the higher mean similarity.
        """
        if vote.person_id is not None and vote.person_id in track.excluded:
            vote = Vote(None, UNKNOWN, vote.similarity, vote.frame, views=vote.views)  # a user said it is not them
        track.votes.append(vote)
        track.last_embed_frame = vote.frame
        while len(track.votes) > self.config.vote_window:
            track.votes.popleft()
        counts = Counter(v.person_id for v in track.votes)
        counts.pop(None, 0)
        best: str | None = None
        if counts:
            def rank(pid: str | None) -> tuple[int, int, float]:
                sims = [v.similarity for v in track.votes if v.person_id == pid]
                return counts[pid], int(pid == track.person_id), float(np.mean(sims))

            cand = max(counts, key=rank)
            views = max(v.views for v in track.votes if v.person_id == cand)
            against = sum(1 for v in track.votes if v.person_id is None and v.views >= views)
            if counts[cand] >= self.config.min_votes and counts[cand] > against:
                best = cand
        changed = best != track.person_id
        if best is None:
            track.person_id, track.name = None, UNKNOWN
            track.similarity = vote.similarity
            track.far = float("nan")
        else:
            mine = [v for v in track.votes if v.person_id == best]
            track.person_id = best
            track.name = mine[-1].name
            track.in_scope = mine[-1].in_scope
            track.similarity = float(np.mean([v.similarity for v in mine]))
            track.far = float(np.nanmin([v.far for v in mine])) if any(v.far == v.far for v in mine) else float("nan")
        if changed:
            log.debug("track %d is now %s", track.track_id, track.name)
        return changed
