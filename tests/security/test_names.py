"""Names cannot impersonate: invisible characters are refused, compatibility forms folded (issue 22, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.errors import GalleryError
from facestream.gallery.types import NewEmbedding


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/g.db" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    s = open_store(url)
    yield s
    s.close()


def _emb(seed: int) -> NewEmbedding:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return NewEmbedding(v / np.linalg.norm(v), "m", f"h{seed}")


@pytest.mark.parametrize("hidden", ["\u200b", "\u200d", "\u202e", "\ufeff", "\u00ad", "\u2028"])
def test_invisible_characters_are_refused_everywhere_a_name_is_made(store, hidden):
    store.enroll("Joe Biden", [_emb(1)])
    with pytest.raises(GalleryError, match="invisible"):
        store.enroll(f"Joe Biden{hidden}", [_emb(2)])
    with pytest.raises(GalleryError, match="invisible"):
        store.add_person(f"Joe{hidden} Biden")
    with pytest.raises(GalleryError, match="invisible"):
        store.rename_person("Joe Biden", f"Joe Biden{hidden}")
    assert [p.name for p in store.list_people()] == ["Joe Biden"]


def test_compatibility_forms_fold_into_the_same_person(store):
    store.enroll("Joe Biden", [_emb(1)])
    person, _ = store.enroll("Ｊｏｅ \u00a0Biden", [_emb(2)])  # full-width letters, a no-break space
    assert person.name == "Joe Biden" and len(store.list_people()) == 1
