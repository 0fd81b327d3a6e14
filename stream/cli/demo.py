"""``facestream demo``: the Gradio page (live webcam, photo, verify, look-alike, enrol, gallery)."""

from __future__ import annotations

import argparse

from facestream.stream.cli.common import add_gallery_options, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve the Gradio demo page (webcam, photos, enrolment, gallery)")
    p.add_argument("--host", help="interface to listen on (default: demo.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: demo.port, 7860)")
    p.add_argument("--no-enrol", action="store_true", help="hide the Enrol tab and deleting (public kiosks)")
    p.add_argument("--admin-token", help="unlocks adding to enrolled people, corrections and deleting "
                                         "(default: demo.admin_token; none = those are off)")
    p.add_argument("--login", metavar="USER:PASSWORD", help="visitors must sign in (default: demo.login)")
    p.add_argument("--public", action="store_true", help="serve anonymous visitors beyond loopback: a kiosk that "
                   "lists no enrolled people or faces (demo.public); without it such a --host needs --login")
    add_gallery_options(p)
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    config = load_args_config(args, {"demo.host": args.host or None, "demo.port": args.port,
                                     "demo.allow_enrolment": False if args.no_enrol else None,
                                     "demo.admin_token": args.admin_token, "demo.login": args.login,
                                     "demo.public": True if args.public else None})

    from facestream.stream.app import App, Phase
    from facestream.stream.demo import build_demo, launch_demo

    with App(config) as app:
        service = app.demo_service()
        service.check()  # open the gallery and the models now: a bad URL fails here, not on the first click
        demo = build_demo(service, allow_enrolment=config.demo.allow_enrolment)
        launch_demo(demo, config.demo.host, config.demo.port, block=False, login=config.demo.login)
        app.own(demo, demo.close, Phase.SERVING, "demo")
        print(f"facestream demo on {demo.local_url}  (Ctrl-C to stop)", flush=True)
        demo.block_thread()
    return 0
