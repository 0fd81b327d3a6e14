"""Input made to hurt: decompression bombs, zip bombs and forged archives, drip-feeding and private roster URLs,
ids that confuse Redis keys, numbers that break JSON, names that are spreadsheet formulas (issue 13, items 3-5, 7,
9, 10). Real files, real stores (SQLite and a real redis-server), real HTTP servers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.gallery.archive import export_gallery, import_gallery
from facestream.gallery.errors import GalleryError
from facestream.gallery.types import Person
from facestream.stream.recognition.download import fetch_url
from tests.cli import facestream
from tests.conftest import EXAMPLES, ROOT
from tests.gallery.conftest import emb, unit
from tests.stream.demo.test_demo import huge_png


def test_a_decompression_bomb_is_refused_by_the_cli_before_decoding(tmp_path):
    bomb = huge_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 400_000
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", f"""
import sys
from facestream.stream.cli import main
code = main(["detect", "{bomb}"])
# VmHWM: this process image's peak (ru_maxrss would carry the forking pytest's own peak across exec)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) // 1024, file=sys.stderr)
sys.exit(code)"""], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "more than the 50 Mpx facestream reads" in out.stderr
    peak_mb = int(out.stderr.strip().splitlines()[-1])
    assert peak_mb < 1500, f"peak memory {peak_mb} MB"  # the models are loaded; 1.2 GB of pixels are not
    assert time.monotonic() - start < 120


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/g.db" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    s = open_store(url)
    yield s
    s.close()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_person_id_with_a_separator_is_refused_everywhere(store, tmp_path):
    """Redis keeps embeddings under "<person id>|<hash>": an id holding "|" made the matcher credit another
    person. One rule for every way in: enrolment, bulk import, archives, rosters."""
    rng = np.random.default_rng(1)
    for bad in ("alice|evil", "a:b", "../x", "x" * 65, "white space"):
        with pytest.raises(GalleryError, match="is not valid"):
            store.enroll("Alice", [emb(unit(rng, 1)[0])], person_id=bad)
        with pytest.raises(GalleryError, match="is not valid"):
            store.import_people([(Person(bad, "Bob"), [emb(unit(rng, 1)[0])])])
    assert store.list_people() == []
    roster = tmp_path / "roster.csv"
    roster.write_text(f"name,photo,id\nMallory,{EXAMPLES / 'Joe_Biden' / 'biden.jpg'},mallory|alice\n")
    out = facestream("enroll", roster, "--gallery", f"sqlite:///{tmp_path}/r.db", "--quiet", "--allow-local")
    assert out.returncode == 2 and "is not valid" in out.stderr and "Traceback" not in out.stderr


def _archive(tmp_path, people: list, vectors: np.ndarray, extra: dict | None = None) -> str:
    path = tmp_path / "forged.zip"
    buf = io.BytesIO()
    np.save(buf, vectors.astype(np.float32), allow_pickle=False)
    manifest = {"format": "facestream-gallery", "version": 2, "people": len(people), "embeddings": len(vectors),
                "models": {"m1": {"file": "embeddings/0.npy", "dim": vectors.shape[1], "count": len(vectors)}}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("people.json", json.dumps(people))
        zf.writestr("embeddings/0.npy", buf.getvalue())
        for name, data in (extra or {}).items():
            zf.writestr(name, data, zipfile.ZIP_DEFLATED)
    return str(path)


def test_forged_archives_are_refused_whole_with_one_message(store, tmp_path):
    vectors = unit(np.random.default_rng(2), 2)
    good = {"id": "p1", "name": "Ann", "metadata": {"group": "a", "tags": ["x", "y"]}, "created": 1.0,
            "embeddings": [{"model_id": "m1", "hash": "aa11", "row": 0}]}
    import_gallery(store, _archive(tmp_path, [good], vectors))  # the baseline is fine (list metadata included)
    store.clear()
    forged = [
        ({**good, "embeddings": [{"model_id": "m1", "hash": "aa11", "row": -1}]}, "embeddings\\[0\\]"),
        ({**good, "embeddings": [{"model_id": "m1", "hash": "aa11", "row": 7}]}, "embeddings\\[0\\]"),
        ({**good, "created": "yesterday"}, "created"),
        ({**good, "metadata": {"x": {"nested": 1}}}, "holds a dict"),
        ({**good, "metadata": ["a", "b"]}, "key/value pairs"),
        ({**good, "id": "p1|p2"}, "is not valid"),
        ({**good, "embeddings": [{"model_id": "other", "hash": "aa11", "row": 0}]}, "embeddings\\[0\\]"),
        ("just a string", "a person"),
    ]
    for person, message in forged:
        with pytest.raises(GalleryError, match=message):
            import_gallery(store, _archive(tmp_path, [good, person], vectors))
        assert store.list_people() == []  # nothing half-imported: Ann (valid) was not written either


def test_a_zip_bomb_archive_is_refused_before_it_inflates(store, tmp_path):
    """people.json that inflates from ~400 kB to 400 MB: refused from the zip directory."""
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps({"format": "facestream-gallery", "version": 2, "models": {}}))
        with zf.open("people.json", "w") as fh:
            fh.write(b"[")
            chunk = b" " * (1 << 20)
            for _ in range(400):
                fh.write(chunk)
            fh.write(b"]")
    assert path.stat().st_size < 1_000_000
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(GalleryError, match="zip bomb"):
        import_gallery(store, path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 100  # MB


class _Handler(BaseHTTPRequestHandler):
    hits = 0
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):  # one byte every 0.2 s: each read is quick, the whole never ends
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/huge":
            self.send_response(200)
            self.end_headers()
            block = b"\0" * (1 << 20)
            try:
                for _ in range(40):
                    self.wfile.write(block)
            except OSError:
                pass
        elif self.path == "/slow-headers":  # a status line, then a header one byte every 0.2 s
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        elif self.path == "/count":
            type(self).hits += 1
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secret")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/secret")
            self.end_headers()


@pytest.fixture(scope="module")
def web():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_roster_downloads_have_a_deadline_a_size_cap_and_a_private_address_policy(web):
    start = time.monotonic()
    with pytest.raises(FacestreamError, match="took longer than 2 s"):
        fetch_url(web + "/drip", timeout=5, deadline=2)
    assert time.monotonic() - start < 5  # the total deadline, not a per-read timeout
    with pytest.raises(FacestreamError, match="larger than 25 MB"):
        fetch_url(web + "/huge")
    with pytest.raises(FacestreamError, match="private or local address"):
        fetch_url(web + "/huge", allow_private=False)  # 127.0.0.1: a server must not fetch its own services
    with pytest.raises(FacestreamError, match="only http\\(s\\) URLs"):
        fetch_url("file:///etc/passwd")
    with pytest.raises(FacestreamError, match="private or local address"):
        fetch_url("http://169.254.169.254/latest/meta-data/", allow_private=False)  # cloud metadata
    start = time.monotonic()
    with pytest.raises(FacestreamError, match="took longer than 2 s"):
        fetch_url(web + "/slow-headers", timeout=5, deadline=2)  # headers that never end: the same deadline
    assert time.monotonic() - start < 4


def test_a_download_connects_to_the_address_it_checked(web, monkeypatch):
    """DNS rebinding: the name resolves to a public address when checked, then to 127.0.0.1. The download
    must go to the address it checked (which fails here: no network), never to the local service."""
    import socket

    port = int(web.rsplit(":", 1)[1])
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.7", port))]])
    local = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: next(answers, local))
    before = _Handler.hits
    with pytest.raises(FacestreamError, match="Cannot download"):
        fetch_url(f"http://rebind.example:{port}/count", timeout=1, deadline=2, allow_private=False)
    assert _Handler.hits == before  # the local service never saw the request


def test_numbers_that_break_json_never_leave_the_process(tmp_path):
    from facestream import wire
    from facestream.stream.attendance import create_session, open_attendance_store

    assert json.loads(wire.dumps({"a": float("inf"), "b": [float("nan"), np.float32("nan")], "c": 1.5})) == \
        {"a": None, "b": [None, None], "c": 1.5}
    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    people = [Person("p1", "Ann", {"group": "a"})]
    for late in (float("inf"), 1e308, float("nan"), -1.0):
        with pytest.raises(FacestreamError, match="late delay"):
            create_session(store, lambda: people, "s", roster="group=a", late_after_s=late)
    with pytest.raises(FacestreamError, match="start or end that is not a time"):
        create_session(store, lambda: people, "s", roster="group=a", end=float("inf"))
    with pytest.raises(GalleryError, match="not a number a reader can parse"):
        open_store(f"sqlite:///{tmp_path}/g.db").enroll("Ann", [], {"score": float("nan")})
    store.close()


def test_a_name_that_is_a_formula_stays_text_in_both_reports(tmp_path):
    from openpyxl import load_workbook

    from facestream.stream.attendance import create_session, open_attendance_store, to_csv, to_xlsx

    evil = "=cmd|' /C calc'!A0"
    store = open_attendance_store(f"sqlite:///{tmp_path}/g.db")
    people = [Person("p1", evil, {"group": "a"}), Person("p2", "+SUM(1,1)", {"group": "a"}),
              Person("p3", "@HYPERLINK(\"http://x\")", {"group": "a"}), Person("p4", "\t-2+3", {"group": "a"})]
    session = create_session(store, lambda: people, "evil session", roster="group=a")  # names are checked
    att = store.attendance(session)
    import csv

    rows = list(csv.DictReader(io.StringIO(to_csv(att).decode().split("# unknown")[0])))
    assert {r["name"] for r in rows} == {"'" + p.name for p in people}  # a leading quote: shown as text
    wb = load_workbook(io.BytesIO(to_xlsx(att)))
    cells = [c for row in wb["attendance"].iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    assert {c.value for c in cells} >= {"'" + p.name for p in people}
    store.close()


def test_exporting_and_importing_keeps_what_validation_allows(store, tmp_path):
    rng = np.random.default_rng(3)
    store.enroll("Ann", [emb(unit(rng, 1)[0])], {"tags": ["a", "b"], "n": 3, "ok": True})
    export_gallery(store, tmp_path / "g.zip")
    copy = open_store(f"sqlite:///{tmp_path}/copy.db")
    import_gallery(copy, tmp_path / "g.zip")
    assert copy.get_person("Ann").metadata == {"tags": ["a", "b"], "n": 3, "ok": True}
    copy.close()


def test_an_archive_claims_no_more_than_its_data_model_allows(store, tmp_path):
    """Issue 22, item 8: a 2 MB archive once drove an import to 904 MB. Each member is now held to what the
    manifest and the data model allow before anything is read; a people.json bomb under the zip-bomb ratio
    is refused with little memory, and so are lying vector counts, stray members and giant chips."""
    import tracemalloc

    vectors = unit(np.random.default_rng(3), 2)
    good = {"id": "p1", "name": "Ann", "metadata": {}, "embeddings": [{"model_id": "m1", "hash": "aa11", "row": 0}]}
    # ~50 MB of people, deflated ~50x: below the 200x zip-bomb rule, far above what 2 embeddings allow
    rng = np.random.default_rng(4)
    people = [json.dumps({**good, "name": rng.bytes(12).hex() + "A" * 170, "metadata": {"k": "v" * 900}}).encode()
              for _ in range(45000)]
    path = tmp_path / "people-bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps({"format": "facestream-gallery", "version": 2, "people": 45000,
                                                 "models": {"m1": {"file": "embeddings/0.npy", "dim": 128,
                                                                   "count": 2}}}))
        buf = io.BytesIO()
        np.save(buf, vectors.astype(np.float32), allow_pickle=False)
        zf.writestr("embeddings/0.npy", buf.getvalue(), zipfile.ZIP_STORED)
        with zf.open("people.json", "w") as fh:
            fh.write(b"[" + b",".join(people) + b"]")
    assert path.stat().st_size < 3_000_000
    tracemalloc.start()
    with pytest.raises(GalleryError, match="people.json .* larger than 1 model"):
        import_gallery(store, path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20, peak  # the directory was read, people.json never was
    # a manifest that lies about its vectors, a stray member, a "chip" of 1 MB
    big = {"m1": {"file": "embeddings/0.npy", "dim": 128, "count": 1_000_000}}
    with pytest.raises(GalleryError, match="is not 1000000 x 128 float32 vectors"):
        import_gallery(store, _archive_with(tmp_path, [good], vectors, models=big))
    with pytest.raises(GalleryError, match="not part of a gallery archive"):
        import_gallery(store, _archive(tmp_path, [good], vectors, {"../../etc/cron.d/x": b"* * * * * evil"}))
    with pytest.raises(GalleryError, match="is not a face chip"):
        import_gallery(store, _archive(tmp_path, [good], vectors, {"chips/0/aa11.jpg": rng.bytes(1 << 20)}))
    assert store.list_people() == []


def _archive_with(tmp_path, people: list, vectors: np.ndarray, models: dict) -> str:
    path = tmp_path / "lying.zip"
    buf = io.BytesIO()
    np.save(buf, vectors.astype(np.float32), allow_pickle=False)
    manifest = {"format": "facestream-gallery", "version": 2, "people": len(people), "models": models}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("people.json", json.dumps(people))
        zf.writestr("embeddings/0.npy", buf.getvalue())
    return str(path)
