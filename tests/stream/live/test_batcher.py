"""The shared embedding batcher: many threads, one model call per batch."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facestream.stream.live.batcher import Batcher


class CountingModel:
    """A real (if tiny) deterministic embedding: the mean colour of each chip, recording batch sizes."""

    def __init__(self):
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        with self.lock:
            self.batches.append(len(chips))
        return chips.reshape(len(chips), -1, 3).mean(axis=1).astype(np.float32)


def chips_of(values: list[int]) -> np.ndarray:
    return np.stack([np.full((8, 8, 3), v, np.uint8) for v in values])


def test_results_go_back_to_their_callers():
    model = CountingModel()
    b = Batcher(model, max_batch=64, max_wait_ms=10_000)  # all four producers waiting: sent at once
    try:
        producers = [b.register_producer() for _ in range(4)]
        out: dict[int, np.ndarray] = {}
        barrier = threading.Barrier(4)

        def work(i: int) -> None:
            barrier.wait()
            out[i] = b(chips_of([10 * i + j for j in range(i + 1)]), producers[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(4):
            np.testing.assert_allclose(out[i][:, 0], [10 * i + j for j in range(i + 1)])
        # the four requests (1+2+3+4 chips) shared model calls: fewer calls than requests
        assert sum(model.batches) == 10 and len(model.batches) < 4
        assert b.stats()["chips"] == 10
    finally:
        b.close()


def test_all_producers_waiting_sends_at_once_without_waiting_out_the_timer():
    model = CountingModel()
    b = Batcher(model, max_batch=64, max_wait_ms=100_000)  # the timer alone would hang the test
    try:
        p = b.register_producer()
        np.testing.assert_allclose(b(chips_of([5]), p)[:, 0], [5])
    finally:
        b.close()


def test_big_requests_are_split_to_max_batch():
    model = CountingModel()
    b = Batcher(model, max_batch=4, max_wait_ms=0)
    try:
        out = b(chips_of(list(range(10))))
        np.testing.assert_allclose(out[:, 0], range(10))
        assert max(model.batches) <= 4 and sum(model.batches) == 10
    finally:
        b.close()


def test_model_errors_reach_the_caller_and_the_batcher_survives():
    def model(chips):
        if chips[0, 0, 0, 0] == 13:
            raise ValueError("bad chip")
        return chips.reshape(len(chips), -1).mean(axis=1, keepdims=True).astype(np.float32)

    b = Batcher(model, max_wait_ms=0)
    try:
        with pytest.raises(ValueError, match="bad chip"):
            b(chips_of([13]))
        assert b(chips_of([7]))[0, 0] == 7
        assert len(b(np.zeros((0, 8, 8, 3), np.uint8))) == 0
    finally:
        b.close()
    with pytest.raises(RuntimeError):
        b.submit(chips_of([1]))


def test_a_stopping_source_cancels_its_requests_without_killing_the_batcher():
    """A source that stops cancels the embeddings it still waits for. One cancelled while the model ran
    used to make handing back the results raise in the batching thread, and every source's embeddings
    stopped for good."""
    started, release = threading.Event(), threading.Event()
    model = CountingModel()

    def slow(chips):
        started.set()
        assert release.wait(10)
        return model(chips)

    b = Batcher(slow, max_wait_ms=0)
    try:
        running = b.submit(chips_of([1]))
        assert started.wait(10)
        assert not running.cancel()  # being computed: too late to cancel, the result still comes
        queued, other = b.submit(chips_of([2])), b.submit(chips_of([3]))
        assert queued.cancel()  # still waiting: cancelled, and never computed
        release.set()
        assert running.result(10)[0, 0] == 1 and other.result(10)[0, 0] == 3
        assert b(chips_of([4]))[0, 0] == 4  # the batcher lives on
        assert sum(model.batches) == 3  # 1, 3 and 4: the cancelled chip was skipped
    finally:
        release.set()
        b.close()
