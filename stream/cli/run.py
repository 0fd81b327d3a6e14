"""``facestream run``: recognise faces on live sources and serve the results.

    facestream run rtsp://cam1/live 0 clip.mp4 --gallery redis://127.0.0.1:6379/0 --port 8765
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from facestream.errors import FacestreamError
from facestream.stream.cli.common import (
    add_gallery_options,
    add_token_options,
    load_args_config,
    sign_in_text,
    token_from,
)

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("token", help="print a new random access token for server.token / --token (once)")
    t.set_defaults(handler=cmd_token)
    p = sub.add_parser(
        "run", help="recognise faces on cameras, streams, files or image folders, live",
        description="Reads each SOURCE in its own thread, detects and tracks faces on every frame, names them "
                    "against the gallery and serves results over websockets (ws://HOST:PORT/), with /stats, "
                    "/health and the dashboard on the same port.",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="camera index (0), video file, image folder, rtsp:// or http(s):// URL "
                        "(default: config `sources:`)")
    p.add_argument("--host", help="interface to listen on (default: server.host)")
    p.add_argument("--port", type=int, help="websocket/HTTP port (0 = any free port; default: server.port)")
    p.add_argument("--no-server", action="store_true", help="do not start the websocket/HTTP server")
    p.add_argument("--dashboard", action="store_true",
                   help="print the browser dashboard's address (with the token); it is served at "
                        "http://HOST:PORT/ whenever the server runs")
    add_token_options(p)
    p.add_argument("--record", metavar="OUT.mp4", help="write the annotated video (one file per source)")
    p.add_argument("--jsonl", metavar="FILE", help="write every result and event as JSON lines")
    p.add_argument("--realtime", action="store_true", help="read files at their native frame rate, like a camera")
    p.add_argument("--loop", action="store_true", help="restart files at their end")
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop each source after N frames")
    p.add_argument("--model", help="embedding model (registry name, folder, or models:/ URI)")
    p.add_argument("--engine", choices=["auto", "onnxruntime", "torch", "tensorrt"], help="inference engine")
    p.add_argument("--people", metavar="A,B,...", help="roster scope: only these people (names or ids, comma-"
                   "separated) may be named, judged as a gallery of them (match.people)")
    p.add_argument("--group", action="append", metavar="GROUP", help="roster scope: people whose `group` metadata "
                   "is GROUP (repeatable; match.groups)")
    p.add_argument("--outside-scope", choices=["unknown", "gallery"],
                   help="people outside --people/--group: unknown, or named by the whole gallery's rule and "
                        "marked 'not on roster' (match.outside_scope)")
    p.add_argument("--session", help="record attendance into this existing session (default: the day's session)")
    p.add_argument("--no-attendance", action="store_true", help="do not record attendance")
    add_gallery_options(p)
    p.set_defaults(handler=cmd_run)


def _config(args: argparse.Namespace):
    from facestream.stream.config import SourceConfig

    config = load_args_config(args, {
        "server.port": args.port, "server.host": args.host, "server.token": token_from(args),
        "embedder.model": args.model, "embedder.engine": args.engine,
        "match.people": [x.strip() for x in args.people.split(",") if x.strip()] if args.people else None,
        "match.groups": args.group, "match.outside_scope": args.outside_scope})
    if args.sources:
        sources = [SourceConfig(url=s, realtime=args.realtime, loop=args.loop) for s in args.sources]
    else:
        sources = [s.model_copy(update={"realtime": s.realtime or args.realtime, "loop": s.loop or args.loop})
                   for s in config.sources]
    if not sources:
        raise FacestreamError("No sources given.", "Name one: `facestream run 0` (webcam), a file, or an rtsp:// URL.")
    return config, sources


def cmd_token(args: argparse.Namespace) -> int:
    """A new token: 32 random bytes, URL-safe. Printed once; facestream keeps no copy."""
    import secrets

    print(secrets.token_urlsafe(32))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from facestream.stream.app import App
    from facestream.stream.live.outputs import JsonlWriter, VideoRecorder

    config, sources = _config(args)
    if args.dashboard and args.no_server:
        raise FacestreamError("--dashboard needs the server.", "Drop --no-server.")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with App(config) as app:
            pipeline = app.pipeline(sources, max_frames=args.max_frames)
            # every output listens before the first frame, so none misses the start of a run
            if args.jsonl:
                app.output(JsonlWriter(args.jsonl).attach(pipeline))
            if args.record:
                app.output(VideoRecorder(args.record, blur_unknown=config.server.blur_unknown).attach(pipeline))
            monitor = None if args.no_attendance else app.attendance(pipeline.source_ids, session=args.session)
            if monitor is not None:  # recorded on the feed's thread: a slow store never holds a camera up
                pipeline.add_listener(app.attendance_feed(monitor).on_result)
            server = None
            if not args.no_server:
                server = app.server(stats=pipeline.stats, monitor=monitor, recognition=app.recognition()).start()
                server.attach(pipeline)
            pipeline.start()
            if server is not None:
                print(f"serving results on {server.url} (dashboard: http://{config.server.host}:{server.port}/)",
                      flush=True)
                if args.dashboard:  # attendance dashboard (helper H)
                    print(f"dashboard: {sign_in_text(args, config, config.server.host, server.port)}", flush=True)
            while not stop.is_set() and not pipeline.wait(timeout=0.5):
                pass
            if pipeline.error is not None:
                raise pipeline.error
    finally:
        signal.signal(signal.SIGTERM, previous)
    for sid, s in pipeline.stats()["sources"].items():
        print(f"{sid}: {s['processed']} frames, {s['dropped']} dropped, {s['reconnects']} reconnects, "
              f"latency p50 {s['latency_ms']['p50']} ms")
        if s.get("liveness") is not None:
            v = s["liveness"]
            print(f"{sid}: liveness ({config.liveness.mode}) of named tracks: {v.get('live', 0)} live, "
                  f"{v.get('spoof', 0)} spoof suspected, {v.get('unknown', 0)} undecided")
    return 0
