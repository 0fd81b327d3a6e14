"""Assignment by load (issue 21, item 6: "a worker's budget in fps or faces/s, not a count").

The rules alone first (pure functions, played out round by round as workers would apply them), then two
real workers over a real Redis sharing cameras of different rates.
"""

from __future__ import annotations

import time

import pytest

from facestream.stream.cluster.assignment import Peer, measured_fps, peer_from_heartbeat, should_claim, to_shed


def settle(costs: dict[str, float], budgets: dict[str, float], rounds: int = 12) -> dict[str, dict[str, float]]:
    """Workers applying the rules in turn, each seeing the others as they were after the previous turn."""
    held: dict[str, dict[str, float]] = {w: {} for w in budgets}
    total = sum(costs.values())
    for _ in range(rounds):
        for w, budget in budgets.items():
            peers = [Peer(o, sum(h.values()), budgets[o], len(h), 99) for o, h in held.items() if o != w]
            sid = to_shed(held[w], sum(held[w].values()), budget, peers)
            if sid is not None:
                del held[w][sid]
            free = sorted((s for s in costs if not any(s in h for h in held.values()) and s != sid),
                          key=lambda s: -costs[s])
            for s in free:
                if should_claim(costs[s], sum(held[w].values()), len(held[w]), budget, 99, peers, total, w):
                    held[w][s] = costs[s]
    return held


def test_cameras_of_different_rates_are_shared_by_load_not_by_count():
    # one 30 fps entrance and five 6 fps corridors: by count 3/3 would put 42 fps on one worker and 18 on the other
    costs = {"entrance": 30.0, **{f"corridor{i}": 6.0 for i in range(5)}}
    held = settle(costs, {"a": 40.0, "b": 40.0})
    loads = sorted(sum(h.values()) for h in held.values())
    assert sorted(s for h in held.values() for s in h) == sorted(costs)  # everything runs
    assert loads == [30.0, 30.0]  # the entrance alone on one, the five corridors on the other
    assert all(load <= 40.0 for load in loads)


def test_a_budget_is_kept_and_what_fits_nowhere_waits_for_room():
    costs = {f"cam{i}": 25.0 for i in range(5)}  # 125 fps for 2 x 60 fps
    held = settle(costs, {"a": 60.0, "b": 60.0})
    assert [len(h) for h in held.values()] == [2, 2]  # 50 fps each; the fifth camera has no room
    held = settle(costs, {"a": 60.0, "b": 60.0, "c": 60.0})
    assert sorted(len(h) for h in held.values()) == [1, 2, 2]  # a third worker: all five run


def test_a_camera_bigger_than_any_budget_still_runs_alone_on_one_worker():
    held = settle({"4k": 90.0, "door": 10.0}, {"a": 60.0, "b": 60.0})
    assert sorted(sorted(h) for h in held.values()) == [["4k"], ["door"]]


def test_nothing_moves_once_balanced():
    """No ping-pong: a move must narrow the gap strictly, so a balanced cluster stays as it is."""
    assert to_shed({"x": 10.0, "y": 10.0}, 20.0, 60.0, [Peer("b", 15.0, 60.0, 2, 4)]) is None
    assert to_shed({"x": 10.0, "y": 10.0}, 20.0, 60.0, [Peer("b", 5.0, 60.0, 1, 4)]) == "x"
    # over budget (a camera sped up): the smallest source another worker has room for goes
    assert to_shed({"x": 40.0, "y": 30.0}, 70.0, 60.0, [Peer("b", 50.0, 60.0, 1, 4)]) is None
    assert to_shed({"x": 40.0, "y": 8.0}, 48.0, 45.0, [Peer("b", 45.0, 60.0, 1, 4)]) == "y"


def test_rates_are_read_from_what_workers_report():
    assert measured_fps({"frames_read": 10, "fps_in": 25.0}) is None  # too few frames to say
    assert measured_fps({"frames_read": 300, "fps_in": 25.0}) == 25.0
    assert measured_fps({"frames_read": "junk", "fps_in": 25.0}) is None
    peer = peer_from_heartbeat({"id": "w1", "sources": ["a", "b"], "budget_fps": 60, "load_fps": 35.5,
                                "capacity": 8}, 4)
    assert peer == Peer("w1", 35.5, 60.0, 2, 8)
    junk = peer_from_heartbeat({"id": "w2", "sources": "x", "budget_fps": "lots", "load_fps": None}, 4)
    assert junk == Peer("w2", 0.0, None, 0, 4)


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_two_workers_share_cameras_by_their_rates_and_again_after_one_comes_back(redis_url, analyzer):
    """Real workers, real Redis, real pipelines: six cameras declared with their rates (one at 30 fps, five at
    6 fps), workers of 40 fps each. Each ends up with 30 fps, not three cameras each; a worker that goes away
    leaves the other within its budget; one that comes back gets its share again."""
    from facestream.stream.cluster.bus import LivePublisher
    from facestream.stream.cluster.registry import SourceRegistry
    from facestream.stream.cluster.worker import Worker
    from facestream.stream.config import SourceConfig, load_config
    from facestream.stream.live.pipeline import Pipeline
    from tests.conftest import HAMILTON

    config = load_config(overrides=[f"gallery.url={redis_url}", "cluster.capacity=8", "cluster.lease_seconds=3",
                                    "cluster.budget_fps=40", f"cluster.source_folders=[{HAMILTON.parent}]"], env={})
    reg = SourceRegistry(redis_url)
    reg.add(SourceConfig(url=str(HAMILTON), id="entrance", expected_fps=30))
    for i in range(5):
        reg.add(SourceConfig(url=str(HAMILTON), id=f"corridor{i}", expected_fps=6))

    def worker(name: str) -> Worker:  # each source stops after 3 frames: the assignment is what is tested
        pipeline = Pipeline(config, [], analyzer=analyzer, matcher=None, dynamic=True, max_frames=3)
        w = Worker(config, pipeline, SourceRegistry(redis_url), LivePublisher(reg.client, config.server),
                   worker_id=name)
        return w.start()

    def rounds(workers: list[Worker], n: int) -> list[float]:
        for _ in range(n):
            for w in workers:
                w._heartbeat()
                w.step()
            time.sleep(0.3)
        return sorted(w.info()["load_fps"] for w in workers)

    a = worker("w-a")
    b = c = None
    try:
        assert rounds([a], 1) == [36.0]  # alone: what fits 40 fps (the entrance and one corridor)
        b = worker("w-b")
        assert rounds([a, b], 6) == [30.0, 30.0]
        assert len(reg.holders()) == 6  # every camera runs
        b.stop()
        b = None
        assert rounds([a], 2) == [36.0]  # within its budget again; the rest wait for room
        c = worker("w-c")
        assert rounds([a, c], 6) == [30.0, 30.0]
        assert all(w.info()["budget_fps"] == 40 for w in (a, c))
    finally:
        for w in (a, b, c):
            if w is not None:
                w.stop()
        reg.close()
