"""facestream: real-time face recognition. Live video in, names out, fast.

The installed package maps the repository's folders into one namespace:

* ``facestream.errors``: the one error type for problems a user can fix (a leaf
  every package may import);
* ``facestream.gallery`` (``gallery/``): people, embeddings, stores and the match index;
* ``facestream.stream`` (``stream/``): the face engine, recognition, the live runtime,
  the products (attendance, dashboard, demo) and the command line;
* ``facestream.trainer`` (``trainer/``): fine-tuning, evaluation and MLflow;
* ``facestream.configs`` (``configs/``): the default configuration, as package data.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from facestream.errors import FacestreamError

try:
    __version__ = version("facestream")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["FacestreamError", "__version__"]
