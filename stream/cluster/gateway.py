"""``facestream gateway``: one view of every worker's cameras.

The gateway serves the websocket stream (fed from the workers' Redis stream by a
:class:`facestream.stream.cluster.bus.LiveReader`), the dashboard, ``/stats`` of every worker
(merged: each source says which worker holds it), the HTTP API and attendance commands. It
processes no video; several gateways can run at once behind a load balancer, each a complete
view (each reads the events and the frame streams its own clients watch).
"""

from __future__ import annotations

import logging
from typing import Any

from facestream.stream.cluster.bus import LiveReader
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import Config
from facestream.stream.serve.server import StreamServer

log = logging.getLogger(__name__)


def cluster_stats(registry: SourceRegistry, max_age_s: float) -> dict[str, Any]:
    """Every live worker's pipeline statistics merged: ``sources`` (each with its ``worker``), ``workers`` and
    the registry's sources with their holders (``holders``; None: waiting for a worker)."""
    workers = registry.workers(max_age_s)
    sources: dict[str, Any] = {}
    summary = []
    for w in workers:
        pipeline = w.get("pipeline") or {}
        for sid, s in (pipeline.get("sources") or {}).items():
            if sid in w.get("sources", []):  # a source this worker still holds
                sources[sid] = {**s, "worker": w["id"]}
        summary.append({"id": w["id"], "host": w.get("host"), "pid": w.get("pid"), "capacity": w.get("capacity"),
                        "budget_fps": w.get("budget_fps"), "load_fps": w.get("load_fps"),
                        "sources": w.get("sources", []), "seen": w.get("seen"),
                        "publisher": w.get("publisher"), "batcher": pipeline.get("batcher")})
    return {"sources": sources, "workers": summary, "holders": registry.holders()}


class Gateway:
    """A gateway's running parts: the server (dashboard, API, attendance view) fed by the reader from the
    workers' streams. :meth:`facestream.stream.app.App.gateway` builds it and stops it with the app."""

    def __init__(self, config: Config, registry: SourceRegistry, server: StreamServer, reader: LiveReader):
        self.config = config
        self.registry = registry
        self.server = server
        self.reader = reader
        self.server.add_health_check(self.reader.problem)

    def stats(self) -> dict[str, Any]:
        out = cluster_stats(self.registry, 3 * self.config.cluster.heartbeat_seconds + 2)
        out["bus"] = self.reader.stats()
        return out

    def start(self) -> Gateway:
        self.server.start()
        self.reader.start()
        return self
