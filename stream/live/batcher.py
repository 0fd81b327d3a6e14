"""One batching queue in front of a model, shared by every source: the embedder's, and each detector range's.

A model call has a fixed cost (dispatch, and on a GPU a kernel launch per layer)
that a batch pays once; with several cameras, their faces (and their detection
tiles and crops) should share one call.
Workers :meth:`Batcher.submit` images and get a future; one thread
collects requests for up to ``max_wait_ms`` (or until ``max_batch`` chips, or
until every registered producer is waiting), calls the model once, and resolves
the futures with their slices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Request:
    chips: np.ndarray
    future: Future
    producer: int
    t_submit: float


class Batcher:
    """Batches requests from many threads into single model calls.

    Args:
        model: the model call, images (n, S, S, 3) uint8 -> rows (n, D) float32.
        max_batch: most images per model call (bigger requests are split).
        max_wait_ms: how long a request may wait for company.
        name: the batching thread's name (which model it feeds).
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], max_batch: int = 64, max_wait_ms: float = 2.0,
                 name: str = "batcher"):
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._producers = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.calls = 0
        self.items = 0
        self.requests = 0
        self.model_ms: deque[float] = deque(maxlen=256)

    def register_producer(self) -> int:
        """Announce a thread that will submit; when all registered producers wait, a batch goes at once."""
        with self._cond:
            self._producers += 1
            return self._producers - 1

    def unregister_producer(self) -> None:
        with self._cond:
            self._producers = max(0, self._producers - 1)
            self._cond.notify_all()

    def submit(self, chips: np.ndarray, producer: int | None = None) -> Future:
        """Queue images for the model; the future yields their (n, D) rows.

        Args:
            producer: which registered producer asks (default: the calling thread, so a worker that
                always calls from its own thread needs no id).
        """
        fut: Future = Future()
        if len(chips) == 0:
            fut.set_result(np.zeros((0, 0), np.float32))
            return fut
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the {self._thread.name} batcher is closed")
            who = threading.get_ident() if producer is None else producer
            self._queue.append(_Request(np.asarray(chips), fut, who, time.perf_counter()))
            self.requests += 1
            self._cond.notify_all()
        return fut

    def __call__(self, chips: np.ndarray, producer: int | None = None) -> np.ndarray:
        """Submit and wait: the blocking form workers use."""
        return self.submit(chips, producer).result()

    def close(self) -> None:
        """Finish queued work, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def stats(self) -> dict:
        ms = sorted(self.model_ms)
        return {
            "model_calls": self.calls, "requests": self.requests, "chips": self.items,
            "mean_batch": round(self.items / self.calls, 2) if self.calls else 0.0,
            "model_ms_p50": round(ms[len(ms) // 2], 2) if ms else None,
        }

    # -- the batching thread -----------------------------------------------
    def _ready(self, deadline: float) -> bool:
        if self._closed or time.perf_counter() >= deadline:
            return True
        if sum(len(r.chips) for r in self._queue) >= self.max_batch:
            return True
        waiting = {r.producer for r in self._queue}
        return self._producers > 0 and len(waiting) >= self._producers

    def _take(self) -> list[_Request]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return []
            deadline = self._queue[0].t_submit + self.max_wait
            while not self._ready(deadline):
                self._cond.wait(max(0.0, deadline - time.perf_counter()))
            batch: list[_Request] = []
            n = 0
            while self._queue and (not batch or n + len(self._queue[0].chips) <= self.max_batch):
                r = self._queue.popleft()
                batch.append(r)
                n += len(r.chips)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            # a source that stops cancels what it still waits for: skip those; the rest can no longer be
            # cancelled, so handing them their result cannot fail (a failure here killed the thread that
            # embeds for every source)
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            chips = np.concatenate([r.chips for r in batch]) if len(batch) > 1 else batch[0].chips
            try:
                t0 = time.perf_counter()
                out = np.concatenate([self.model(chips[i:i + self.max_batch])
                                      for i in range(0, len(chips), self.max_batch)])
                self.model_ms.append((time.perf_counter() - t0) * 1000)
            except Exception as exc:  # the callers get the error, the thread lives on
                log.exception("%s: batch of %d failed", self._thread.name, len(chips))
                for r in batch:
                    r.future.set_exception(exc)
                continue
            self.calls += 1
            self.items += len(chips)
            k = 0
            for r in batch:
                r.future.set_result(out[k:k + len(r.chips)])
                k += len(r.chips)
