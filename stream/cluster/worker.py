"""``facestream worker``: recognise the cameras this process holds leases on, and publish to Redis.

The worker declares its config's ``sources:`` in the shared registry, then every third of
``cluster.lease_seconds``: renews its leases (dropping the sources whose lease it lost), drops
sources removed from the registry, and claims free ones: a fair share of them up to
``cluster.capacity``, or by load within ``cluster.budget_fps`` (:mod:`.assignment`). Opening a
claimed source runs in its own thread, so a slow camera never delays a renewal. Results, track
events and attendance events go to the live Redis stream (:mod:`.bus`); attendance is written
to the shared store, where a person is one record per session whichever worker saw them, so a
handover neither loses nor double-counts anyone. A clean stop (Ctrl-C, SIGTERM) stops the
pipeline, sends what it said last, then releases the leases; a killed worker's leases run out
and the others take over.

Fencing: every claim gets a new epoch (:mod:`.registry`), every message carries it and is
written only while the lease holds it (:mod:`.bus`). A worker whose renewals have failed for
2/3 of the lease (Redis away, this host cut off) stops that camera on its own, before the lease
runs out and another worker may claim it, as Kubernetes' leader election does; a guard thread
checks this every 0.1 s, so a renewal stuck in a Redis timeout delays nothing.

Blips: a lease that lapsed while Redis stalled and that nobody took is claimed back
without stopping the camera; a source being stopped is not reopened until its stop has
finished; a registry that comes back empty (Redis restarted without its data) gets the
config's sources declared again.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from typing import Any

from facestream.errors import FacestreamError
from facestream.stream.attendance.feed import AttendanceFeed
from facestream.stream.cluster.assignment import Peer, measured_fps, peer_from_heartbeat, should_claim, to_shed
from facestream.stream.cluster.bus import Held, LivePublisher
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.cluster.source_policy import describe, refusal
from facestream.stream.config import Config, SourceConfig
from facestream.stream.live.pipeline import Pipeline

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Worker:
    """One worker process's coordinator (the pipeline, its leases, its publisher, its heartbeat).

    Args:
        pipeline: a ``dynamic=True`` pipeline, not started.
        registry: the shared source list and leases.
        publisher: where results go (attached to the pipeline here).
        attendance: the attendance monitor's feed, or None; it listens to the pipeline from here on and
            records only frames of cameras whose lease this worker still holds.
    """

    def __init__(self, config: Config, pipeline: Pipeline, registry: SourceRegistry, publisher: LivePublisher,
                 attendance: AttendanceFeed | None = None, worker_id: str | None = None):
        self.config = config
        self.cluster = config.cluster
        self.pipeline = pipeline
        self.registry = registry
        self.publisher = publisher
        self.attendance = attendance
        self.id = worker_id or new_worker_id()
        self.held: dict[str, SourceConfig] = {}  # leased and running (or opening)
        self.epochs: dict[str, int] = {}  # source id -> the epoch of our lease on it
        self.until: dict[str, float] = {}  # source id -> when (monotonic) to stop it unless renewed
        self.publisher.fencing = True
        self.failed: dict[str, float] = {}  # source id -> when (monotonic) it may be tried again (would not open)
        self._stopping: dict[str, threading.Thread] = {}  # sources being stopped in the background
        self._threads: list[threading.Thread] = []  # opening and stopping sources, joined by stop()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._guard = threading.Thread(target=self._guard_leases, name="lease-guard", daemon=True)
        self.fenced_stops = 0  # sources stopped because their renewals kept failing
        self.redis_ms: float | None = None  # the last heartbeat's round trip
        self._shed: dict[str, float] = {}  # sources given up to rebalance -> until when not to claim them back
        self.costs: dict[str, float] = {}  # source id -> fps it sent while we ran it (assignment by load)
        self.peer_costs: dict[str, float] = {}  # source id -> fps another worker measured
        self.refused: dict[str, str] = {}  # source id -> why this worker will not open it (source_policy)
        self._own = {s.id: s for s in config.sources if s.id}  # trusted: whoever writes the config runs the worker

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> Worker:
        for source in self.config.sources:  # declared once: the config's sources join the shared list
            if source.id:
                self.registry.add(source)
        self.publisher.attach(self.pipeline)
        self.publisher.start()
        if self.attendance is not None:
            self.attendance.accepts = self.holds
            self.attendance.monitor.add_listener(self.publisher.publish)
            self.pipeline.add_listener(self.attendance.on_result)
            self.attendance.start()
        self.pipeline.start()
        self._guard.start()
        return self

    def run(self, stop: threading.Event) -> None:
        """Renew, drop and claim until ``stop`` is set; then release everything."""
        period = self.cluster.lease_seconds / 3
        next_beat = 0.0
        while not stop.is_set():
            try:
                self.step()
            except FacestreamError as exc:  # Redis away: keep running what we have; leases may lapse
                log.error("worker %s: %s", self.id, exc)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.cluster.heartbeat_seconds
                self._heartbeat()
            stop.wait(min(period, self.cluster.heartbeat_seconds))

    def stop(self) -> None:
        """Stop the pipeline (its last track events still go out under our leases), flush the publisher,
        then release every lease so the others take over at once. Sources still opening or stopping are
        waited for, so no reader outlives the worker, and nothing of ours follows a new holder's first."""
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=30)
        try:
            self._renew(list(self.held))  # the leases stay ours while the pipeline winds down
        except FacestreamError:
            pass
        self.pipeline.stop()
        if self.attendance is not None:
            self.attendance.stop()
        self.publisher.stop()
        try:
            self.registry.release(list(self.held), self.id)
            self.registry.leave(self.id)
        except FacestreamError as exc:
            log.error("worker %s: could not release its sources (%s); they move when the leases run out", self.id, exc)
        for sid in list(self.held):
            self.publisher.let_go(sid)
        self._guard.join(timeout=1)

    # -- leases ------------------------------------------------------------------------------------------
    def _grant(self, sid: str, epoch: int, asked_at: float) -> None:
        """We hold ``sid`` at ``epoch`` since a call sent at ``asked_at``: its lease lasts from then at least."""
        until = asked_at + self.cluster.lease_seconds * 2 / 3
        with self._lock:
            self.epochs[sid] = epoch
            self.until[sid] = until
        self.publisher.hold(sid, Held(self.id, epoch, until))

    def _renew(self, held: list[str]) -> dict[str, int]:
        asked_at = time.monotonic()
        renewed = self.registry.renew(held, self.id, self.cluster.lease_seconds)
        for sid, epoch in renewed.items():
            if epoch and sid in self.held:
                self._grant(sid, epoch, asked_at)
        return renewed

    def holds(self, sid: str) -> bool:
        """Whether this worker may still act for ``sid`` (its lease renewed within 2/3 of its length)."""
        until = self.until.get(sid)
        return sid in self.held and until is not None and time.monotonic() <= until

    def _guard_leases(self) -> None:
        """Stop every source whose lease has gone 2/3 of its length without a renewal (checked every 0.1 s)."""
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                late = [sid for sid, until in self.until.items() if until < now and sid in self.held]
            for sid in late:
                self.fenced_stops += 1
                self._drop(sid, "its lease was not renewed for 2/3 of its length; another worker may take it")

    # -- one round -----------------------------------------------------------------------------------------
    def step(self) -> None:
        """One round: renew, drop, rebalance, claim. A round that changed what this worker holds is told
        to the others at once (a heartbeat), so none of them rebalances against a load we no longer have."""
        if self._stop.is_set():
            return
        before = set(self.held)
        try:
            self._round()
        finally:
            if set(self.held) != before:
                self._heartbeat()

    def _round(self) -> None:
        declared = {s.id: s for s in self.registry.sources() if s.id}
        if not declared and any(s.id for s in self.config.sources):
            # Redis came back empty (restarted without its data): the config's sources are declared again
            log.warning("worker %s: the source list is empty; declaring the config's sources again", self.id)
            for source in self.config.sources:
                if source.id:
                    self.registry.add(source)
            declared = {s.id: s for s in self.registry.sources() if s.id}
        declared = self._allowed(declared)
        with self._lock:
            held = list(self.held)
        renewed = self._renew(held)
        for sid in held:
            if sid not in self.held:  # the guard stopped it while the renewal was under way: let it go
                if renewed.get(sid):
                    self.registry.release([sid], self.id)
                continue
            if not renewed.get(sid) and sid in declared and self._claim(sid):
                # the lease lapsed (a Redis stall) and nobody took it: won back, the camera never stopped
                log.warning("worker %s: lease of %s had lapsed; claimed it back without stopping", self.id, sid)
                continue
            if not renewed.get(sid) or sid not in declared:
                reason = "removed from the source list" if sid not in declared else "lease lost"
                self._drop(sid, reason)
                if sid in declared:
                    continue
                self.registry.release([sid], self.id)
        for sid, ended in self._ended().items():
            if ended and sid in self.held and not declared[sid].loop and _is_live(declared[sid]):
                self._drop(sid, "the source ended")  # a live camera that gave up: let another worker try
                self.registry.release([sid], self.id)
        with self._lock:  # a source still stopping here is not reopened until its stop has finished
            stopping = {sid for sid, t in self._stopping.items() if t.is_alive()}
        others = self._others()
        by_load = self.cluster.budget_fps is not None
        if by_load:
            self._measure(others)
        share, alone = self._rebalance_by_load(others) if by_load else self._rebalance(len(declared), others)
        now = time.monotonic()
        free = [s for sid, s in declared.items()
                if sid not in self.held and sid not in stopping and self.failed.get(sid, 0) <= now
                and (alone or self._shed.get(sid, 0) <= now)]
        random.shuffle(free)  # workers starting together spread the sources instead of racing for the first
        if by_load:
            self._claim_by_load(free, declared, others)
            return
        for source in free:
            if len(self.held) >= share:
                break
            if self._claim(source.id or ""):
                self._open(source)

    def _others(self) -> list[dict[str, Any]] | None:
        """The other live workers' heartbeats; None when Redis would not say."""
        try:
            # alive: heard from well within a lease, so a dead worker no longer counts by the time its leases
            # run out and its sources are free (its heartbeat entry itself is kept longer, for /stats)
            fresh = min(3 * self.cluster.heartbeat_seconds + 2, 0.75 * self.cluster.lease_seconds)
            workers = self.registry.workers(fresh, prune=False)
        except FacestreamError:
            return None
        return [w for w in workers if w.get("id") != self.id]

    def _rebalance(self, n_sources: int, others: list[dict[str, Any]] | None) -> tuple[int, bool]:
        """How many sources this worker should hold now, shedding what is above that when another live
        worker has room: each worker's fair share is ``ceil(sources / workers)`` (at most its capacity).
        A source given up here is not claimed back by this worker for two leases while another worker
        lives, so it goes to the one with room (a restarted worker gets its share again instead of idling
        for good). Returns (share, alone)."""
        if others is None:
            return self.cluster.capacity, True
        fair = max(1, -(-n_sources // (len(others) + 1)))
        share = min(self.cluster.capacity, fair)
        room = sum(max(0, min(int(w.get("capacity") or 0), fair) - len(w.get("sources") or [])) for w in others)
        extra = min(len(self.held) - share, room)
        if extra > 0:
            with self._lock:
                shed = sorted(self.held)[-extra:]
            for sid in shed:
                self._give_up(sid, f"rebalancing: {len(self.held)} held, a fair share is {fair}")
        return share, not others

    def _give_up(self, sid: str, reason: str) -> None:
        """Stop and release ``sid`` so another worker takes it; not claimed back by us for two leases."""
        self._drop(sid, reason)
        self._shed[sid] = time.monotonic() + 2 * self.cluster.lease_seconds
        self.registry.release([sid], self.id)

    # -- assignment by load (cluster.budget_fps) -------------------------------------------------------
    def _peers(self, others: list[dict[str, Any]] | None) -> list[Peer]:
        return [peer_from_heartbeat(w, self.cluster.capacity) for w in others or []]

    def _rebalance_by_load(self, others: list[dict[str, Any]] | None) -> tuple[int, bool]:
        """Give up at most one source a round to a worker with room (:func:`.assignment.to_shed`)."""
        peers = self._peers(others)
        with self._lock:
            held = {sid: self.cost(sid, source) for sid, source in self.held.items()}
        sid = to_shed(held, sum(held.values()), float(self.cluster.budget_fps or 0), peers)
        if sid is not None:
            self._give_up(sid, f"rebalancing by load: {sum(held.values()):.0f} fps held, this one "
                               f"{held[sid]:.0f} fps; another worker has room")
        return self.cluster.capacity, not others

    def _claim_by_load(self, free: list[SourceConfig], declared: dict[str, SourceConfig],
                       others: list[dict[str, Any]] | None) -> None:
        peers = self._peers(others)
        total = sum(self.cost(sid, s) for sid, s in declared.items())
        for source in sorted(free, key=lambda s: -self.cost(s.id or "", s)):  # big cameras first: they fit less
            with self._lock:
                load = sum(self.cost(sid, s) for sid, s in self.held.items())
                count = len(self.held)
            cost = self.cost(source.id or "", source)
            if should_claim(cost, load, count, float(self.cluster.budget_fps or 0), self.cluster.capacity, peers,
                            total, self.id) and self._claim(source.id or ""):
                self._open(source)

    def cost(self, sid: str, source: SourceConfig) -> float:
        """The fps ``sid`` weighs: measured while we run it (remembered after), else as a peer measured it,
        else its declared ``expected_fps``, else ``cluster.source_fps``."""
        if sid in self.costs:
            return self.costs[sid]
        return self.peer_costs.get(sid) or source.expected_fps or self.cluster.source_fps

    def _measure(self, others: list[dict[str, Any]] | None) -> None:
        """Refresh the measured fps of the sources we run and learn the ones the others measured."""
        for sid, stats in self.pipeline.stats().get("sources", {}).items():
            fps = measured_fps(stats)
            if fps is not None:
                self.costs[sid] = round(fps, 2)
        for w in others or []:
            theirs = w.get("source_fps")
            if isinstance(theirs, dict):
                self.peer_costs.update({k: float(v) for k, v in theirs.items()
                                        if isinstance(k, str) and isinstance(v, int | float) and 0 < v < 10_000})

    def _claim(self, sid: str) -> bool:
        asked_at = time.monotonic()
        epoch = self.registry.claim(sid, self.id, self.cluster.lease_seconds)
        if epoch:
            self._grant(sid, epoch, asked_at)
        return bool(epoch)

    def _allowed(self, declared: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        """The declared sources this worker may open; the others are refused (logged once each, in ``info``)."""
        out: dict[str, SourceConfig] = {}
        for sid, source in declared.items():
            why = None if self._own.get(sid) == source else refusal(source, self.cluster)
            if why is None:
                out[sid] = source
                self.refused.pop(sid, None)
            elif self.refused.get(sid) != why:
                self.refused[sid] = why
                log.error("worker %s: refusing source %s declared in Redis: %s", self.id, describe(source), why)
        for sid in set(self.refused) - set(declared):
            del self.refused[sid]
        return out

    def _ended(self) -> dict[str, bool]:
        return {w.source.id: w.done.is_set() for w in self.pipeline.workers}

    def _open(self, source: SourceConfig) -> None:
        sid = source.id or ""
        with self._lock:
            self.held[sid] = source

        def run() -> None:
            try:
                self.pipeline.add_source(source)
                log.info("worker %s: claimed source %s", self.id, sid)
            except FacestreamError as exc:
                log.error("worker %s: source %s would not open (%s); another worker may try", self.id, sid, exc)
                self.publisher.let_go(sid)
                with self._lock:
                    self.held.pop(sid, None)
                    self.until.pop(sid, None)
                self.failed[sid] = time.monotonic() + 3 * self.cluster.lease_seconds
                try:
                    self.registry.release([sid], self.id)
                except FacestreamError:
                    pass

        self._spawn(run, f"open-{sid}")

    def _drop(self, sid: str, reason: str) -> None:
        """Stop a source in the background: joining its thread must not delay the renewal of the others."""
        log.warning("worker %s: stopping source %s (%s)", self.id, sid, reason)
        self.publisher.let_go(sid)
        with self._lock:
            self.held.pop(sid, None)
            self.until.pop(sid, None)
            self._stopping[sid] = self._spawn(lambda: self.pipeline.remove_source(sid), f"stop-{sid}")

    def _spawn(self, fn, name: str) -> threading.Thread:
        thread = threading.Thread(target=fn, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _heartbeat(self) -> None:
        try:
            t0 = time.perf_counter()
            self.registry.heartbeat(self.id, self.info())
            self.redis_ms = round((time.perf_counter() - t0) * 1000, 2)
        except FacestreamError as exc:
            log.error("worker %s: heartbeat failed (%s)", self.id, exc)

    def info(self) -> dict[str, Any]:
        stats = self.pipeline.stats()
        with self._lock:
            held = dict(self.held)
        load = {sid: self.cost(sid, source) for sid, source in held.items()}
        return {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "capacity": self.cluster.capacity,
                "budget_fps": self.cluster.budget_fps, "load_fps": round(sum(load.values()), 2),
                "source_fps": {sid: fps for sid, fps in self.costs.items() if sid in held},
                "sources": sorted(self.held), "epochs": {k: v for k, v in self.epochs.items() if k in self.held},
                "fenced_stops": self.fenced_stops, "redis_ms": self.redis_ms, "refused": dict(self.refused),
                "pipeline": stats, "publisher": self.publisher.stats(),
                "attendance": self.attendance.stats() if self.attendance is not None else None}


def _is_live(source: SourceConfig) -> bool:
    url = source.url
    return url.isdigit() or url.startswith(("rtsp://", "rtsps://", "http://", "https://", "rtmp://"))
