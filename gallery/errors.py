"""The gallery's one error type for problems a user can fix.

``gallery`` imports nothing of the rest of facestream, so it cannot raise
``stream.errors.FacestreamError``; :class:`GalleryError` carries the same
``problem``/``fix`` pair and the CLI and servers show it the same way.
"""

from __future__ import annotations


class GalleryError(Exception):
    """Unknown person, unreachable store, bad archive, mixed models: says what and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip() if fix else problem)
