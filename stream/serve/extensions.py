"""How a product plugs into the live server: API routes, websocket commands and parts of the hello.

The server knows nothing of attendance (or any other product); a product hands it a
:class:`ServerExtension` instead of subclassing the server. Everything is optional:

* ``router``: FastAPI routes added under ``/api`` (behind the same guard and token);
* ``commands``: websocket command types (``{"type": ...}``) and their pydantic models, answered by
  :meth:`ServerExtension.act`; ``replies`` names the reply type a malformed one is answered with;
* :meth:`ServerExtension.hello`: fields added to every client's ``hello`` (called off the event loop,
  so it may read a store);
* :meth:`ServerExtension.bind`: called once with the server's ``publish``, to send the product's events to
  every client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from fastapi import APIRouter

from facestream.stream.serve.commands import Command

# StreamServer.publish: a JSON-ready message (and its source, for subscriptions) to every interested client
Publish = Callable[..., None]


class ServerExtension:
    """A product's part of the server (override what it needs)."""

    router: APIRouter | None = None
    commands: ClassVar[dict[str, type[Command]]] = {}
    replies: ClassVar[dict[str, str]] = {}

    def bind(self, publish: Publish) -> None:
        """Called once when the server is built (before it starts), with its ``publish``."""

    def hello(self) -> dict[str, Any]:
        """Fields for a connecting client's hello; must not raise (report trouble in a field)."""
        return {}

    async def act(self, cmd: Command) -> dict[str, Any]:
        """The reply to one of :attr:`commands` (an extension with commands must override it: the server
        refuses one that does not when it is built)."""
        raise NotImplementedError(f"{type(self).__name__} takes no commands")
