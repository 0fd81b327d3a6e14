"""The gallery's error type for problems a user can fix.

:class:`GalleryError` is a :class:`facestream.errors.FacestreamError` (the root
package's one error type, a leaf module), so the CLI, the servers and the demo
show it the same way: the problem and the fix, never a traceback.
"""

from __future__ import annotations

from facestream.errors import FacestreamError


class GalleryError(FacestreamError):
    """Unknown person, unreachable store, bad archive, mixed models: says what and how to fix it."""
