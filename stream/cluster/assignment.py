"""Which sources a worker takes and gives up: by count (``cluster.capacity``) or by load (``cluster.budget_fps``).

By count every camera weighs the same: each worker holds its fair share, ``ceil(sources /
workers)``. By load a camera weighs the frames per second it sends (measured once it runs:
its ``fps_in``; until then its declared ``sources[].fps``, else ``cluster.source_fps``), and a
worker holds cameras up to its budget, so a 30 fps entrance and three 5 fps corridors are not
"four sources". The rules, each worker applying them alone from the others' heartbeats:

* **claim** a free source when it fits the budget and either keeps this worker within half a
  source of the cluster's mean load, or this worker is the least loaded one it fits (so nothing
  starves); a worker holding nothing may take one source above its budget (a single camera
  bigger than any budget must run somewhere);
* **shed** one source a round when moving it to a live worker that has room strictly narrows
  the gap between the two (so sources never ping-pong), or when this worker is over its budget
  (a camera sped up) and another has room.

Pure functions: the worker (:mod:`.worker`) feeds them what Redis says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MIN_FRAMES_MEASURED = 30  # a source's fps_in is trusted once this many frames were read


@dataclass(frozen=True)
class Peer:
    """Another live worker as its heartbeat describes it."""

    id: str
    load: float  # fps of the sources it holds
    budget: float | None  # None: it assigns by count
    count: int
    capacity: int

    def fits(self, cost: float) -> bool:
        return self.count < self.capacity and (self.budget is None or self.load + cost <= self.budget)


def measured_fps(stats: Mapping[str, object]) -> float | None:
    """The frames per second a running source sends (its ``fps_in``), once enough were read to say."""
    frames, fps = stats.get("frames_read"), stats.get("fps_in")
    if not isinstance(frames, int) or not isinstance(fps, int | float):  # a peer's junk is no measurement
        return None
    return float(fps) if frames >= MIN_FRAMES_MEASURED and fps > 0 else None


def peer_from_heartbeat(info: Mapping[str, object], default_capacity: int) -> Peer:
    """A worker's heartbeat as a :class:`Peer` (a count-mode worker's load is its sources' known fps too)."""
    sources = info.get("sources")
    count = len(sources) if isinstance(sources, list) else 0
    budget = info.get("budget_fps")
    capacity = info.get("capacity")
    load = info.get("load_fps")
    return Peer(str(info.get("id")), float(load) if isinstance(load, int | float) else 0.0,
                float(budget) if isinstance(budget, int | float) else None, count,
                int(capacity) if isinstance(capacity, int) and capacity > 0 else default_capacity)


def should_claim(cost: float, load: float, count: int, budget: float, capacity: int, peers: Sequence[Peer],
                 total: float, own_id: str) -> bool:
    """Whether this worker (``load`` fps in ``count`` sources) takes a free source of ``cost`` fps, with
    ``total`` fps declared across the cluster."""
    if count >= capacity:
        return False
    if count == 0:
        return True
    if load + cost > budget:
        return False
    mean = total / (len(peers) + 1)
    if load + cost / 2 <= mean:
        return True
    # the least loaded worker that has room takes it (ties by id), so a source above everyone's mean runs
    rivals = [(p.load, p.id) for p in peers if p.fits(cost)]
    return (load, own_id) <= min(rivals, default=(float("inf"), ""))


def to_shed(held: Mapping[str, float], load: float, budget: float, peers: Sequence[Peer]) -> str | None:
    """The one source to give up this round, or None: the biggest one whose move to a peer with room
    narrows the gap strictly (cost < load - peer's load), or, over budget, the smallest another can take."""
    roomy = [p for p in peers if p.budget is not None]
    by_cost = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    for sid, cost in by_cost:
        if any(p.fits(cost) and cost < load - p.load for p in roomy):
            return sid
    if load > budget and len(held) > 1:
        for sid, cost in reversed(by_cost):
            if any(p.fits(cost) for p in roomy):
                return sid
    return None
