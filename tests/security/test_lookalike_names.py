"""Names that only look alike are one name (issue 22, item 5): a Cyrillic і or a zero for an O cannot
make a second "Joe Biden", on either store, by enrolment, rename or bulk import."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.gallery.names import skeleton
from facestream.gallery.types import NewEmbedding, Person


def emb(seed: int) -> NewEmbedding:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return NewEmbedding(v / np.linalg.norm(v), "m", f"h{seed}")


def test_skeletons_fold_lookalikes_and_keep_real_differences():
    assert skeleton("Joe Bіden") == skeleton("Joe Biden") == skeleton("JOE  BIDEN")  # Cyrillic і, case, spaces
    assert skeleton("J0hn") == skeleton("JOhn") and skeleton("Ａnn") == skeleton("Ann")  # zero, full-width
    assert skeleton("Kim") != skeleton("Kirn") and skeleton("Ann") != skeleton("Anne")  # different names stay apart


def test_lookalike_names_are_refused_everywhere(store_url):
    with open_store(store_url) as store:
        biden, _ = store.enroll("Joe Biden", [emb(1)])
        again, added = store.enroll("joe biden", [emb(2)])  # the same name in another case: the same person
        assert again.id == biden.id and added == 1
        with pytest.raises(FacestreamError, match="looks the same as 'Joe Biden'"):
            store.enroll("Joe Bіden", [emb(3)])  # U+0456
        with pytest.raises(FacestreamError, match="looks the same"):
            store.enroll("J\u043ee Biden", [emb(4)])  # Cyrillic о
        ann, _ = store.enroll("Ann Lee", [emb(5)])
        with pytest.raises(FacestreamError, match="looks the same as 'Joe Biden'"):
            store.rename_person(ann.id, "Joe Bіden")
        assert store.rename_person(ann.id, "Ann Lee-Smith").name == "Ann Lee-Smith"
        with pytest.raises(FacestreamError, match="looks the same"):
            store.import_people([(Person("abcdef012345", "J0E BIDEN", {}), [emb(6)])])
        with pytest.raises(FacestreamError, match="looks the same"):  # within one import, too
            store.import_people([(Person("abcdef012346", "Zoe Quinn", {}), [emb(7)]),
                                 (Person("abcdef012347", "Zоe Quinn", {}), [emb(8)])])
        assert sorted(p.name for p in store.list_people() if p.name != "Zoe Quinn") == ["Ann Lee-Smith", "Joe Biden"]
