"""The ``facestream`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function (shared options in :mod:`.common`); modules keep heavy imports
(torch, mediapipe, gradio, mlflow) inside their handlers so ``facestream --help``
stays instant. A :class:`FacestreamError`
ends the program with its message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from facestream.errors import FacestreamError, RedactingFilter
from facestream.stream.cli import attendance, calibrate, cluster, demo, faces, feedback, gallery, run, train

# Order here is the order in --help: detect/compare/models, enroll/identify/verify/people/gallery,
# feedback, calibrate, run, attendance, demo, train/eval.
COMMAND_MODULES = [faces, gallery, feedback, calibrate, run, cluster, attendance, demo, train]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facestream", description="Real-time face recognition.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
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
    for handler in logging.getLogger().handlers:  # no password or token in any log line (-vv logs requests)
        handler.addFilter(RedactingFilter())
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return int(args.handler(args) or 0)
    except FacestreamError as exc:  # GalleryError included: it is a FacestreamError
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
