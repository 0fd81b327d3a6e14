"""One error type for everything a user can cause, and the one rule that keeps secrets out of messages.

The CLI, the servers and the demo catch :class:`FacestreamError` and show its
message alone (no traceback): the message names the thing that is wrong and the
fix, so the user can act on it. Messages often name a URL (a Redis gallery, a
camera, an MLflow server), and URLs carry passwords and tokens; every message,
and every log line the command line writes, goes through :func:`redact`.
"""

from __future__ import annotations

import logging
import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@")
_QUERY = re.compile(r"(?i)(?P<key>[?&;#](?:token|password|passwd|pwd|pass|secret|key|api_key|access_token|auth)=)"
                    r"(?P<value>[^&#\s'\"]+)")
_BEARER = re.compile(r"(?i)(?P<key>\b(?:bearer|basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{4,})")


def redact(text: str) -> str:
    """``text`` with the secrets of every URL in it replaced by ``***``: ``user:password@``, ``?token=`` and
    friends, and ``Bearer``/``Basic`` credentials."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    text = _QUERY.sub(lambda m: f"{m['key']}***", text)
    return _BEARER.sub(lambda m: f"{m['key']}***", text)


class RedactingFilter(logging.Filter):
    """A log handler filter that redacts every record's message (``-vv`` logs request lines with queries)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


class FacestreamError(Exception):
    """A problem the user can fix: bad path, unreadable image, bad config, unreachable service."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = redact(problem)
        self.fix = redact(fix) if fix else fix
        super().__init__(f"{self.problem} {self.fix}".strip() if self.fix else self.problem)


class NotFound(FacestreamError):
    """Something named (a person, a session) does not exist: HTTP 404 on every server."""
