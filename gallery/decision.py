"""Open-set decisions: how likely a stranger is to score this well, against this person and this gallery.

A similarity alone cannot say how sure a name is. What a user needs is the chance
that a face of somebody *not* enrolled scores as high, and that chance grows with
the gallery: a stranger has one try per enrolled person. This module turns a
similarity into that chance from the embedding model's **impostor tail**, the
measured share of strangers' faces scoring at or above each similarity against
one enrolled photo (``P1(s)``), shipped with the model (derived from the LFW
calibration set: ``bench/calibrate.py``) and adjustable to a user's own people
(``facestream calibrate``).

* A person is scored by the cosine similarity to their **mean embedding** (the
  normalised mean of their photos). Averaging k photos makes a person look more
  like everyone a little (a stranger's score against a mean of k photos is, on LFW,
  shifted up by ``photo_shift * (1 - 1/k)``), so the tail is read at
  ``s - photo_shift * (1 - 1/k)``: more photos make genuine matches surer
  without making strangers pass more often.
* A face may be a **template** of several views too (a live track's distinct
  frames, :mod:`facestream.stream.live.tracker`). A stranger's template of v views
  comes closer to everyone in the same way, so the tail is also read
  ``view_shift * (1 - 1/v)`` lower; on LFW (k-photo probes, two-fold by person:
  ``bench/templates.py``) the two shifts add up.
* Against ``n`` people the chance that a stranger passes somebody is
  ``1 - (1 - p)^n`` (independent tries: on LFW this overestimates the measured
  rate by 1.3-2x, the safe side).
* **The runner-up counts** (``match.margin_weight`` = w > 0): a face is judged by
  ``s1 + w (s1 - s2)``, its best score plus a weighted lead over the second
  person. A stranger close to one enrolled person is usually close to several, so
  a lead is rare among strangers and common among the enrolled: on LFW (galleries
  of 200 and 1,000 people enrolled from one photo, two folds by person) it names
  5-15 points more at the same measured stranger rate (``bench/templates.py``).
  The stranger rate of that statistic comes from the same tail: the best two of
  ``n`` independent stranger scores (:meth:`ImpostorTail.gallery_far_lead`).
* A face is named when that estimate is at most the target rate ``far``
  (``match.far``); 1:1 verification keeps the model's own threshold for one photo
  against one photo (:attr:`Decision.verify_threshold`), read for a person of k
  photos at the same tail level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

DEFAULT_FAR = 1e-3
MIN_TAIL_COUNT = 10  # a tail level needs this many impostor scores above it to be measured, not guessed


@dataclass(frozen=True)
class ImpostorTail:
    """``log10 P1(s)``: the share of strangers' faces scoring ``s`` or more against one enrolled photo.

    Attributes:
        scores: ascending similarities at which the tail was measured.
        log10_p: the tail at each of ``scores`` (descending, <= 0).
        photo_shift: how much closer strangers come to a mean of many photos than to one (see module doc).
        source: where the numbers come from (data set, pairs, date), for people reading a decision.
        view_shift: the same for a query that is a template of several views; None = ``photo_shift``.
    """

    scores: tuple[float, ...]
    log10_p: tuple[float, ...]
    photo_shift: float = 0.0
    source: str = ""
    view_shift: float | None = None
    _s: np.ndarray = field(init=False, repr=False, compare=False)
    _l: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, np.float64)
        lp = np.asarray(self.log10_p, np.float64)
        if len(s) < 2 or len(s) != len(lp) or np.any(np.diff(s) <= 0) or np.any(np.diff(lp) > 0) or lp[0] > 0:
            raise ValueError("an impostor tail needs >= 2 points, scores rising and log10 p falling from <= 0")
        object.__setattr__(self, "_s", s)
        object.__setattr__(self, "_l", lp)

    # -- reading ------------------------------------------------------------------------------
    def shift_for(self, photos: np.ndarray | int) -> np.ndarray:
        """The score shift of a person enrolled from ``photos`` embeddings (0 for one photo)."""
        k = np.maximum(np.asarray(photos, np.float64), 1.0)
        return self.photo_shift * (1.0 - 1.0 / k)

    def shift_for_views(self, views: np.ndarray | int) -> np.ndarray:
        """The score shift of a query template of ``views`` distinct views (0 for one view)."""
        k = np.maximum(np.asarray(views, np.float64), 1.0)
        per = self.photo_shift if self.view_shift is None else self.view_shift
        return per * (1.0 - 1.0 / k)

    def log10_p1(self, score: np.ndarray | float) -> np.ndarray:
        """``log10 P1`` at ``score``: interpolated; beyond the last measured point extended along the last
        segment's slope (the tail steepens further out, so this overestimates the rate: the safe side)."""
        x = np.asarray(score, np.float64)
        s, lp = self._s, self._l
        out = np.interp(x, s, lp)
        slope = (lp[-1] - lp[-2]) / (s[-1] - s[-2])
        out = np.where(x > s[-1], lp[-1] + slope * (x - s[-1]), out)
        return np.minimum(np.where(x < s[0], lp[0], out), 0.0)

    def log10_p_person(self, score: np.ndarray | float, photos: np.ndarray | int, views: np.ndarray | int = 1
                       ) -> np.ndarray:
        """``log10`` of the chance that a stranger (a template of ``views``) scores ``score`` or more against
        one person."""
        return self.log10_p1(np.asarray(score, np.float64) - self.shift_for(photos) - self.shift_for_views(views))

    def gallery_far(self, score: np.ndarray | float, photos: np.ndarray | int, people: int,
                    views: np.ndarray | int = 1) -> np.ndarray:
        """The chance that a stranger scores this well against somebody in a gallery of ``people``."""
        p = np.power(10.0, self.log10_p_person(score, photos, views))
        return -np.expm1(max(1, int(people)) * np.log1p(-np.minimum(p, 1.0 - 1e-16)))

    def score_at(self, log10_p: float) -> float:
        """The similarity where ``log10 P1`` falls to ``log10_p`` (one photo against one photo)."""
        s, lp = self._s, self._l
        if log10_p >= lp[0]:
            return float(s[0])
        if log10_p < lp[-1]:
            slope = (lp[-1] - lp[-2]) / (s[-1] - s[-2])
            return float(s[-1] + (log10_p - lp[-1]) / slope)
        return float(np.interp(-log10_p, -lp, s))

    def threshold(self, far: float, people: int, photos: int = 1, views: int = 1) -> float:
        """The similarity a person of ``photos`` embeddings needs in a gallery of ``people`` for ``far``
        (against a query template of ``views``)."""
        per_person = -math.expm1(math.log1p(-far) / max(1, int(people)))
        return (self.score_at(math.log10(per_person)) + float(self.shift_for(photos))
                + float(self.shift_for_views(views)))

    def gallery_far_lead(self, lead_score: float, people: int, weight: float) -> float:
        """The chance that a stranger's best two scores ``a1 >= a2`` against ``people`` one-photo people give
        ``a1 + weight (a1 - a2) >= lead_score`` (scores in the tail's frame: shifts already taken off).

        With ``F`` the stranger-score distribution (``1 - P1``) and independent tries, the best score is
        ``t = lead_score`` or more with chance ``1 - F(t)^n``; below it, at ``x``, the runner-up must lie
        under ``y = ((1 + w) x - t) / w``: ``n F(y)^(n-1) dF(x)`` summed over ``x < t``. Below the tail's
        first point the mass is counted as if every stranger there passed (the safe side)."""
        n = max(1, int(people))
        if weight <= 0.0 or n == 1:
            return float(self.gallery_far(lead_score, 1, n))
        t = float(lead_score)
        lo = min(float(self._s[0]), t) - 0.05
        x = np.linspace(lo, t, 801)
        cdf = -np.expm1(np.log(10.0) * self.log10_p1(x))  # F(x) = 1 - P1(x)
        mid = 0.5 * (x[1:] + x[:-1])
        y = ((1.0 + weight) * mid - t) / weight
        f_y = -np.expm1(np.log(10.0) * self.log10_p1(y))
        inside = np.sum(n * np.power(np.maximum(f_y, 0.0), n - 1) * np.diff(cdf))
        below = float(cdf[0]) ** n  # every stranger whose best lies under the grid: counted as passing
        above = float(-np.expm1(n * np.log(max(float(cdf[-1]), 1e-300))))
        return float(min(1.0, above + inside + below))

    def lead_threshold(self, far: float, people: int, weight: float) -> float:
        """The ``a1 + weight (a1 - a2)`` that strangers reach with chance ``far`` in a gallery of ``people``."""
        return _lead_threshold(self, float(far), max(1, int(people)), float(weight))

    # -- changing -----------------------------------------------------------------------------
    def shifted(self, delta: float, source: str = "") -> ImpostorTail:
        """The same tail ``delta`` higher: a population whose strangers look more alike (``calibrate``)."""
        return replace(self, scores=tuple(float(v) + delta for v in self.scores),
                       source=source or f"{self.source}, shifted by {delta:+.4f}")

    @classmethod
    def fit(cls, impostor_scores: np.ndarray, photo_shift: float = 0.0, source: str = "",
            step: float = 0.25) -> ImpostorTail:
        """The tail measured from impostor scores (one photo against one photo), every ``step`` decades down
        to where ``MIN_TAIL_COUNT`` scores remain above it.

        Raises:
            ValueError: fewer than 100 scores (nothing to measure).
        """
        x = np.sort(np.asarray(impostor_scores, np.float64).reshape(-1))
        n = len(x)
        if n < 100:
            raise ValueError(f"{n} impostor scores are too few to measure a tail (100 at least)")
        levels = -np.arange(step, 30, step)
        levels = levels[np.power(10.0, levels) * n >= MIN_TAIL_COUNT]
        scores: list[float] = []
        logs: list[float] = []
        for level in levels:
            above = int(round(n * 10.0 ** level))
            s = float(x[n - above])  # the lowest of the top `above` scores
            if scores and s <= scores[-1]:
                continue
            scores.append(s)
            logs.append(math.log10(max(1, int(n - np.searchsorted(x, s, "left"))) / n))
        if len(scores) < 2:
            raise ValueError("the impostor scores hold too few distinct values to measure a tail")
        return cls(tuple(scores), tuple(float(v) for v in np.minimum.accumulate(logs)), photo_shift,
                   source or f"{n} impostor scores")

    def to_json(self) -> dict[str, Any]:
        out = {"scores": [round(v, 5) for v in self.scores], "log10_p": [round(v, 4) for v in self.log10_p],
               "photo_shift": round(self.photo_shift, 5), "source": self.source}
        if self.view_shift is not None:
            out["view_shift"] = round(self.view_shift, 5)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImpostorTail:
        view = data.get("view_shift")
        return cls(tuple(float(v) for v in data["scores"]), tuple(float(v) for v in data["log10_p"]),
                   float(data.get("photo_shift", 0.0)), str(data.get("source", "")),
                   None if view is None else float(view))


@lru_cache(maxsize=512)
def _lead_threshold(tail: ImpostorTail, far: float, people: int, weight: float) -> float:
    """Bisection on the lead statistic (its stranger rate falls as it rises); cached: one per gallery size."""
    lo = tail.score_at(0.0) - 1.0
    hi = tail.threshold(far, people) + 0.05
    while tail.gallery_far_lead(hi, people, weight) > far:
        hi += 0.1
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if tail.gallery_far_lead(mid, people, weight) > far:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class Decision:
    """How the matcher decides: an open-set rate against the gallery, or a fixed threshold.

    Attributes:
        verify_threshold: cosine similarity for one photo against one photo (the model's 1:1 point).
        tail: the impostor tail; None = decide by ``fixed_threshold`` (or ``verify_threshold``) alone.
        far: the target chance that a stranger is named, per face searched, for the whole gallery.
        fixed_threshold: name at or above this similarity whatever the gallery's size (``match.threshold``).
        min_margin: also unknown when the second person is within this much (adjusted) similarity.
        margin_weight: judge the open-set decision by ``s1 + w (s1 - s2)`` (0 = the best score alone).
    """

    verify_threshold: float
    tail: ImpostorTail | None = None
    far: float = DEFAULT_FAR
    fixed_threshold: float | None = None
    min_margin: float = 0.0
    margin_weight: float = 0.0

    @property
    def open_set(self) -> bool:
        return self.tail is not None and self.fixed_threshold is None

    def shift(self, photos: np.ndarray) -> np.ndarray:
        """Per person, the score shift their photo count brings (zeros without a tail)."""
        if self.tail is None:
            return np.zeros(len(photos), np.float32)
        return self.tail.shift_for(photos).astype(np.float32)

    def identification_threshold(self, people: int, photos: int = 1, views: int = 1) -> float:
        """The similarity a person of ``photos`` embeddings needs to be named in a gallery of ``people`` by a
        query template of ``views`` distinct views."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        if self.tail is None:
            return self.verify_threshold
        return self.tail.threshold(self.far, people, photos, views)

    def estimate_far(self, score: float, photos: int, people: int, views: int = 1) -> float:
        """The chance a stranger scores this well against somebody here (nan without a tail)."""
        if self.tail is None:
            return float("nan")
        return float(self.tail.gallery_far(score, photos, people, views))

    def names(self, score: float, photos: int, people: int, views: int = 1) -> bool:
        """Whether a best score of ``score`` (a person of ``photos`` embeddings) names the face."""
        return bool(score >= self.identification_threshold(people, photos, views))

    def leads(self) -> bool:
        """Whether the runner-up's score takes part in naming (open set with ``margin_weight`` > 0)."""
        return self.open_set and self.margin_weight > 0.0

    def lead_decision(self, best: float, second: float, photos: int, second_photos: int, people: int,
                      views: int = 1) -> tuple[bool, float, float]:
        """(named, the similarity the best person needed given the runner-up, the stranger rate) for a face
        whose best person scores ``best`` and runner-up ``second`` (raw similarities; people of ``photos`` and
        ``second_photos`` embeddings) against a query template of ``views``."""
        assert self.tail is not None
        w = self.margin_weight
        view = float(self.tail.shift_for_views(views))
        a1 = best - float(self.tail.shift_for(photos)) - view
        a2 = second - float(self.tail.shift_for(second_photos)) - view
        lead = a1 + w * (a1 - a2)
        need = self.tail.lead_threshold(self.far, people, w)
        needed = (need + w * a2) / (1.0 + w) + float(self.tail.shift_for(photos)) + view
        return lead >= need, needed, self.tail.gallery_far_lead(lead, people, w)

    def verify_threshold_for(self, photos: int, views: int = 1) -> float:
        """The 1:1 threshold for a person of ``photos`` embeddings and a query template of ``views`` distinct
        views (the same stranger rate as one photo against one photo)."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        extra = float(self.tail.shift_for_views(views)) if self.tail is not None else 0.0
        return self.verify_threshold + float(self.shift(np.array([photos]))[0]) + extra
