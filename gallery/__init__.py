"""Who is enrolled: people, their embeddings, the stores that keep them and the match index.

Public API (this package imports only numpy, redis and sqlite3; torch lazily for GPU search):

* :func:`facestream.gallery.open_store` ``(url) -> GalleryStore``: ``sqlite:///path.db`` or ``redis://host:6379/0``.
* :class:`facestream.gallery.store.GalleryStore`: people (``enroll``, ``find_person``/``get_person``, ``list_people``,
  ``rename_person``, ``set_metadata``, ``delete_person``), embeddings (``owner_of``, ``embeddings_of``,
  ``model_counts``, ``load_matrix``, ``iter_chips``, ``delete_model``), bulk (``export_people``,
  ``import_people``), changes (``version``, ``subscribe``).
* :class:`facestream.gallery.matcher.Matcher` ``(store, model_id, threshold, min_margin=0, device="auto")``:
  ``search(embeddings, top_k) -> list[MatchResult]``, ``identify``, ``similarity_to``, ``ensure_ready``.
* :mod:`facestream.gallery.archive`: ``export_gallery(store, path)`` / ``import_gallery(store, path)`` (.zip format
  documented there).
* :mod:`facestream.gallery.types`: ``Person``, ``NewEmbedding``, ``EmbeddingInfo``, ``Match``, ``MatchResult``,
  ``content_hash``; :class:`facestream.gallery.errors.GalleryError` for anything a user can fix.
"""

from __future__ import annotations

from facestream.gallery.errors import GalleryError
from facestream.gallery.store import GalleryStore
from facestream.redis_url import is_redis_url

__all__ = ["GalleryError", "GalleryStore", "open_store", "store_kind"]


def open_store(url: str) -> GalleryStore:
    """Open the store a URL names: ``sqlite:///path.db`` (or a bare path ending .db) or ``redis://...``.

    Raises:
        GalleryError: unknown scheme, unwritable path, unreachable Redis.
    """
    url = (url or "").strip()  # backends import lazily: redis-py only when a redis:// URL is opened
    if store_kind(url) == "redis":
        from facestream.gallery.redis_store import RedisStore

        return RedisStore(url)
    from facestream.gallery.sqlite_store import SqliteStore

    return SqliteStore(url)


def store_kind(url: str) -> str:
    """Which backend a store URL names, ``sqlite`` or ``redis``: the one rule for the gallery and attendance.

    Raises:
        GalleryError: a URL of neither kind.
    """
    url = (url or "").strip()
    if is_redis_url(url):
        return "redis"
    if url.startswith("sqlite://") or url.endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite"
    raise GalleryError(
        f"Gallery URL {url!r} is not one facestream knows.",
        "Use sqlite:///path/to/gallery.db (embedded) or redis://host:6379/0 (shared).",
    )
