"""The dashboard's attendance commands, validated: bounded, finite values and known fields only.

A late delay of ``1e308`` minutes used to pass, be stored, and serialise as
``Infinity``, which broke every dashboard that read the session.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from facestream.stream.attendance.sessions import MAX_LATE_MINUTES, MAX_SESSION_MINUTES
from facestream.stream.serve.commands import Command, blank_to_none


class AttendanceStart(Command):
    type: Literal["attendance_start"]
    name: str = Field(min_length=1, max_length=200)
    people: list[str] | str = Field(default_factory=list)
    cameras: list[str] | str = Field(default_factory=list)
    roster: str | None = Field(None, max_length=500)
    late_after_minutes: float | None = Field(None, ge=0, le=MAX_LATE_MINUTES)
    duration_minutes: float | None = Field(None, gt=0, le=MAX_SESSION_MINUTES)

    @field_validator("roster", "late_after_minutes", "duration_minutes", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return blank_to_none(value)


class AttendanceStop(Command):
    type: Literal["attendance_stop"]
    session: str | None = Field(None, max_length=200)
