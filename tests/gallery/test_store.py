"""Store behaviour, identical for SQLite and Redis: people, embeddings, idempotence, atomicity, deletion."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.gallery import open_store
from facestream.gallery.errors import GalleryError
from facestream.gallery.types import NewEmbedding
from tests.gallery.conftest import emb, unit


def test_enroll_list_show_and_idempotence(store):
    rng = np.random.default_rng(1)
    v = unit(rng, 3)
    v0 = store.version()
    person, added = store.enroll("Alice", [emb(v[0]), emb(v[1])], {"student": "12345", "group": "B2"})
    assert added == 2 and person.name == "Alice" and person.n_embeddings == 2
    assert person.metadata == {"student": "12345", "group": "B2"}
    assert store.version() > v0
    # Same photos again: nothing new; a new photo adds one.
    again, added = store.enroll("alice", [emb(v[0]), emb(v[1]), emb(v[2])])
    assert again.id == person.id and added == 1 and again.n_embeddings == 3
    assert store.owner_of("m1", emb(v[2]).hash) == person.id
    assert store.owner_of("m1", "nope") is None
    store.enroll("Bob", [emb(unit(rng, 1)[0])])
    assert [p.name for p in store.list_people()] == ["Alice", "Bob"]
    assert store.get_person(person.id).name == "Alice"
    assert store.get_person("ALICE").id == person.id
    infos = store.embeddings_of("Alice")
    assert len(infos) == 3 and {i.model_id for i in infos} == {"m1"}
    assert store.model_counts() == {"m1": 4}


def test_matrix_grouped_by_person_and_models_kept_apart(store):
    rng = np.random.default_rng(2)
    a, b = unit(rng, 2), unit(rng, 3)
    store.enroll("A", [emb(x) for x in a])
    store.enroll("B", [emb(x) for x in b])
    store.enroll("B", [emb(unit(rng, 1, 64)[0], model="m2")])
    m = store.load_matrix("m1")
    assert m.matrix.shape == (5, 128) and m.matrix.dtype == np.float32
    assert len(m.person_ids) == 2 and m.version == store.version()
    for p, name in enumerate(m.names):
        rows = m.matrix[m.row_person == p]
        expected = a if name == "A" else b
        assert {r.tobytes() for r in rows} == {x.tobytes() for x in expected}
    assert np.all(np.diff(m.row_person) >= 0)
    assert store.load_matrix("m2").matrix.shape == (1, 64)
    assert store.model_counts() == {"m1": 5, "m2": 1}
    # A different dimension under the same model id is refused.
    with pytest.raises(GalleryError, match="dimensions"):
        store.enroll("C", [emb(unit(rng, 1, 64)[0], model="m1")])
    assert store.find_person("C") is None


def test_failed_enrolment_leaves_no_half_person(store):
    rng = np.random.default_rng(3)
    good = emb(unit(rng, 1)[0])
    bad = NewEmbedding(np.full(128, np.nan, np.float32), "m1", "badhash")
    with pytest.raises(GalleryError):
        store.enroll("Half", [good, bad])
    assert store.find_person("Half") is None
    assert store.owner_of("m1", good.hash) is None
    assert store.load_matrix("m1").matrix.shape[0] == 0


def test_rename_metadata_and_name_rules(store):
    rng = np.random.default_rng(4)
    store.enroll("Carol", [emb(unit(rng, 1)[0])], {"group": "A"})
    store.enroll("Dave", [emb(unit(rng, 1)[0])])
    p = store.rename_person("carol", "Caroline")
    assert p.name == "Caroline" and store.find_person("Carol") is None
    assert store.get_person("caroline").id == p.id
    with pytest.raises(GalleryError, match="already taken"):
        store.rename_person("Dave", "CAROLINE")
    p = store.set_metadata("Caroline", {"student": "7"})
    assert p.metadata == {"group": "A", "student": "7"}
    assert store.set_metadata("Caroline", {"x": "1"}, replace=True).metadata == {"x": "1"}
    with pytest.raises(GalleryError, match="non-empty name"):
        store.enroll("   ", [])
    assert store.load_matrix("m1").names.count("Caroline") == 1


def test_unknown_person_suggests_names(store):
    store.add_person("Jennifer")
    with pytest.raises(GalleryError, match="Did you mean 'Jennifer'"):
        store.get_person("Jenifer")
    with pytest.raises(GalleryError, match="No person"):
        store.delete_person("nobody at all")
    with pytest.raises(GalleryError):
        store.rename_person("ghost", "x")


def test_delete_removes_every_trace(store):
    rng = np.random.default_rng(5)
    chip = b"\xff\xd8fake-jpeg"
    e1, e2 = emb(unit(rng, 1)[0], chip=chip), emb(unit(rng, 1)[0], chip=chip)
    keep = emb(unit(rng, 1)[0], chip=chip)
    p, _ = store.enroll("Eve", [e1, e2])
    store.enroll("Frank", [keep])
    assert len(list(store.iter_chips("m1"))) == 3
    v = store.version()
    store.delete_person("Eve")
    assert store.version() > v
    assert store.find_person("Eve") is None and store.find_person(p.id) is None
    assert store.owner_of("m1", e1.hash) is None
    assert [c[1] for c in store.iter_chips("m1")] == [keep.hash]
    m = store.load_matrix("m1")
    assert m.names == ["Frank"] and len(m.matrix) == 1
    assert store.model_counts() == {"m1": 1}
    # The name is free again and re-enrolling the same photo works (no stale hash).
    p2, added = store.enroll("Eve", [e1])
    assert added == 1 and p2.id != p.id


def test_export_delete_model_clear(store):
    rng = np.random.default_rng(6)
    store.enroll("G", [emb(unit(rng, 1)[0], chip=b"jpg1")], {"k": "v"})
    store.enroll("G", [emb(unit(rng, 1, 64)[0], model="old", chip=b"jpg2")])
    exported = {p.name: (p, embs) for p, embs in store.export_people()}
    assert set(exported) == {"G"} and len(exported["G"][1]) == 2
    assert {e.model_id for e in exported["G"][1]} == {"m1", "old"}
    assert all(e.chip for e in exported["G"][1])
    assert store.delete_model("old") == 1
    assert store.model_counts() == {"m1": 1}
    assert store.get_person("G").n_embeddings == 1
    store.clear()
    assert store.list_people() == [] and store.model_counts() == {}


def test_bulk_import(store):
    rng = np.random.default_rng(7)
    from facestream.gallery.types import Person

    vecs = unit(rng, 50)
    items = [(Person(f"id{i}", f"P{i}", {"n": i}), [emb(vecs[i])]) for i in range(50)]
    assert store.import_people(items, batch=16) == 50
    assert len(store.list_people()) == 50
    m = store.load_matrix("m1")
    assert len(m.person_ids) == 50
    assert store.get_person("P7").metadata == {"n": 7}
    # Importing again is idempotent.
    store.import_people(items, batch=16)
    assert store.load_matrix("m1").matrix.shape == (50, 128)


def test_bad_urls(tmp_path):
    with pytest.raises(GalleryError, match="not one facestream knows"):
        open_store("mongodb://x")
    with pytest.raises(GalleryError, match="Cannot reach the Redis gallery"):
        open_store("redis://127.0.0.1:1/0")
    (tmp_path / "notdb.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(GalleryError):
        open_store(f"sqlite://{tmp_path}/notdb.db").list_people()


def test_archive_round_trip_between_stores(store, tmp_path):
    """Export from one store, import into the other kind: same people, vectors, chips; idempotent."""
    from facestream.gallery.archive import export_gallery, import_gallery
    from facestream.gallery.types import NewEmbedding

    rng = np.random.default_rng(8)
    store.enroll("Hana", [emb(x, chip=b"chip-a") for x in unit(rng, 2)], {"group": "A"})
    store.enroll("Ivo", [emb(unit(rng, 1)[0])])
    store.enroll("Ivo", [NewEmbedding(unit(rng, 1, 64)[0], "other", "h-other", b"chip-b", "x.jpg")])
    manifest = export_gallery(store, tmp_path / "g.zip")
    assert manifest["people"] == 2 and manifest["embeddings"] == 4
    assert set(manifest["models"]) == {"m1", "other"}
    target = open_store(f"sqlite://{tmp_path}/copy.db")
    import_gallery(target, tmp_path / "g.zip")
    import_gallery(target, tmp_path / "g.zip")  # twice: nothing doubles
    assert [(p.name, p.n_embeddings) for p in target.list_people()] == [("Hana", 2), ("Ivo", 2)]
    assert target.get_person("Hana").metadata == {"group": "A"}
    assert target.get_person("Hana").id == store.get_person("Hana").id
    a, b = store.load_matrix("m1"), target.load_matrix("m1")
    assert sorted(a.person_ids) == sorted(b.person_ids)
    assert sorted(map(bytes, a.matrix)) == sorted(map(bytes, b.matrix))
    assert sorted(c[3] for c in target.iter_chips("m1")) == [b"chip-a", b"chip-a"]
    assert target.model_counts() == {"m1": 3, "other": 1}


def test_archive_bad_files(tmp_path, store):
    import zipfile

    from facestream.gallery.archive import import_gallery

    with pytest.raises(GalleryError, match="not found"):
        import_gallery(store, tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(GalleryError, match="damaged"):
        import_gallery(store, tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("manifest.json", '{"format": "something-else", "version": 1}')
        zf.writestr("people.json", "[]")
    with pytest.raises(GalleryError, match="format"):
        import_gallery(store, tmp_path / "other.zip")
    assert store.list_people() == []


def test_negatives_are_kept_undone_exported_and_deleted_with_the_person(store, tmp_path):
    """A "not this person" face: stored apart from the person's photos, listed, undoable, carried by an
    archive, and gone with the person."""
    from facestream.gallery.archive import export_gallery, import_gallery

    rng = np.random.default_rng(9)
    v = unit(rng, 3)
    person, _ = store.enroll("Nina", [emb(v[0])])
    other = emb(v[1], chip=b"jpg-other", tag="camera:cam0#12")
    before = store.version()
    p, added = store.add_negative("nina", other)
    assert added and p.id == person.id and store.version() > before
    assert store.add_negative("Nina", other)[1] is False  # idempotent
    assert [n.hash for n in store.negatives_of("Nina")] == [other.hash]
    assert store.negatives_of("Nina")[0].has_chip and store.negatives_of("Nina")[0].source == "camera:cam0#12"
    assert store.get_person("Nina").n_embeddings == 1  # a negative is no photo of hers
    m = store.load_matrix("m1")
    assert m.negatives.shape == (1, 128) and m.names[m.negative_person[0]] == "Nina"
    assert np.allclose(m.negatives[0], v[1])
    # the same face may be someone else's photo
    store.enroll("Olga", [emb(v[1], tag="camera:cam0#12")])
    assert store.owner_of("m1", other.hash) == store.get_person("Olga").id
    # archive round trip keeps it a negative
    export_gallery(store, tmp_path / "g.zip")
    copy = open_store(f"sqlite://{tmp_path}/copy.db")
    import_gallery(copy, tmp_path / "g.zip")
    assert [n.hash for n in copy.negatives_of("Nina")] == [other.hash]
    assert copy.get_person("Nina").n_embeddings == 1 and copy.get_person("Olga").n_embeddings == 1
    copy.close()
    # undo, then delete the person: nothing left
    assert store.remove_negative("Nina", "m1", other.hash) and not store.remove_negative("Nina", "m1", other.hash)
    assert store.negatives_of("Nina") == [] and store.load_matrix("m1").negatives.shape[0] == 0
    store.add_negative("Nina", other)
    store.delete_person("Nina")
    assert store.load_matrix("m1").negatives.shape[0] == 0
    with pytest.raises(GalleryError, match="No person"):
        store.negatives_of("Nina")
    with pytest.raises(GalleryError, match="No person"):
        store.add_negative("Nina", other)


def test_one_embedding_is_removed_and_settings_are_shared(store):
    rng = np.random.default_rng(10)
    v = unit(rng, 2)
    store.enroll("Pia", [emb(v[0], chip=b"a"), emb(v[1], chip=b"b")])
    assert store.remove_embedding("Pia", "m1", emb(v[1]).hash)
    assert not store.remove_embedding("Pia", "m1", emb(v[1]).hash)
    assert store.get_person("Pia").n_embeddings == 1 and store.owner_of("m1", emb(v[1]).hash) is None
    assert [c[1] for c in store.iter_chips("m1")] == [emb(v[0]).hash]
    assert store.get_setting("operating_point:m1") is None
    before = store.version()
    store.set_setting("operating_point:m1", {"far": 0.01, "shift": 0.004})
    assert store.version() > before
    other = open_store(store.url)  # another process sees it
    assert other.get_setting("operating_point:m1") == {"far": 0.01, "shift": 0.004}
    assert other.load_matrix("m1").settings == {"operating_point": {"far": 0.01, "shift": 0.004}}
    other.set_setting("operating_point:m1", None)
    assert store.get_setting("operating_point:m1") is None and store.load_matrix("m1").settings == {}
    other.close()
