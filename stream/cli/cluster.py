"""``facestream worker``, ``gateway`` and ``sources``: cameras shared by many machines over Redis.

    facestream sources add rtsp://cam1/live --id door --gallery redis://10.0.0.2:6379/0
    facestream worker --gallery redis://10.0.0.2:6379/0            # on each machine with a GPU
    facestream gateway --gallery redis://10.0.0.2:6379/0 --host 0.0.0.0 --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from facestream.stream.cli.common import (
    add_gallery_options,
    add_token_options,
    load_args_config,
    sign_in_text,
    token_from,
)

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="recognise the shared cameras this process claims (Redis), publish results",
                       description="Claims sources from the shared list (config `sources:` and `facestream sources "
                                   "add`): a fair share up to cluster.capacity, or by their fps within "
                                   "cluster.budget_fps, with leases it renews; a dead worker's sources "
                                   "move to the others within cluster.lease_seconds.")
    w.add_argument("--capacity", type=int, help="sources to claim at most (default: cluster.capacity)")
    w.add_argument("--budget-fps", type=float, help="frames per second this machine can recognise: share sources by "
                                                    "their fps instead of their count (default: cluster.budget_fps)")
    w.add_argument("--model", help="embedding model (registry name, folder, or models:/ URI)")
    w.add_argument("--engine", choices=["auto", "onnxruntime", "torch", "tensorrt"], help="inference engine")
    w.add_argument("--no-attendance", action="store_true", help="do not record attendance")
    w.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (/metrics; no token: "
                                                     "bound to --metrics-host)")
    w.add_argument("--metrics-host", default="127.0.0.1", help="interface for --metrics-port (default 127.0.0.1)")
    add_gallery_options(w)
    w.set_defaults(handler=cmd_worker)

    g = sub.add_parser("gateway", help="serve every worker's cameras: websocket stream, dashboard, /stats, HTTP API",
                       description="Reads the workers' results from Redis and serves them on one port, with the "
                                   "dashboard, /stats of every worker and the HTTP API (/api/docs).")
    g.add_argument("--host", help="interface to listen on (default: server.host)")
    g.add_argument("--port", type=int, help="port (0 = any free port; default: server.port)")
    add_token_options(g)
    add_gallery_options(g)
    g.set_defaults(handler=cmd_gateway)

    e = sub.add_parser("events", help="track and attendance events as JSON lines, each at least once (a Redis "
                                      "consumer group: a restart resumes, nothing is lost)",
                       description="Reads the workers' durable events stream through a consumer group: each event "
                                   "is printed, then acknowledged. Run one group per integration; consumers of one "
                                   "group share its events, and take over those a vanished consumer left.")
    e.add_argument("--group", required=True, help="the integration's name (its place in the stream is kept)")
    e.add_argument("--consumer", help="this process's name in the group (default: the host name); restart under the "
                                      "same name to get the events it had not acknowledged")
    e.add_argument("--from-start", action="store_true",
                   help="a new group starts at the oldest event kept (default: events from now on)")
    e.add_argument("--count", type=int, help="stop after this many events")
    add_gallery_options(e)
    e.set_defaults(handler=cmd_events)

    s = sub.add_parser("sources", help="the shared source list in Redis: add, remove, list")
    ss = s.add_subparsers(dest="sources_command", required=True, metavar="{add,remove,list}")
    a = ss.add_parser("add", help="declare a camera, stream or file once; a worker claims it")
    a.add_argument("url", help="rtsp:// or http(s):// URL, camera index, video file or image folder")
    a.add_argument("--id", required=True, help="the source's name in messages (letters, digits, . _ -)")
    a.add_argument("--realtime", action="store_true", help="read a file at its native frame rate")
    a.add_argument("--loop", action="store_true", help="restart a file at its end")
    a.add_argument("--fps", type=float, help="frames per second the camera sends: its weight when workers share by "
                                             "load (cluster.budget_fps), until measured")
    add_gallery_options(a)
    a.set_defaults(handler=cmd_sources_add)
    r = ss.add_parser("remove", help="stop and forget a source (its worker lets go within a lease)")
    r.add_argument("id")
    add_gallery_options(r)
    r.set_defaults(handler=cmd_sources_remove)
    ls = ss.add_parser("list", help="every source and the worker holding it")
    ls.add_argument("--json", action="store_true")
    add_gallery_options(ls)
    ls.set_defaults(handler=cmd_sources_list)


def _registry(args: argparse.Namespace, flags: dict | None = None):
    from facestream.stream.cluster.registry import SourceRegistry

    config = load_args_config(args, flags)
    return config, SourceRegistry(config.gallery.url)


def _until_signalled(body) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        body(stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_worker(args: argparse.Namespace) -> int:
    from facestream.stream.app import App

    config = load_args_config(args, {"cluster.capacity": args.capacity, "cluster.budget_fps": args.budget_fps,
                                     "embedder.model": args.model,
                                     "embedder.engine": args.engine})
    with App(config) as app:
        worker = app.worker(attendance=not args.no_attendance)
        worker.start()
        if args.metrics_port is not None:
            port = app.metrics(worker.info, args.metrics_port, args.metrics_host)
            print(f"metrics on http://{args.metrics_host}:{port}/metrics", flush=True)
        budget = config.cluster.budget_fps
        print(f"worker {worker.id}: up to {config.cluster.capacity} source(s)"
              + (f" within {budget:g} fps" if budget else "") + f", leases of {config.cluster.lease_seconds:g} s",
              flush=True)
        _until_signalled(worker.run)
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from facestream.stream.app import App

    config = load_args_config(args, {"server.port": args.port, "server.host": args.host,
                                     "server.token": token_from(args)})
    with App(config) as app:
        gateway = app.gateway().start()
        port = gateway.server.port
        print(f"gateway on {gateway.server.url} (dashboard: {sign_in_text(args, config, config.server.host, port)}; "
              f"API: http://{config.server.host}:{port}/api/docs)", flush=True)
        _until_signalled(lambda stop: stop.wait())
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import socket
    import sys

    from facestream import wire
    from facestream.stream.cluster.events import EventConsumer

    _, registry = _registry(args)
    consumer = EventConsumer(registry.client, args.group, args.consumer or socket.gethostname(),
                             start="0" if args.from_start else "$")
    printed = 0
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and (args.count is None or printed < args.count):
            batch = consumer.read(count=min(100, args.count - printed) if args.count else 100, block_ms=500)
            for entry_id, event in batch:
                sys.stdout.write(wire.dumps({"id": entry_id, **event}, separators=(",", ":")) + "\n")
            sys.stdout.flush()  # handed over before it is acknowledged: at least once
            consumer.ack(*(entry_id for entry_id, _ in batch))
            printed += len(batch)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        registry.close()
    return 0


def cmd_sources_add(args: argparse.Namespace) -> int:
    from facestream.stream.config import SourceConfig

    _, registry = _registry(args)
    source = registry.add(SourceConfig(url=args.url, id=args.id, realtime=args.realtime, loop=args.loop,
                                       expected_fps=args.fps))
    print(f"source {source.id} added; a worker will claim it")
    return 0


def cmd_sources_remove(args: argparse.Namespace) -> int:
    _, registry = _registry(args)
    registry.remove(args.id)
    print(f"source {args.id} removed; its worker stops it within a lease")
    return 0


def cmd_sources_list(args: argparse.Namespace) -> int:
    import json

    from facestream.errors import redact

    _, registry = _registry(args)
    holders = registry.holders()
    rows = [{"id": s.id, "url": redact(s.url), "realtime": s.realtime, "loop": s.loop,
             "expected_fps": s.expected_fps, "worker": holders.get(s.id or "")}
            for s in registry.sources()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no sources; add one with `facestream sources add URL --id NAME`")
    for r in rows if not args.json else []:
        print(f"{r['id']}\t{r['url']}\t{r['worker'] or '(waiting for a worker)'}")
    return 0
