"""What every sub-command shares: the config options, flags that become config values, one-call sub-commands."""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facestream.errors import FacestreamError
from facestream.stream.config import Config, load_config


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that touches models or the gallery shares."""
    parser.add_argument("--config", help="YAML config file (see configs/default.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set match.threshold=0.9 (repeatable)",
    )


def add_gallery_options(parser: argparse.ArgumentParser) -> None:
    """The shared options plus ``--gallery``, for every command that reads or writes the gallery."""
    parser.add_argument("--gallery", metavar="URL",
                        help="sqlite:///path/gallery.db or redis://host:6379/0 (default: $FACESTREAM_GALLERY, "
                             "then gallery.url)")
    add_common_options(parser)


def load_args_config(args: argparse.Namespace, flags: dict[str, Any] | None = None) -> Config:
    """The configuration for a command: ``--config``, ``--set``, then its flags (``--gallery`` included)."""
    flags = {"gallery.url": getattr(args, "gallery", None), **(flags or {})}
    return load_config(args.config, flag_overrides(args.overrides, flags))


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


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """How a server command gets its token, and whether it prints a sign-in link (which holds the token)."""
    parser.add_argument("--token", help="clients must present this token (Authorization: Bearer); prefer "
                        "--token-file or $FACESTREAM__SERVER__TOKEN: arguments are visible to every local user")
    parser.add_argument("--token-file", metavar="PATH",
                        help="read the token from this file; created with a new random token, readable by you "
                        "only, if it does not exist (lock a dashboard on a shared machine)")
    parser.add_argument("--sign-in-link", action="store_true",
                        help="print the dashboard's address with the token in it (off: logs and `docker compose "
                        "logs` would hold the token)")


def token_from(args: argparse.Namespace) -> str | None:
    """``--token``, else the token in ``--token-file`` (made on first use, mode 0600), else None (the config's).

    Raises:
        FacestreamError: both given, or a token file others can read, or one that cannot be read or made.
    """
    if getattr(args, "token_file", None) is None:
        return getattr(args, "token", None)
    if args.token:
        raise FacestreamError("Both --token and --token-file given.", "Give one of them.")
    path = Path(args.token_file).expanduser()
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
            print(f"made a new token in {path} (readable by you only)", flush=True)
        if path.stat().st_mode & 0o077:
            raise FacestreamError(f"The token file {path} can be read by other users.", f"Run: chmod 600 {path}")
        token = path.read_text().strip()
    except OSError as exc:
        raise FacestreamError(f"Cannot read or make the token file {path} ({exc.strerror}).",
                              "Give a path you can write.") from None
    if not token:
        raise FacestreamError(f"The token file {path} is empty.", "Delete it to have a new token made.")
    return token


def sign_in_text(args: argparse.Namespace, config: Config, host: str, port: int) -> str:
    """The dashboard's address; with the token in its fragment only when ``--sign-in-link`` asks for it."""
    base = f"http://{host}:{port}/"
    if not config.server.token:
        return base
    if getattr(args, "sign_in_link", False):
        return f"{base}#token={config.server.token}"  # a fragment: never sent to a server
    return f"{base} (sign in with the token; --sign-in-link prints a link holding it)"
