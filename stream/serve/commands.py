"""What a websocket client may send, validated before anything acts on it.

A command is one JSON object with a ``type``; its fields are checked (types, bounds,
finite numbers, no unknown keys) by a pydantic model, and a malformed one gets one
clear error message back on that connection: it never reaches the pipeline, never
kills the connection and never writes a traceback to the log.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class Command(BaseModel):
    """Every command: its ``type`` and an optional request ``id`` echoed in the reply."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=2000)
    type: str
    id: int | str | None = None


class Subscribe(Command):
    """Which sources' results to receive, whether with a JPEG of each frame, and of which sources
    (``jpeg_sources``: a dashboard asks for the tiles it shows; ``"*"`` = every source it receives)."""

    type: Literal["subscribe"]
    sources: list[str] | str | None = None
    frames: Literal["jpeg", "none"] | None = None
    jpeg_sources: list[str] | str | None = Field(None, max_length=10000)


class FeedbackCommand(Command):
    """A user's correction of a live face (see :meth:`facestream.stream.live.pipeline.Pipeline.feedback`)."""

    type: Literal["feedback"]
    source: str = Field(min_length=1, max_length=200)
    track_id: int = Field(ge=0, le=2**62)
    verdict: Literal["not", "is"]
    person: str | None = Field(None, max_length=200)


class EnrolTrackCommand(Command):
    """Enrol a stranger's live track as a new person
    (:meth:`facestream.stream.live.pipeline.Pipeline.enrol_track`)."""

    type: Literal["enrol_track"]
    source: str = Field(min_length=1, max_length=200)
    track_id: int = Field(ge=0, le=2**62)
    name: str = Field(min_length=1, max_length=200)


class FeedbackUndoCommand(Command):
    type: Literal["feedback_undo"]
    feedback: str = Field(min_length=1, max_length=300)


class CommandError(ValueError):
    """A command that cannot be acted on; its message is what the client is told (with the command's type
    and request id when they were readable, so the reply can go where the client waits for it)."""

    def __init__(self, message: str, type: str | None = None, id: Any = None):
        super().__init__(message)
        self.type = type
        self.id = id if isinstance(id, int | str) else None


def parse_command(raw: str | bytes, models: dict[str, type[Command]]) -> Command:
    """The command ``raw`` holds, as the model its ``type`` names among ``models``.

    Raises:
        CommandError: not JSON, not an object, an unknown type, or fields that do not validate.
    """
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CommandError("a command must be one JSON object") from None
    if not isinstance(msg, dict):
        raise CommandError("a command must be one JSON object")
    kind = msg.get("type")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise CommandError(f"unknown command type {str(msg.get('type'))[:40]!r}; send one of: "
                           + ", ".join(sorted(models)))
    try:
        return model.model_validate(msg)
    except ValidationError as exc:
        raise CommandError(describe(exc), msg["type"], msg.get("id")) from None


def describe(exc: ValidationError) -> str:
    """A validation failure in one line a person can act on: ``field: problem; ...``."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "command"
        parts.append(f"{where}: {err['msg']}")
    return "bad command: " + "; ".join(parts)


def blank_to_none(value: Any) -> Any:
    """Form fields arrive as "" when left empty."""
    return None if isinstance(value, str) and not value.strip() else value


__all__ = ["Command", "CommandError", "EnrolTrackCommand", "FeedbackCommand", "FeedbackUndoCommand", "Subscribe",
           "blank_to_none", "field_validator", "parse_command"]
