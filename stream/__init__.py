"""facestream's vision runtime: sources, detection, alignment, embedding and everything live."""

from stream.errors import FacestreamError

__all__ = ["FacestreamError"]
