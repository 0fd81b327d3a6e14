"""``facestream attendance``: start, stop, list, show and report attendance sessions.

Sessions live in the gallery's store (``gallery.url``), so a session started
here is picked up within a second by a running ``facestream run`` (and by every
worker sharing a Redis gallery).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from facestream.stream.cli.common import add_command, add_gallery_options, load_args_config
from facestream.stream.config import Config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attendance", help="attendance sessions: start, stop, list, show, report")
    sub = p.add_subparsers(dest="attendance_command", metavar="ACTION", required=True)

    s = add_command(sub, "start", "start (or schedule) a session", _start, add_gallery_options)
    s.add_argument("name", help="session name, e.g. 'cs101 monday'")
    s.add_argument("--roster", metavar="KEY=VALUE", help="expected people by metadata, e.g. group=cs101")
    s.add_argument("--people", action="append", default=[], metavar="NAMES",
                   help="expected people by name or id, comma-separated (repeatable)")
    s.add_argument("--camera", action="append", default=[], metavar="ID",
                   help="source id to watch (repeatable); default every camera")
    s.add_argument("--start", dest="start_time", metavar="TIME", help="HH:MM today or YYYY-MM-DD HH:MM (default now)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--end", metavar="TIME", help="HH:MM today or YYYY-MM-DD HH:MM (default: until stopped)")
    g.add_argument("--duration", metavar="DUR", help="e.g. 90m, 1.5h")
    s.add_argument("--late-after", type=float, metavar="MIN", help="minutes after the start that count as late")

    s = add_command(sub, "stop", "end a session now (default: the latest running one)", _stop, add_gallery_options)
    s.add_argument("name", nargs="?")

    add_command(sub, "list", "every session with its state and counts", _list, add_gallery_options)

    s = add_command(sub, "show", "one session's roster with present / late / absent", _show, add_gallery_options)
    s.add_argument("name", nargs="?", help="default: the latest session")

    s = add_command(sub, "report", "export a session as CSV or XLSX (default: the latest, CSV to stdout)", _report,
                    add_gallery_options)
    s.add_argument("name", nargs="?", help="default: the latest session")
    s.add_argument("--csv", metavar="PATH", help="write CSV here ('-' = stdout)")
    s.add_argument("--xlsx", metavar="PATH", help="write an Excel workbook here")

    s = add_command(sub, "delete", "delete a session and everything recorded in it", _delete, add_gallery_options)
    s.add_argument("name")


def _config(args: argparse.Namespace) -> Config:
    return load_args_config(args)


def _store(config):
    from facestream.stream.attendance import open_attendance_store

    return open_attendance_store(config.gallery.url)


def _fmt(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _start(args) -> int:
    from facestream.stream.attendance import create_session
    from facestream.stream.attendance.roster import gallery_people
    from facestream.stream.attendance.sessions import parse_duration, parse_time

    config = _config(args)
    store = _store(config)
    start = parse_time(args.start_time) if args.start_time else None
    end = parse_time(args.end) if args.end else None
    if args.duration:
        end = (start or datetime.now().timestamp()) + parse_duration(args.duration)
    late = config.attendance.late_after_minutes if args.late_after is None else args.late_after
    names = [n for item in args.people for n in item.split(",")]
    session = create_session(store, gallery_people(config.gallery.url), args.name, cameras=args.camera,
                             roster=args.roster, names=names, start=start, end=end, late_after_s=late * 60)
    print(f"session {session.name!r} {session.state()}: {len(session.roster)} expected "
          f"({session.selector}), cameras {', '.join(session.cameras) or 'all'}, "
          f"{_fmt(session.start)} to {_fmt(session.end) if session.end else 'until stopped'}, "
          f"late after {late:g} min")
    return 0


def _stop(args) -> int:
    from facestream.stream.attendance import stop_session

    session = stop_session(_store(_config(args)), args.name)
    print(f"session {session.name!r} ended at {_fmt(session.end)}")
    return 0


def _list(args) -> int:
    store = _store(_config(args))
    sessions = store.sessions()
    if not sessions:
        print("no attendance sessions")
        return 0
    print(f"{'session':<28} {'state':<9} {'kind':<9} {'start':<19} {'end':<19} present late absent other")
    for s in sessions:
        c = store.attendance(s).counts()
        print(f"{s.name:<28} {s.state():<9} {s.kind:<9} {_fmt(s.start):<19} {_fmt(s.end):<19} "
              f"{c['present']:>7} {c['late']:>4} {c['absent']:>6} {c['not_on_roster']:>5}")
    return 0


def _show(args) -> int:
    from facestream.stream.attendance.report import report_rows

    config = _config(args)
    store = _store(config)
    session = store.require_session(args.name)
    att = store.attendance(session)
    print(f"session {session.name!r} ({session.state()}, cameras {', '.join(session.cameras) or 'all'}, "
          f"{_fmt(session.start)} to {_fmt(session.end)}, roster {session.selector or '-'})")
    for row in report_rows(att):
        print(f"  {row['name']:<30} {row['status']:<24} {row['first_seen'][11:19] or '-':<9} {row['camera']:<8} "
              f"{row['best_similarity']}")
    c = att.counts()
    print(f"present {c['present']}, late {c['late']}, absent {c['absent']}, not on roster {c['not_on_roster']}, "
          f"unknown faces {c['unknown']}")
    return 0


def _report(args) -> int:
    from pathlib import Path

    from facestream.errors import FacestreamError
    from facestream.stream.attendance import to_csv, to_xlsx

    store = _store(_config(args))
    session = store.require_session(args.name)
    att = store.attendance(session)
    outputs = [(args.csv, to_csv), (args.xlsx, to_xlsx)]
    if not args.csv and not args.xlsx:
        outputs = [("-", to_csv)]
    for path, fn in outputs:
        if not path:
            continue
        data = fn(att)
        if path == "-":
            sys.stdout.write(data.decode("utf-8"))
            continue
        try:
            Path(path).expanduser().write_bytes(data)
        except OSError as exc:
            raise FacestreamError(f"Cannot write the report to {path} ({exc.strerror}).",
                                  "Pick a writable path.") from None
        print(f"wrote {path} (session {session.name!r}, {len(att.roster) + len(att.extra)} people)",
              file=sys.stderr)
    return 0


def _delete(args) -> int:
    store = _store(_config(args))
    session = store.require_session(args.name)
    store.delete_session(session.name)
    print(f"deleted session {session.name!r}")
    return 0
