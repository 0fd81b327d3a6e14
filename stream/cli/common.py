"""What every sub-command shares: the config options, flags that become config values, one-call sub-commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

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
