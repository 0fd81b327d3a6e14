"""One error type for everything a user can cause.

The CLI, the servers and the demo catch :class:`FacestreamError` and show its
message alone (no traceback): the message names the thing that is wrong and the
fix, so the user can act on it.
"""

from __future__ import annotations


class FacestreamError(Exception):
    """A problem the user can fix: bad path, unreadable image, bad config, unreachable service."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip() if fix else problem)
