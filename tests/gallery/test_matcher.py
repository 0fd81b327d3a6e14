"""Matcher: exact top-k per person, unknown threshold and margin, cache invalidation in-process."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.gallery.errors import GalleryError
from facestream.gallery.matcher import Matcher, top_rows
from tests.gallery.conftest import emb, unit
from tests.waiting import wait_until


def brute_force(people: dict[str, np.ndarray], q: np.ndarray) -> list[tuple[str, float]]:
    """Each person scored by their mean embedding (normalised), best first."""
    means = {name: vecs.mean(axis=0) / np.linalg.norm(vecs.mean(axis=0)) for name, vecs in people.items()}
    scores = {name: float(m @ q) for name, m in means.items()}
    return sorted(scores.items(), key=lambda kv: -kv[1])


def test_top_rows_matches_a_full_sort_across_blocks(monkeypatch):
    import facestream.gallery.matcher as gm

    monkeypatch.setattr(gm, "BLOCK_ROWS", 1000)  # many blocks on a small matrix
    rng = np.random.default_rng(0)
    m = unit(rng, 10_500)
    q = unit(rng, 7)
    for matrix in (m, m[np.argsort(m @ q[0])]):  # random order, and rising scores (worst case)
        idx, sims = top_rows(matrix, q, 9)
        full = q @ matrix.T
        ref = np.sort(full, axis=1)[:, ::-1][:, :9]
        np.testing.assert_allclose(sims, ref, rtol=1e-6)
        np.testing.assert_allclose(np.take_along_axis(full, idx, 1), ref, rtol=1e-6)


@pytest.mark.parametrize("device", ["cpu", "torch"])
@pytest.mark.parametrize("per_person", [1, 3])
def test_search_equals_brute_force(store, per_person, device):
    rng = np.random.default_rng(10 + per_person)
    people = {f"p{i}": unit(rng, per_person) for i in range(60)}
    for name, vecs in people.items():
        store.enroll(name, [emb(v) for v in vecs])
    queries = unit(rng, 5)
    with Matcher(store, "m1", threshold=0.5, device=device) as matcher:
        assert len(matcher) == 60 and matcher.rows == 60 * per_person
        results = matcher.search(queries, top_k=4)
    for q, res in zip(queries, results, strict=True):
        ref = brute_force(people, q)
        assert [c.name for c in res.candidates] == [n for n, _ in ref[:4]]
        np.testing.assert_allclose([c.similarity for c in res.candidates], [s for _, s in ref[:4]], rtol=1e-5)
        assert [c.rank for c in res.candidates] == [1, 2, 3, 4]
        assert res.margin == pytest.approx(ref[0][1] - ref[1][1], abs=1e-5)
        assert res.best is None  # random vectors are far below 0.5


def test_threshold_margin_and_verify(store):
    rng = np.random.default_rng(20)
    a, b = unit(rng, 2)
    store.enroll("Ann", [emb(a)])
    store.enroll("Ben", [emb(b)])
    near_a = a + 0.1 * unit(rng, 1)[0]
    near_a /= np.linalg.norm(near_a)
    with Matcher(store, "m1", threshold=0.8, device="cpu") as matcher:
        res = matcher.identify(near_a, top_k=1)
        assert res.best is not None and res.best.name == "Ann" and res.similarity > 0.9
        assert len(res.candidates) == 1 and res.margin > 0.5
        # Halfway between the two: the closest is named only without a margin rule.
        mid = (a + b) / np.linalg.norm(a + b)
        assert matcher.identify(mid).best is None  # ~0.7 < 0.8
        matcher.threshold = 0.5
        assert matcher.identify(mid).best is not None
        matcher.min_margin = 0.05
        assert matcher.identify(mid).best is None
        match, ok, threshold = matcher.similarity_to(near_a, "ann")
        assert ok and match.name == "Ann" and match.similarity == pytest.approx(float(near_a @ a), abs=1e-5)
        assert threshold == 0.5
        match, ok, _ = matcher.similarity_to(near_a, "Ben")
        assert not ok and match.similarity < 0.5
        with pytest.raises(GalleryError, match="No person"):
            matcher.similarity_to(near_a, "Nobody")
        with pytest.raises(GalleryError, match="dimensions"):
            matcher.identify(np.ones(64, np.float32) / 8)


def test_empty_gallery_and_model_change(store):
    rng = np.random.default_rng(30)
    with Matcher(store, "m1", threshold=0.5, device="cpu") as matcher:
        assert matcher.identify(unit(rng, 1)[0]).best is None
        with pytest.raises(GalleryError, match="empty"):
            matcher.ensure_ready()
    store.enroll("Old", [emb(unit(rng, 1)[0], model="old-model")])
    with Matcher(store, "new-model", threshold=0.5, device="cpu") as matcher:
        with pytest.raises(GalleryError, match="reembed"):
            matcher.ensure_ready()


def test_cache_follows_the_store_in_process(store):
    """Writes through another store object (as another process would) show up in the next search."""
    from facestream.gallery import open_store

    rng = np.random.default_rng(40)
    v = unit(rng, 1)[0]
    other = open_store(store.url)
    with Matcher(store, "m1", threshold=0.9, device="cpu") as matcher:
        assert matcher.identify(v).best is None
        other.enroll("Zoe", [emb(v)])
        wait_until(lambda: matcher.identify(v).best is not None, 2.0, "the matcher to see the new person")
        assert matcher.identify(v).best.name == "Zoe"
        other.rename_person("Zoe", "Zoey")
        wait_until(lambda: matcher.identify(v).best.name == "Zoey", 2.0, "the new name")
        other.delete_person("Zoey")
        wait_until(lambda: matcher.identify(v).best is None, 2.0, "the person gone")
        assert len(matcher) == 0
    other.close()
