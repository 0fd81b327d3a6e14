"""The ``facestream`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function; modules keep heavy imports (torch, mediapipe, gradio, mlflow) inside
their handlers so ``facestream --help`` stays instant. A :class:`FacestreamError`
ends the program with its message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from gallery.errors import GalleryError
from stream.errors import FacestreamError

# Order here is the order in --help.
COMMAND_MODULES = [
    "stream.cli.faces",       # detect, compare, models
    "stream.cli.gallery",     # enroll, identify, verify, people, gallery
    "stream.cli.live",        # run
    "stream.cli.attendance",  # attendance
    "stream.cli.demo",        # demo
    "trainer.cli",            # train, eval
]


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that touches models or the gallery shares."""
    parser.add_argument("--config", help="YAML config file (see configs/default.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set match.threshold=0.9 (repeatable)",
    )


def flag_overrides(overrides: list[str], flags: dict[str, Any]) -> list[str]:
    """``--set`` pairs plus the given flags (``{"server.token": args.token}``), the flags last so they win.

    A flag's value is written as JSON (which YAML reads back unchanged), so ``--token '#abc'`` or
    ``--token 12345`` stays the string typed rather than a YAML comment or a number.
    """
    return [*overrides, *(f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None)]


def add_command(sub: argparse._SubParsersAction, name: str, help: str, handler: Callable[..., int],
                common: Callable[[argparse.ArgumentParser], None] = add_common_options) -> argparse.ArgumentParser:
    """One sub-command that runs ``handler(args)``, with the shared options; add its own arguments to the result."""
    parser = sub.add_parser(name, help=help)
    common(parser)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facestream", description="Real-time face recognition.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(sub)
    return parser


# modules of the optional extras, and the extra that brings each
EXTRAS = {"gradio": "demo", "gradio_client": "demo", "mlflow": "train", "matplotlib": "train"}


def missing_extra(exc: ModuleNotFoundError, command: str | None) -> FacestreamError | None:
    """The clear error for a command whose optional dependency is not installed; None for other imports."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return FacestreamError(f"'facestream {command}' needs {module}, which is not installed.",
                           f"Install the extra: pip install 'facestream[{extra}]' (or pip install -e '.[{extra}]').")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return int(args.handler(args) or 0)
    except (FacestreamError, GalleryError) as exc:  # GalleryError: the gallery's twin of FacestreamError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, args.command)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
