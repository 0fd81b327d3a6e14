"""The in-memory match index: cosine top-k over every enrolled embedding of one model.

The store is the truth; the matcher holds a cache of it: an L2-normalised
float32 matrix (rows grouped by person) and the ids and names. The cache is
rebuilt when the store's version changes. With Redis, a pub/sub listener
hears every write by any process (events carry ``op``, ``person`` and ``time``)
and rebuilds it in the background when the store's version differs from the
snapshot's, so searches never poll; with SQLite, a search first compares the
version (one indexed read).

Search is a memory-bound scan: one BLAS matrix product per block of rows, and
only rows that beat the running k-th best are kept (``argpartition`` once per
query, then a cheap comparison per block). A person is scored by their mean
embedding, so more photos make a person surer, not more attractive to strangers;
the decision (:mod:`facestream.gallery.decision`) names a face when a stranger
would score as high with at most the target chance against a gallery of this
size, or at a fixed threshold; a face is also ``unknown`` when the second person
is closer than ``min_margin`` or exactly as close, and a person whose negatives
("not this person") the face resembles more than their photos is never named for
it. On a CUDA machine (torch importable and a GPU present) the matrix lives on
the GPU instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from facestream.gallery.decision import DEFAULT_FAR, Decision, ImpostorTail
from facestream.gallery.errors import GalleryError
from facestream.gallery.store import GalleryMatrix, GalleryStore
from facestream.gallery.types import Match, MatchResult

log = logging.getLogger(__name__)

BLOCK_ROWS = 65536  # rows per matrix product: big enough that BLAS runs at full speed (measured)
SEED_ROWS = 2048  # rows fully ranked per query; after them only rows above the running k-th best are kept
RETRY_SECONDS = 1.0  # after a failed reload (store down), wait this long before trying again


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass
class _Index:
    """One immutable snapshot; searches use whichever snapshot was current when they started.

    People are searched by their mean embedding (see :mod:`facestream.gallery.decision`),
    one row each, with one more column holding minus their photo-count shift: a query
    with a 1 appended scores ``similarity - shift`` in the same matrix product, so the
    top-k scan ranks people exactly as the decision compares them.
    """

    data: GalleryMatrix
    decision: Decision
    starts: np.ndarray  # first row of each person in data.matrix
    photos: np.ndarray  # embeddings per person
    people: np.ndarray  # (P, D + 1) float32: normalised mean embedding, then -shift
    negatives: dict[int, np.ndarray]  # person index -> their negative rows
    device_matrix: Any = None  # torch tensor of `people` on the GPU, when used
    ids: frozenset[str] = frozenset()

    @classmethod
    def build(cls, data: GalleryMatrix, decision: Decision, device: str) -> _Index:
        rp = data.row_person
        starts = np.flatnonzero(np.r_[True, rp[1:] != rp[:-1]]) if len(rp) else np.zeros(0, np.int64)
        photos = np.diff(np.r_[starts, len(rp)]).astype(np.int64)
        dim = data.matrix.shape[1] if len(rp) else 0
        people = np.zeros((len(starts), dim + 1), np.float32)
        if len(rp):
            if int(photos.max()) == 1:
                people[:, :dim] = data.matrix
            else:
                sums = np.add.reduceat(data.matrix, starts, axis=0)
                people[:, :dim] = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
            people[:, dim] = -decision.shift(photos)
        negatives = {int(p): data.negatives[data.negative_person == p] for p in np.unique(data.negative_person)}
        index = cls(data, decision, starts, photos, people, negatives, ids=frozenset(data.person_ids))
        if device in ("cuda", "torch") and len(rp):
            import torch

            where = "cuda" if device == "cuda" else "cpu"
            index.device_matrix = torch.from_numpy(people).to(where)
        return index

    def rows_of(self, p: int) -> np.ndarray:
        return self.data.matrix[self.starts[p]:self.starts[p] + self.photos[p]]

    def subset(self, ids: frozenset[str], device: str) -> _Index:
        """The same snapshot restricted to ``ids`` (a roster): searched and decided as a gallery of them."""
        data = self.data
        keep = np.array([pid in ids for pid in data.person_ids], bool)
        new_index = np.cumsum(keep) - 1
        rows = keep[data.row_person] if len(data.row_person) else np.zeros(0, bool)
        neg = keep[data.negative_person] if len(data.negative_person) else np.zeros(0, bool)
        sub = GalleryMatrix(
            data.version, [p for p, k in zip(data.person_ids, keep, strict=True) if k],
            [n for n, k in zip(data.names, keep, strict=True) if k],
            data.matrix[rows] if len(data.row_person) else data.matrix,
            new_index[data.row_person[rows]].astype(np.int32) if len(data.row_person) else data.row_person,
            data.negatives[neg] if len(data.negative_person) else data.negatives,
            new_index[data.negative_person[neg]].astype(np.int32) if len(data.negative_person)
            else data.negative_person, data.settings)
        if not sub.person_ids:
            sub.matrix = np.zeros((0, data.matrix.shape[1] if data.matrix.ndim == 2 else 0), np.float32)
        return _Index.build(sub, self.decision, device)

    def vetoed(self, p: int, query: np.ndarray) -> bool:
        """Whether the face looks at least as much like one of the person's negatives as like any of their
        photos (photo against photo, like for like)."""
        neg = self.negatives.get(p)
        if neg is None or not len(neg):
            return False
        return bool((neg @ query).max() >= (self.rows_of(p) @ query).max())


def top_rows(matrix: np.ndarray, queries: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the ``r`` best rows for each query, best first.

    Args:
        matrix: (N, D) float32 rows; queries: (n, D) float32. ``r <= N``.

    Returns:
        (n, r) int64 row indices and (n, r) float32 scores.
    """
    n, total = len(queries), len(matrix)
    block = BLOCK_ROWS if n > 1 else total  # one query: one pass over the whole matrix (measured fastest)
    first = min(total, max(SEED_ROWS, r))
    scores = queries @ matrix[:first].T
    part = np.argpartition(scores, -r, axis=1)[:, -r:] if r < first else np.tile(np.arange(first), (n, 1))
    cand_q = [np.repeat(np.arange(n), r)]
    cand_i = [part.reshape(-1)]
    cand_s = [np.take_along_axis(scores, part, axis=1).reshape(-1)]
    kth = cand_s[0].reshape(n, r).min(axis=1)
    pending = 0
    for start in range(first, total, block):
        scores = queries @ matrix[start:start + block].T
        qq, cc = np.nonzero(scores > kth[:, None])
        if len(qq):
            cand_q.append(qq)
            cand_i.append(cc + start)
            cand_s.append(scores[qq, cc])
            pending += len(qq)
        if pending > 64 * n * r + 65536:  # unlucky order (rising scores): prune and raise the bar
            best_i, best_s = _compact(cand_q, cand_i, cand_s, n, r)
            cand_q, cand_i, cand_s = [np.repeat(np.arange(n), r)], [best_i.reshape(-1)], [best_s.reshape(-1)]
            kth = best_s[:, -1].copy()
            pending = 0
    return _compact(cand_q, cand_i, cand_s, n, r)


def _compact(cand_q: list[np.ndarray], cand_i: list[np.ndarray], cand_s: list[np.ndarray], n: int, r: int
             ) -> tuple[np.ndarray, np.ndarray]:
    q, i, s = np.concatenate(cand_q), np.concatenate(cand_i), np.concatenate(cand_s)
    order = np.lexsort((i, -s, q))
    q, i, s = q[order], i[order], s[order]
    rank = np.arange(len(q)) - np.searchsorted(q, np.arange(n))[q]
    keep = rank < r
    out_i = np.zeros((n, r), np.int64)
    out_s = np.full((n, r), -np.inf, np.float32)
    out_i[q[keep], rank[keep]] = i[keep]
    out_s[q[keep], rank[keep]] = s[keep]
    return out_i, out_s


class Matcher:
    """Answers "who is this?" for embeddings of one model, against a live-updating store.

    Thread-safe: searches read an immutable snapshot; reloads swap in a new one.

    Args:
        store: the gallery store.
        model_id: the embedding model's id; only embeddings of this model are searched.
        threshold: the model's 1:1 threshold (cosine similarity, one photo against one photo).
        tail: the model's impostor tail (open-set decisions, see :mod:`facestream.gallery.decision`);
            None = name at or above ``fixed_threshold`` (else ``threshold``) whatever the gallery's size.
        far: target chance that a stranger is named, per face, for the whole gallery; None = the
            gallery's stored operating point (``facestream calibrate``), else 1e-3.
        fixed_threshold: name at or above this similarity (``match.threshold``), overriding ``far``.
        min_margin: also call a face unknown when the second person is within this margin (0 = off;
            an exact tie is always unknown).
        margin_weight: judge the open-set decision by the best score plus this much of its lead over
            the second person (0 = the best score alone; :mod:`facestream.gallery.decision`).
        device: "cpu" (numpy), "cuda" (torch on the GPU), "auto" (cuda when torch sees a GPU), or
            "torch" (torch on the CPU: the GPU code path, testable anywhere).
        watch: listen for store change events (Redis) instead of checking the version per search.
    """

    def __init__(self, store: GalleryStore, model_id: str, threshold: float, *, tail: ImpostorTail | None = None,
                 far: float | None = None, fixed_threshold: float | None = None, min_margin: float = 0.0,
                 margin_weight: float = 0.0, device: str = "auto", watch: bool = True):
        self.store = store
        self.model_id = model_id
        self.base = Decision(float(threshold), tail, far if far is not None else DEFAULT_FAR, fixed_threshold,
                             float(min_margin), float(margin_weight))
        self._far_given = far is not None
        self.follow_store = True  # False: search the snapshot as loaded until refresh() (bulk enrolment)
        self.device = ("cuda" if _cuda_available() else "cpu") if device == "auto" else device
        self._lock = threading.Lock()
        self._stale = True
        self._retry_at = 0.0
        self._index = _Index.build(GalleryMatrix(-1, [], [], np.zeros((0, 0), np.float32),
                                                 np.zeros(0, np.int32)), self.base, "cpu")
        self._sub = None
        self._scoped: dict[frozenset[str], tuple[_Index, _Index]] = {}  # roster -> (snapshot, its sub-index)
        self.reloads = 0  # whole-gallery reads
        self.deltas = 0  # one-person changes applied without one
        self.events = 0  # gallery events handled (a resync included)
        self.refresh(force=True)
        # Subscribe after the first load: the "resync" sent on connecting catches any write in between.
        self._sub = store.subscribe(self._on_event) if watch else None
        log.info("matcher: %d people, %d embeddings of %s on %s; %s", len(self), self.rows, model_id, self.device,
                 self.describe())

    def configure(self, **changes: Any) -> None:
        """Change how faces are named from the next search on: any field of :class:`Decision`
        (``verify_threshold``, ``tail``, ``far``, ``fixed_threshold``, ``min_margin``, ``margin_weight``)."""
        with self._lock:
            self.base = replace(self.base, **changes)
            if "far" in changes:
                self._far_given = changes["far"] is not None
                if changes["far"] is None:
                    self.base = replace(self.base, far=DEFAULT_FAR)
            data = self._index.data
            self._index = _Index.build(data, self._decision_for(data), self.device)

    @property
    def threshold(self) -> float:
        """The model's 1:1 threshold (one photo against one photo)."""
        return self.base.verify_threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.configure(verify_threshold=float(value))

    @property
    def min_margin(self) -> float:
        return self.base.min_margin

    @min_margin.setter
    def min_margin(self, value: float) -> None:
        self.configure(min_margin=float(value))

    @property
    def decision(self) -> Decision:
        """The decision in force (the model's, adjusted by the gallery's stored operating point)."""
        return self._index.decision

    def describe(self) -> str:
        """One line on how faces are named, for logs and ``facestream calibrate``."""
        d = self.decision
        if not d.open_set:
            return f"named at similarity >= {d.identification_threshold(len(self)):.4f} (fixed)"
        if d.leads():
            return (f"named when a stranger's best score plus {d.margin_weight:g} x its lead over the runner-up "
                    f"would be as high with chance <= {d.far:g} against {len(self)} people")
        return (f"named when a stranger would score as high with chance <= {d.far:g} against {len(self)} people "
                f"(similarity >= {d.identification_threshold(max(1, len(self))):.4f} for a one-photo person)")

    def _decision_for(self, data: GalleryMatrix) -> Decision:
        """The base decision with the gallery's stored operating point applied (config wins)."""
        op = data.settings.get("operating_point") or {}
        if not op:
            return self.base
        tail = self.base.tail
        if op.get("tail"):
            tail = ImpostorTail.from_json(op["tail"])
        elif tail is not None and op.get("shift"):
            tail = tail.shifted(float(op["shift"]), f"{tail.source}; shifted by the gallery's calibration")
        far = self.base.far if self._far_given or op.get("far") is None else float(op["far"])
        return replace(self.base, tail=tail, far=far)

    # -- cache --------------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        try:
            self._follow(event)
        finally:
            self.events += 1

    def _follow(self, event: dict[str, Any]) -> None:
        person, version = event.get("person"), event.get("version")
        if isinstance(version, int) and not self._stale and version <= self._index.data.version:
            return  # the snapshot has it already (a reload read it)
        if isinstance(person, str) and isinstance(version, int) and not self._stale and self.follow_store \
                and self._apply_delta(person, version):
            return
        if not self._stale:
            # One cheap read skips the reload when the snapshot already has this change (e.g. the
            # previous event's reload read it; load_matrix reads the version before the rows).
            try:
                if self.store.version() == self._index.data.version:
                    return
            except GalleryError:
                pass
        self._stale = True
        try:
            self.refresh()
        except GalleryError as exc:
            log.warning("matcher: reload after %s failed (%s); keeping %d people", event.get("op"), exc, len(self))

    def _apply_delta(self, person_id: str, version: int) -> bool:
        """Apply a change to one person by reading only that person's rows (an enrolment no longer makes
        every worker read the whole gallery). True when the snapshot is current afterwards; False (reload
        it all) when the store moved on by more than this one change, or cannot say."""
        with self._lock:
            data = self._index.data
            try:
                got = self.store.person_rows(self.model_id, person_id)
            except GalleryError:
                return False
            if got is None or not version == got.version == data.version + 1:
                return False  # something else changed too (or meanwhile): read it all
            new = data.with_person(got.version, person_id, got.name, got.rows, got.negatives)
            self._index = _Index.build(new, self._decision_for(new), self.device)
            self.deltas += 1
            return True

    def refresh(self, force: bool = False) -> bool:
        """Reload the matrix if the store changed (or ``force``); returns whether it reloaded.

        Raises:
            GalleryError: the store is unreachable (the previous snapshot stays in use).
        """
        with self._lock:
            if not force and not self._stale:
                if self._sub is not None or self.store.version() == self._index.data.version:
                    return False
            self._stale = False
            try:
                data = self.store.load_matrix(self.model_id)
            except GalleryError:
                self._stale = True
                self._retry_at = time.monotonic() + RETRY_SECONDS
                raise
            self._index = _Index.build(data, self._decision_for(data), self.device)
            self.reloads += 1
            log.debug("matcher: reloaded version %d: %d people", data.version, len(data.person_ids))
            return True

    def _fresh(self) -> _Index:
        """The snapshot to search, reloading first when stale; a down store keeps the old one."""
        if not self.follow_store:
            return self._index
        if self._sub is None or self._stale:
            if time.monotonic() >= self._retry_at:
                try:
                    self.refresh()
                except GalleryError as exc:
                    log.warning("matcher: store unavailable (%s); searching the cached %d people", exc, len(self))
        return self._index

    def __len__(self) -> int:
        return len(self._index.data.person_ids)

    @property
    def rows(self) -> int:
        return len(self._index.data.row_person)

    @property
    def version(self) -> int:
        return self._index.data.version

    def ensure_ready(self) -> None:
        """Raise a clear error when there is no one to match against (empty gallery or other model)."""
        self._fresh()
        if len(self):
            return
        other = {m: c for m, c in self.store.model_counts().items() if m != self.model_id}
        if other:
            desc = ", ".join(f"{c} by {m}" for m, c in other.items())
            raise GalleryError(
                f"The gallery holds embeddings made by another model ({desc}), none by the current model "
                f"{self.model_id}; embeddings of different models cannot be compared.",
                "Run `facestream gallery reembed` to re-embed the stored face chips with the current model.")
        raise GalleryError(f"The gallery at {self.store.url} is empty.",
                           "Enrol people first: `facestream enroll people/` (a folder per person).")

    # -- search -------------------------------------------------------------------------------
    def _within(self, index: _Index, scope: frozenset[str]) -> _Index:
        """The snapshot restricted to a roster, built once per snapshot and roster."""
        with self._lock:
            cached = self._scoped.get(scope)
            if cached is not None and cached[0] is index:
                return cached[1]
            if len(self._scoped) >= 64:  # rosters change rarely; this only bounds a pathological caller
                self._scoped.clear()
            sub = index.subset(scope, self.device)
            self._scoped[scope] = (index, sub)
            return sub

    def search(self, embeddings: np.ndarray, top_k: int = 5, *, views: np.ndarray | int | None = None,
               scope: frozenset[str] | None = None, outside: str = "unknown") -> list[MatchResult]:
        """The ``top_k`` closest people for each embedding, and the identified one (or None).

        Args:
            embeddings: (n, D) or (D,) L2-normalised float32 of this matcher's model.
            views: per query, how many distinct views it is the template of (1 = one photo or frame);
                a template of several views must clear a higher bar (strangers' templates score higher).
            scope: person ids that may be named (a roster): searched and decided as a gallery of them;
                None = everyone.
            outside: with a scope, ``unknown`` (nobody else is named) or ``gallery`` (somebody else is
                named when the whole gallery's rule names them; the result says ``in_scope=False``).
        """
        index = self._fresh()
        q = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32).reshape(-1, embeddings.shape[-1]))
        nviews = np.broadcast_to(np.asarray(1 if views is None else views, np.int64), (len(q),))
        if scope is not None:
            results = self._search_index(self._within(index, scope), q, top_k, nviews)
            if outside == "gallery":
                wider = self._search_index(index, q, top_k, nviews)
                for j, (r, w) in enumerate(zip(results, wider, strict=True)):
                    if r.best is None and w.best is not None and w.best.person_id not in scope:
                        w.in_scope = False
                        results[j] = w
            return results
        return self._search_index(index, q, top_k, nviews)

    def _search_index(self, index: _Index, q: np.ndarray, top_k: int, views: np.ndarray) -> list[MatchResult]:
        data = index.data
        if not len(data.person_ids) or not len(q):
            return [MatchResult(None, [], float("nan")) for _ in range(len(q))]
        if q.shape[1] != data.matrix.shape[1]:
            raise GalleryError(
                f"Query embeddings have {q.shape[1]} dimensions but the gallery's {self.model_id} has "
                f"{data.matrix.shape[1]}.", "Use the same embedding model for enrolment and recognition.")
        k = max(1, int(top_k))
        vetoing = len(index.negatives)
        # the second person gives the margin; people with negatives may drop out, so look a little further
        want = min(max(k, 2) + (4 if vetoing else 0), len(data.person_ids))
        pidx, adjusted = self._top_people(index, q, want)
        return [self._result(index, q[j], pidx[j], adjusted[j], k, int(views[j])) for j in range(len(q))]

    @staticmethod
    def _top_people(index: _Index, q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, want) person indices and adjusted scores (similarity minus shift), best first."""
        qa = np.concatenate([q, np.ones((len(q), 1), np.float32)], axis=1)
        if index.device_matrix is not None:
            import torch

            top = torch.topk(torch.from_numpy(qa).to(index.device_matrix.device) @ index.device_matrix.T, want, dim=1)
            return top.indices.cpu().numpy(), top.values.float().cpu().numpy()
        return top_rows(index.people, qa, want)

    def _result(self, index: _Index, query: np.ndarray, people: np.ndarray, adjusted: np.ndarray, k: int,
                views: int = 1) -> MatchResult:
        data, decision = index.data, index.decision
        shift = -index.people[people, -1]
        vetoed = [int(p) for p in people if index.vetoed(int(p), query)]
        keep = [j for j, p in enumerate(people) if int(p) not in vetoed]
        candidates = [Match(data.person_ids[people[j]], data.names[people[j]], float(adjusted[j] + shift[j]), r + 1)
                      for r, j in enumerate(keep[:k])]
        out = MatchResult(None, candidates, float("nan"), vetoed=[data.person_ids[p] for p in vetoed])
        if not keep:
            return out
        first = keep[0]
        out.margin = float(adjusted[first] - adjusted[keep[1]]) if len(keep) > 1 else float("inf")
        photos = int(index.photos[people[first]])
        n = len(data.person_ids)
        sim = float(adjusted[first] + shift[first])
        if decision.leads() and len(keep) > 1:
            second = keep[1]
            named, out.threshold, out.far = decision.lead_decision(
                sim, float(adjusted[second] + shift[second]), photos, int(index.photos[people[second]]), n, views)
        else:
            out.threshold = decision.identification_threshold(n, photos, views)
            out.far = decision.estimate_far(sim, photos, n, views)
            named = decision.names(sim, photos, n, views)
        tie = out.margin <= 0.0  # exactly as close to two people: no name, whoever comes first in the rows
        if named and out.margin >= decision.min_margin and not tie:
            out.best = candidates[0]
        return out

    def knows(self, person_id: str) -> bool:
        """Whether the person is in the gallery as last loaded (a deleted person no longer is)."""
        return person_id in self._fresh().ids

    def rows_of(self, person_id: str) -> np.ndarray:
        """The embeddings of one person in the current snapshot ((0, D) when they have none)."""
        index = self._fresh()
        try:
            p = index.data.person_ids.index(person_id)
        except ValueError:
            return np.zeros((0, index.people.shape[1] - 1 if len(index.people) else 0), np.float32)
        return index.rows_of(p)

    def identify(self, embedding: np.ndarray, top_k: int = 5) -> MatchResult:
        """:meth:`search` for one embedding."""
        return self.search(np.asarray(embedding).reshape(1, -1), top_k)[0]

    def similarity_to(self, embedding: np.ndarray, ref: str, views: int = 1) -> tuple[Match, bool, float]:
        """1:1 verification against one person: the similarity to their mean embedding, whether it passes,
        and the threshold it had to reach (the model's 1:1 threshold, read for their photo count and for a
        query template of ``views`` distinct views). A face that looks more like one of the person's
        negatives than like them does not pass.

        Raises:
            GalleryError: unknown person, or a person with no embedding of this model.
        """
        person = self.store.get_person(ref)
        index = self._fresh()
        try:
            p = index.data.person_ids.index(person.id)
        except ValueError:
            raise GalleryError(f"{person.name} has no embedding made by model {self.model_id}.",
                               "Re-enrol them, or run `facestream gallery reembed`.") from None
        q = np.asarray(embedding, np.float32).reshape(-1)
        sim = float(index.people[p, :-1] @ q)
        threshold = index.decision.verify_threshold_for(int(index.photos[p]), views)
        same = sim >= threshold and not index.vetoed(p, q)
        return Match(person.id, person.name, sim, 1), same, threshold

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
