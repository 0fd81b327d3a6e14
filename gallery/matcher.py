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
query, then a cheap comparison per block). A person's score is the best of
their embeddings; a face is ``unknown`` below the threshold or when the second
person is closer than ``min_margin``. On a CUDA machine (torch importable and a
GPU present) the matrix lives on the GPU instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from facestream.gallery.errors import GalleryError
from facestream.gallery.store import GalleryMatrix, GalleryStore
from facestream.gallery.types import Match, MatchResult

log = logging.getLogger(__name__)

BLOCK_ROWS = 65536  # rows per matrix product: big enough that BLAS runs at full speed (measured)
SEED_ROWS = 2048  # rows fully ranked per query; after them only rows above the running k-th best are kept
MAX_CANDIDATE_ROWS = 4096  # beyond this many rows per query, score every person exactly instead
RETRY_SECONDS = 1.0  # after a failed reload (store down), wait this long before trying again


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass
class _Index:
    """One immutable snapshot; searches use whichever snapshot was current when they started."""

    data: GalleryMatrix
    starts: np.ndarray  # first row of each person
    max_rows: int  # most embeddings any one person has
    device_matrix: Any = None  # torch tensor on the GPU, when used
    device_rows: Any = None

    @classmethod
    def build(cls, data: GalleryMatrix, device: str) -> _Index:
        rp = data.row_person
        starts = np.flatnonzero(np.r_[True, rp[1:] != rp[:-1]]) if len(rp) else np.zeros(0, np.int64)
        max_rows = int(np.diff(np.r_[starts, len(rp)]).max()) if len(rp) else 0
        index = cls(data, starts, max_rows)
        if device in ("cuda", "torch") and len(rp):
            import torch

            where = "cuda" if device == "cuda" else "cpu"
            index.device_matrix = torch.from_numpy(np.array(data.matrix, copy=True)).to(where)
            index.device_rows = torch.from_numpy(rp.astype(np.int64)).to(where)
        return index


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
        threshold: cosine similarity at or above which the closest person is named.
        min_margin: also call a face unknown when the second person is within this margin (0 = off).
        device: "cpu" (numpy), "cuda" (torch on the GPU), "auto" (cuda when torch sees a GPU), or
            "torch" (torch on the CPU: the GPU code path, testable anywhere).
        watch: listen for store change events (Redis) instead of checking the version per search.
    """

    def __init__(self, store: GalleryStore, model_id: str, threshold: float, *, min_margin: float = 0.0,
                 device: str = "auto", watch: bool = True):
        self.store = store
        self.model_id = model_id
        self.threshold = float(threshold)
        self.min_margin = float(min_margin)
        self.device = ("cuda" if _cuda_available() else "cpu") if device == "auto" else device
        self._lock = threading.Lock()
        self._stale = True
        self._retry_at = 0.0
        self._index = _Index.build(GalleryMatrix(-1, [], [], np.zeros((0, 0), np.float32),
                                                 np.zeros(0, np.int32)), "cpu")
        self._sub = None
        self.refresh(force=True)
        # Subscribe after the first load: the "resync" sent on connecting catches any write in between.
        self._sub = store.subscribe(self._on_event) if watch else None
        log.info("matcher: %d people, %d embeddings of %s on %s", len(self), self.rows, model_id, self.device)

    # -- cache --------------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
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
            self._index = _Index.build(data, self.device)
            log.debug("matcher: reloaded version %d: %d people", data.version, len(data.person_ids))
            return True

    def _fresh(self) -> _Index:
        """The snapshot to search, reloading first when stale; a down store keeps the old one."""
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
    def search(self, embeddings: np.ndarray, top_k: int = 5) -> list[MatchResult]:
        """The ``top_k`` closest people for each embedding, and the identified one (or None).

        Args:
            embeddings: (n, D) or (D,) L2-normalised float32 of this matcher's model.
        """
        index = self._fresh()
        q = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32).reshape(-1, embeddings.shape[-1]))
        data = index.data
        if not len(data.person_ids) or not len(q):
            return [MatchResult(None, [], float("nan")) for _ in range(len(q))]
        if q.shape[1] != data.matrix.shape[1]:
            raise GalleryError(
                f"Query embeddings have {q.shape[1]} dimensions but the gallery's {self.model_id} has "
                f"{data.matrix.shape[1]}.", "Use the same embedding model for enrolment and recognition.")
        k = max(1, int(top_k))
        want = min(max(k, 2), len(data.person_ids))  # the second person gives the margin
        pidx, sims = self._top_people(index, q, want)
        return [self._result(data, pidx[j], sims[j], k) for j in range(len(q))]

    def _top_people(self, index: _Index, q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, want) person indices and scores (best embedding per person), best first."""
        data = index.data
        if index.device_matrix is not None:
            return self._top_people_torch(index, q, want)
        rows_needed = want * index.max_rows
        if index.max_rows == 1:
            rows, sims = top_rows(data.matrix, q, want)
            return data.row_person[rows], sims
        if rows_needed <= MAX_CANDIDATE_ROWS:
            rows, sims = top_rows(data.matrix, q, min(rows_needed, len(data.matrix)))
            people = data.row_person[rows]
            out_p = np.zeros((len(q), want), np.int64)
            out_s = np.zeros((len(q), want), np.float32)
            for j in range(len(q)):  # first occurrence of each person = their best row
                _, first = np.unique(people[j], return_index=True)
                first.sort()
                out_p[j], out_s[j] = people[j][first[:want]], sims[j][first[:want]]
            return out_p, out_s
        scores = np.maximum.reduceat(q @ data.matrix.T, index.starts, axis=1)
        part = np.argsort(-scores, axis=1, kind="stable")[:, :want]
        return part, np.take_along_axis(scores, part, axis=1)

    @staticmethod
    def _top_people_torch(index: _Index, q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        qt = torch.from_numpy(q).to(index.device_matrix.device)
        scores = qt @ index.device_matrix.T
        if index.max_rows > 1:
            n_people = len(index.data.person_ids)
            per = torch.full((len(q), n_people), -2.0, device=scores.device)
            scores = per.scatter_reduce(1, index.device_rows.expand(len(q), -1), scores, "amax")
            top = torch.topk(scores, want, dim=1)
            return top.indices.cpu().numpy(), top.values.float().cpu().numpy()
        top = torch.topk(scores, want, dim=1)
        return index.data.row_person[top.indices.cpu().numpy()], top.values.float().cpu().numpy()

    def _result(self, data: GalleryMatrix, people: np.ndarray, sims: np.ndarray, k: int) -> MatchResult:
        candidates = [Match(data.person_ids[p], data.names[p], float(s), r + 1)
                      for r, (p, s) in enumerate(zip(people[:k], sims[:k], strict=True))]
        margin = float(sims[0] - sims[1]) if len(sims) > 1 else float("inf")
        ok = sims[0] >= self.threshold and margin >= self.min_margin
        return MatchResult(candidates[0] if ok else None, candidates, margin)

    def identify(self, embedding: np.ndarray, top_k: int = 5) -> MatchResult:
        """:meth:`search` for one embedding."""
        return self.search(np.asarray(embedding).reshape(1, -1), top_k)[0]

    def similarity_to(self, embedding: np.ndarray, ref: str) -> tuple[Match, bool]:
        """1:1 verification: best similarity to one person's embeddings, and whether it passes the threshold.

        Raises:
            GalleryError: unknown person, or a person with no embedding of this model.
        """
        person = self.store.get_person(ref)
        data = self._fresh().data
        try:
            p = data.person_ids.index(person.id)
        except ValueError:
            raise GalleryError(f"{person.name} has no embedding made by model {self.model_id}.",
                               "Re-enrol them, or run `facestream gallery reembed`.") from None
        rows = np.flatnonzero(data.row_person == p)
        sim = float((data.matrix[rows] @ np.asarray(embedding, np.float32).reshape(-1)).max())
        return Match(person.id, person.name, sim, 1), sim >= self.threshold

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
