"""The composition root: parts built in any order stop by phase, and a real run's parts all stop."""

from __future__ import annotations

import socket

import httpx
import pytest

from facestream.stream.app import App, Phase
from facestream.stream.config import SourceConfig, load_config
from tests.conftest import HAMILTON


def test_parts_stop_by_phase_newest_first_and_one_failure_stops_nothing_else():
    stopped: list[str] = []
    app = App(load_config(env={}))
    for name, phase in [("gallery", Phase.STORES), ("server", Phase.SERVING), ("pipeline", Phase.INPUT),
                        ("recorder", Phase.OUTPUT), ("matcher", Phase.STORES), ("feed", Phase.OUTPUT)]:
        app.own(name, lambda name=name: stopped.append(name), phase, name)

    def broken() -> None:
        stopped.append("broken")
        raise RuntimeError("a part that fails to stop")

    app.own("broken", broken, Phase.SERVING)
    app.close()
    assert stopped == ["pipeline", "feed", "recorder", "broken", "server", "matcher", "gallery"]
    app.close()  # idempotent: nothing stops twice
    assert len(stopped) == 7


def test_a_run_built_by_the_app_serves_records_and_lets_go_of_everything(tmp_path, analyzer):
    """What `facestream run` builds (pipeline, attendance feed, server with the API): after close the port is
    shut, the pipeline stopped, and the feed drained into the store before the store closed."""
    config = load_config(overrides=[f"gallery.url=sqlite:///{tmp_path / 'g.db'}", "server.port=0"], env={})
    with App(config, analyzer=analyzer) as app:
        pipeline = app.pipeline([SourceConfig(url=str(HAMILTON), id="clip")], max_frames=20)
        monitor = app.attendance(pipeline.source_ids)
        feed = app.attendance_feed(monitor)
        pipeline.add_listener(feed.on_result)
        server = app.server(stats=pipeline.stats, monitor=monitor, recognition=app.recognition()).start()
        server.attach(pipeline)
        pipeline.start()
        assert pipeline.wait(timeout=120)
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
        assert app.matcher.store is app.recognition().store  # one gallery connection, shared
        port = server.port
    assert all(not w.thread.is_alive() for w in pipeline.workers)
    assert not feed._thread.is_alive() and feed.observed > 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
