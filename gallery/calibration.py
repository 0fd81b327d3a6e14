"""Calibration on the user's own people: error rates at candidate thresholds, and the population shift.

The model's impostor tail was measured on a research set; a school, a company or a
family may look more alike than that set's people. From a gallery (and optional
photos of strangers) this module measures, with the matcher's own scoring (mean
embedding, photo-count shift):

* **genuine** scores, leave-one-out: each photo of a person with two or more
  photos against the mean of their *other* photos;
* **impostor** scores: each photo against every other person (a stranger for them),
  and each stranger's photo against everyone;
* per candidate threshold, the false-reject rate, the false-accept rate per person,
  and the open-set rate: a photo is shown to the gallery without its own person, as a
  stranger would be, and counts when anybody passes;
* the **shift**: how much higher this population's impostor scores sit than the
  model's tail predicts, where the data can tell (``MIN_TAIL_COUNT`` scores above a
  level); the matcher then reads the tail that much higher.

Too little data gives warnings, not numbers that look precise: a false-accept rate of
1e-3 cannot be checked with fewer than ~3,000 impostor comparisons (with none seen,
the 95% upper bound is 3/n).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facestream.gallery.decision import MIN_TAIL_COUNT, ImpostorTail
from facestream.gallery.store import GalleryMatrix

CANDIDATE_FARS = (1e-1, 1e-2, 1e-3, 1e-4)
MIN_GENUINE = 20  # fewer leave-one-out pairs cannot say much about false rejects
MIN_IMPOSTOR_FOR_SHIFT = 2000
CHUNK = 1024  # probes scored at once (a chunk against every person)


@dataclass
class ThresholdRow:
    """Measured rates at one threshold (similarity to a one-photo person; people with more photos need
    their shift more)."""

    label: str
    threshold: float
    target_far: float | None
    frr: float | None
    far_per_person: float | None
    far_open_set: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: (None if v is None else (round(v, 6) if isinstance(v, float) else v))
                for k, v in self.__dict__.items()}


@dataclass
class CalibrationReport:
    """What ``facestream calibrate`` prints, plots and stores."""

    people: int
    photos: int
    strangers: int
    genuine: np.ndarray = field(repr=False)  # adjusted genuine scores
    impostor: np.ndarray = field(repr=False)  # the upper part of the adjusted impostor scores
    impostor_total: int  # impostor comparisons made (the denominator of every rate)
    open_set: np.ndarray = field(repr=False)  # best adjusted score of each stranger probe against the gallery
    shift: float | None
    rows: list[ThresholdRow]
    warnings: list[str]
    far: float

    @property
    def enough(self) -> bool:
        """Whether the data can support storing an operating point."""
        return self.shift is not None

    def operating_point(self, model_id: str) -> dict[str, Any]:
        """The setting stored with the gallery (``operating_point:<model_id>``)."""
        return {"model_id": model_id, "far": self.far, "shift": round(self.shift or 0.0, 5), "created": time.time(),
                "people": self.people, "photos": self.photos, "strangers": self.strangers,
                "genuine_pairs": int(len(self.genuine)), "impostor_comparisons": self.impostor_total}

    def to_json(self) -> dict[str, Any]:
        return {"people": self.people, "photos": self.photos, "strangers": self.strangers,
                "genuine_pairs": int(len(self.genuine)), "impostor_comparisons": self.impostor_total,
                "open_set_probes": int(len(self.open_set)), "shift": self.shift, "far": self.far,
                "thresholds": [r.to_json() for r in self.rows], "warnings": self.warnings}


def _means(data: GalleryMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per person: normalised mean embedding, photo count, and the first row."""
    rp = data.row_person
    starts = np.flatnonzero(np.r_[True, rp[1:] != rp[:-1]])
    counts = np.diff(np.r_[starts, len(rp)])
    sums = np.add.reduceat(data.matrix.astype(np.float64), starts, axis=0)
    means = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return means.astype(np.float32), counts, starts


def calibrate_gallery(data: GalleryMatrix, tail: ImpostorTail | None, far: float,
                      strangers: np.ndarray | None = None) -> CalibrationReport:
    """Measure the decision on a gallery snapshot (and strangers' embeddings) and estimate the shift.

    Args:
        data: the gallery's matrix for one model (:meth:`GalleryStore.load_matrix`).
        tail: the model's impostor tail (None: thresholds are placed from the data alone).
        far: the target rate the user wants (reported first, stored).
        strangers: (m, D) embeddings of people not enrolled, if any.
    """
    n_people, n_photos = len(data.person_ids), len(data.matrix)
    if n_people < 2:
        raise ValueError("calibration needs at least two enrolled people")
    strangers = np.zeros((0, data.matrix.shape[1]), np.float32) if strangers is None else strangers
    photo_shift = tail.photo_shift if tail is not None else 0.0
    means, counts, starts = _means(data)
    genuine_a = _genuine_scores(data, counts, starts, photo_shift)
    floor = tail.score_at(-1.0) - 0.05 if tail is not None else -2.0
    impostor, total, open_set = _impostor_scores(data, means, counts, strangers, photo_shift, floor)
    shift = _population_shift(impostor, total, tail) if tail is not None and total >= MIN_IMPOSTOR_FOR_SHIFT else None
    warnings = _warnings(total, shift, len(genuine_a), len(open_set), far)
    effective = tail.shifted(shift) if tail is not None and shift is not None else tail
    candidates: list[tuple[str, float, float | None]] = []
    if effective is not None:
        for f in sorted({far, *CANDIDATE_FARS}, reverse=True):
            candidates.append((f"far {f:g}" + (" (chosen)" if f == far else ""),
                               effective.threshold(f, n_people, 1), f))
    else:
        for q in (0.9, 0.99, 0.999):
            if len(impostor):
                candidates.append((f"impostor quantile {q}", float(np.quantile(impostor, q)), None))  # all kept
    rows = [ThresholdRow(label, float(t), target,
                         float((genuine_a < t).mean()) if len(genuine_a) else None,
                         float((impostor >= t).sum() / total) if total else None,
                         float((open_set >= t).mean()) if len(open_set) else None)
            for label, t, target in candidates]
    return CalibrationReport(n_people, n_photos, int(len(strangers)), genuine_a, impostor.astype(np.float32),
                             total, open_set.astype(np.float32), shift, rows, warnings, far)


def _genuine_scores(data: GalleryMatrix, counts: np.ndarray, starts: np.ndarray, photo_shift: float) -> np.ndarray:
    """Leave-one-out: each photo against the mean of its person's other photos (people with two or more)."""
    rp = data.row_person
    sums = np.add.reduceat(data.matrix.astype(np.float64), starts, axis=0)
    genuine = []
    for i in np.flatnonzero(counts[rp] >= 2):
        p = rp[i]
        rest = sums[p] - data.matrix[i]
        rest /= np.linalg.norm(rest)
        k = counts[p] - 1
        genuine.append(float(data.matrix[i] @ rest) - photo_shift * (1.0 - 1.0 / k))
    return np.array(genuine, np.float32)


def _impostor_scores(data: GalleryMatrix, means: np.ndarray, counts: np.ndarray, strangers: np.ndarray,
                     photo_shift: float, floor: float) -> tuple[np.ndarray, int, np.ndarray]:
    """Each photo against every other person, each stranger against everyone: the scores at or above
    ``floor`` (only rates of 10% and below matter, so big galleries keep that part), how many comparisons
    there were in all, and every probe's best score (the open-set view)."""
    shift_k = (photo_shift * (1.0 - 1.0 / counts)).astype(np.float32)  # per person
    kept: list[np.ndarray] = []
    total = 0
    best: list[np.ndarray] = []
    for vectors, owner in [(data.matrix, data.row_person), (strangers, None)]:
        for lo in range(0, len(vectors), CHUNK):
            adjusted = vectors[lo:lo + CHUNK] @ means.T - shift_k[None, :]
            if owner is not None:  # a photo is shown without its own person, as a stranger would be
                adjusted[np.arange(len(adjusted)), owner[lo:lo + CHUNK]] = -np.inf
                total += adjusted.size - len(adjusted)
            else:
                total += adjusted.size
            kept.append(adjusted[adjusted >= floor])
            best.append(adjusted.max(axis=1))
    impostor = np.concatenate(kept) if kept else np.zeros(0, np.float32)
    open_set = np.concatenate(best) if best else np.zeros(0, np.float32)
    return impostor, total, open_set


def _population_shift(impostor: np.ndarray, total: int, tail: ImpostorTail) -> float | None:
    """How far this gallery's impostor tail sits from the model's, the median over the levels the data
    can measure (None: none)."""
    x = np.sort(impostor)
    diffs = []
    for level in np.arange(-1.0, -8.0, -0.25):
        above = int(round(total * 10 ** level))
        if above < MIN_TAIL_COUNT or above > len(x):
            break
        diffs.append(float(x[len(x) - above]) - tail.score_at(float(level)))
    return float(np.median(diffs)) if diffs else None


def _warnings(total: int, shift: float | None, genuine: int, probes: int, far: float) -> list[str]:
    """What the data is too small to measure, in words."""
    warnings: list[str] = []
    if shift is None:
        warnings.append(f"{total} impostor comparisons are too few to measure how alike your people look "
                        f"(need {MIN_IMPOSTOR_FOR_SHIFT}: more people, or --strangers folders of people not "
                        "enrolled); the model's calibration stays in force")
    if genuine < MIN_GENUINE:
        warnings.append(f"only {genuine} people-photo pairs of the same person (need {MIN_GENUINE}: enrol "
                        "two photos or more per person) -- false rejects cannot be measured")
    need = math.ceil(3 / far)
    if probes < need:
        warnings.append(f"{probes} stranger probes cannot check a false-accept rate of {far:g} "
                        f"(need ~{need}); the rate shown is the model's prediction")
    return warnings
