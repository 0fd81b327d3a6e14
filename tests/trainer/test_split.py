"""Identity splits on synthetic chip sets: disjoint, reproducible, and clear about bad input."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.trainer.data import ChipSet, ScanReport, scan_identity_folders, split_by_identity


def fake_set(per_identity: list[int]) -> ChipSet:
    labels = np.repeat(np.arange(len(per_identity)), per_identity)
    n = len(labels)
    return ChipSet(
        chips=np.zeros((n, 4, 4, 3), np.uint8), labels=labels, names=[f"p{i:03d}" for i in range(len(per_identity))],
        paths=[f"/x/{i}.jpg" for i in range(n)], digests=[f"{i:064x}" for i in range(n)], prep_key="k",
    )


def test_split_is_disjoint_complete_and_reproducible():
    data = fake_set([3] * 40 + [1] * 5)
    a = split_by_identity(data, seed=7)
    b = split_by_identity(data, seed=7)
    c = split_by_identity(data, seed=8)
    names = {s: set(cs.names) for s, cs in a.items()}
    assert not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    assert not (names["train"] & names["val"])
    assert sum(len(cs) for cs in a.values()) == len(data)
    assert 5 <= len(names["test"]) <= 20 and 2 <= len(names["val"]) <= 14  # hash buckets of 25% and 15%
    assert {s: cs.names for s, cs in a.items()} == {s: cs.names for s, cs in b.items()}
    assert a["test"].names != c["test"].names
    assert a["test"].fingerprint() == b["test"].fingerprint() != c["test"].fingerprint()
    # labels are renumbered densely per split
    assert set(a["test"].labels.tolist()) == set(range(len(a["test"].names)))


def test_adding_or_removing_people_moves_nobody_else():
    """Each person's split is a fixed hash bucket: data that grows (or shrinks) never reshuffles the others."""

    def where(cs: dict) -> dict[str, str]:
        return {n: s for s, part in cs.items() for n in part.names}

    base = where(split_by_identity(fake_set([3] * 60), seed=1))
    for grown in (fake_set([3] * 61), fake_set([3] * 90), fake_set([3] * 50)):
        now = where(split_by_identity(grown, seed=1))
        assert {n: s for n, s in now.items() if n in base} == {n: s for n, s in base.items() if n in now}
    # a person gaining photos stays where they were
    more = fake_set([3] * 59 + [7])
    assert where(split_by_identity(more, seed=1))["p059"] == base["p059"]


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(FacestreamError, match="two or more usable images"):
        split_by_identity(fake_set([5, 1, 1]), seed=0)


def test_scan_reports_empty_folder_and_missing_root(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "a.jpg").write_bytes(b"x")
    (tmp_path / "bob").mkdir()
    (tmp_path / "_extra").mkdir()
    from facestream.trainer.data import ScanReport

    rep = ScanReport()
    items = scan_identity_folders([tmp_path], rep)
    assert [n for n, _ in items] == ["alice"]
    assert rep.empty_folders == [str(tmp_path / "bob")]
    with pytest.raises(FacestreamError, match="does not exist"):
        scan_identity_folders([tmp_path / "nope"])
    with pytest.raises(FacestreamError, match="no identity folders"):
        scan_identity_folders([tmp_path / "_extra"])


def test_pgm_identity_folders_are_scanned(tmp_path):
    """An AT&T/ORL-style set (PGM files, one folder per person) is training data, not 'no images'."""
    from PIL import Image

    from tests.conftest import EXAMPLES

    for person, photo in (("s1", EXAMPLES / "Joe_Biden" / "biden.jpg"),
                          ("s2", EXAMPLES / "Barack_Obama" / "obama.jpg")):
        (tmp_path / person).mkdir()
        Image.open(photo).convert("L").save(tmp_path / person / "1.pgm")
    report = ScanReport()
    items = scan_identity_folders([tmp_path], report)
    assert [(n, p.name) for n, p in items] == [("s1", "1.pgm"), ("s2", "1.pgm")] and not report.empty_folders
