"""Who is enrolled: people, their embeddings, the stores that keep them and the match index.

Public API (this package imports only numpy, redis and sqlite3; torch lazily for GPU search):

* :func:`gallery.store.open_store` ``(url) -> GalleryStore``: ``sqlite:///path.db`` or ``redis://host:6379/0``.
* :class:`gallery.store.GalleryStore`: people (``enroll``, ``find_person``/``get_person``, ``list_people``,
  ``rename_person``, ``set_metadata``, ``delete_person``), embeddings (``owner_of``, ``embeddings_of``,
  ``model_counts``, ``load_matrix``, ``iter_chips``, ``delete_model``), bulk (``export_people``,
  ``import_people``), changes (``version``, ``subscribe``).
* :class:`gallery.matcher.Matcher` ``(store, model_id, threshold, min_margin=0, device="auto")``:
  ``search(embeddings, top_k) -> list[MatchResult]``, ``identify``, ``similarity_to``, ``ensure_ready``.
* :mod:`gallery.archive`: ``export_gallery(store, path)`` / ``import_gallery(store, path)`` (.zip format
  documented there).
* :mod:`gallery.types`: ``Person``, ``NewEmbedding``, ``EmbeddingInfo``, ``Match``, ``MatchResult``,
  ``content_hash``; :class:`gallery.errors.GalleryError` for anything a user can fix.
"""
