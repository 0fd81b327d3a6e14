"""The presence rule: a person counts only after one track has shown them long enough.

A single wrong frame (a stranger matched at 0.61 for one frame) must never mark
anyone, so sightings are accumulated per (camera, track): a track confirms a
person once it has been recognised as that person on at least ``min_frames``
frames spanning at least ``min_seconds``. If the track's identity switches, the
count starts again for the new person. Unknown tracks are confirmed the same
way, and counted once each when they leave without ever having been named
(a track is often unknown for its first frames, before its votes name it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TrackState:
    """What one track has shown so far."""

    camera: str
    track_id: int
    person_id: str | None
    name: str
    frames: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    best_similarity: float = float("-inf")
    confirmed: bool = False
    ever_named: bool = False  # some frame of this track carried a name (then it is nobody's "unknown face")


@dataclass
class Sighting:
    """What :meth:`PresenceRule.observe` tells the caller about one face."""

    state: TrackState
    newly_confirmed: bool
    improved: bool  # best similarity went up on this frame


class PresenceRule:
    """Accumulates per-track evidence and says when a track confirms a person.

    Args:
        min_frames: recognised frames needed on one track.
        min_seconds: time between the first and the latest of those frames.
        threshold: a frame whose similarity is known and below this does not count
            (None: trust the identity the tracker gave the face).
        forget_after: seconds after which a silent track is dropped from memory.
    """

    def __init__(self, min_frames: int = 5, min_seconds: float = 0.0, threshold: float | None = None,
                 forget_after: float = 10.0):
        self.min_frames = max(1, int(min_frames))
        self.min_seconds = float(min_seconds)
        self.threshold = threshold
        self.forget_after = forget_after
        self.tracks: dict[tuple[str, int], TrackState] = {}

    def observe(self, camera: str, track_id: int, ts: float, person_id: str | None, name: str,
                similarity: float | None) -> Sighting | None:
        """Feed one face of one frame; None when the frame does not count."""
        sim = float("nan") if similarity is None else float(similarity)
        if person_id is not None and self.threshold is not None and not math.isnan(sim) and sim < self.threshold:
            return None
        key = (camera, int(track_id))
        state = self.tracks.get(key)
        if state is None or state.person_id != person_id:
            named = (state is not None and state.ever_named) or person_id is not None
            state = TrackState(camera=camera, track_id=int(track_id), person_id=person_id, name=name,
                               first_ts=ts, ever_named=named)
            self.tracks[key] = state
        state.frames += 1
        state.last_ts = ts
        improved = False
        if not math.isnan(sim) and sim > state.best_similarity:
            state.best_similarity = sim
            improved = True
        newly = False
        if not state.confirmed and state.frames >= self.min_frames and ts - state.first_ts >= self.min_seconds:
            state.confirmed = newly = True
        return Sighting(state=state, newly_confirmed=newly, improved=improved)

    def forget(self, now: float) -> list[TrackState]:
        """Drop tracks not seen for ``forget_after`` seconds (they have left the picture); returns them."""
        stale = [k for k, s in self.tracks.items() if now - s.last_ts > self.forget_after]
        return [self.tracks.pop(k) for k in stale]
