"""The same gallery tests run against both stores: SQLite in a temp dir, and a real redis-server."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.types import NewEmbedding, content_hash


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def unit(rng: np.random.Generator, n: int, dim: int = 128) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def emb(vector: np.ndarray, model: str = "m1", tag: str | None = None, chip: bytes | None = None) -> NewEmbedding:
    """An embedding keyed by the hash of its own bytes (or of ``tag``), like a photo's content hash."""
    key = content_hash(tag.encode() if tag is not None else vector.tobytes())
    return NewEmbedding(vector, model, key, chip, source=tag or "")
