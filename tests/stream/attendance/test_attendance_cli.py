"""``facestream attendance``: the real CLI over a real SQLite gallery (people with metadata)."""

from __future__ import annotations

import csv
import io

import pytest

from facestream.gallery import open_store
from facestream.stream.attendance import open_attendance_store
from facestream.stream.cli import main


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path}/gallery.db"
    with open_store(url) as g:
        g.add_person("Lin-Manuel Miranda", {"group": "hamilton"})
        g.add_person("Alex Lacamoire", {"group": "hamilton", "tags": ["band"]})
        g.add_person("Joe Biden", {"group": "guests"})
    return url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_start_list_show_stop_report(url, tmp_path, capsys):
    opt = ["--set", f"gallery.url={url}"]
    rc, out, err = run(capsys, "attendance", "start", "rehearsal", "--roster", "group=hamilton", "--people",
                       "Joe Biden", "--camera", "cam0", "--duration", "90m", "--late-after", "5", *opt)
    assert rc == 0, err
    assert "3 expected" in out and "cam0" in out
    # the roster is frozen in the session; a person recorded in it shows in every view
    store = open_attendance_store(url)
    lin = next(r for r in store.get_session("rehearsal").roster if r.name == "Lin-Manuel Miranda")
    s = store.get_session("rehearsal")
    store.upsert("rehearsal", lin.person_id, lin.name, True, s.start + 1, s.start + 2, "cam0", 0.81)
    rc, out, _ = run(capsys, "attendance", "list", *opt)
    assert rc == 0 and "rehearsal" in out and "active" in out
    rc, out, _ = run(capsys, "attendance", "show", *opt)
    assert rc == 0 and "present 1, late 0, absent 2" in out
    # overlapping session on the same camera: refused with the fix
    rc, _, err = run(capsys, "attendance", "start", "other", "--people", "Joe Biden", "--camera", "cam0", *opt)
    assert rc == 2 and "overlaps session 'rehearsal'" in err and "attendance stop" in err
    rc, out, _ = run(capsys, "attendance", "stop", *opt)
    assert rc == 0 and "'rehearsal' ended" in out
    rc, out, _ = run(capsys, "attendance", "report", *opt)  # latest session, CSV to stdout
    rows = list(csv.DictReader(io.StringIO(out.split("# unknown")[0])))
    assert {r["name"]: r["status"] for r in rows} == {
        "Alex Lacamoire": "absent", "Joe Biden": "absent", "Lin-Manuel Miranda": "present"}
    out_csv, out_xlsx = tmp_path / "r.csv", tmp_path / "r.xlsx"
    rc, _, err = run(capsys, "attendance", "report", "rehearsal", "--csv", str(out_csv), "--xlsx", str(out_xlsx), *opt)
    assert rc == 0 and out_csv.read_text().startswith("session,person_id,name")
    from openpyxl import load_workbook

    assert load_workbook(out_xlsx)["attendance"].max_row == 4
    rc, out, _ = run(capsys, "attendance", "delete", "rehearsal", *opt)
    assert rc == 0 and store.get_session("rehearsal") is None


def test_bad_input_is_one_clear_line(url, capsys):
    opt = ["--set", f"gallery.url={url}"]
    rc, _, err = run(capsys, "attendance", "report", *opt)
    assert rc == 2 and "No attendance sessions" in err and "Traceback" not in err
    rc, _, err = run(capsys, "attendance", "start", "x", "--people", "Nobody, Joe Biden", *opt)
    assert rc == 2 and "not enrolled: Nobody" in err
    rc, _, err = run(capsys, "attendance", "start", "x", "--roster", "group=nobody", *opt)
    assert rc == 2 and "group=nobody" in err
    rc, _, err = run(capsys, "attendance", "start", "x", "--people", "Joe Biden", "--duration", "soon", *opt)
    assert rc == 2 and "Bad duration" in err
    rc, _, err = run(capsys, "attendance", "start", "x", "--people", "Joe Biden", "--start", "25:99", *opt)
    assert rc == 2 and "Bad time" in err
    rc, _, err = run(capsys, "attendance", "start", "x", "--people", "Joe Biden", "--late-after", "-5", *opt)
    assert rc == 2 and "late delay of -5 min" in err and "Traceback" not in err
    run(capsys, "attendance", "start", "x", "--people", "Joe Biden", *opt)
    rc, _, err = run(capsys, "attendance", "show", "y", *opt)
    assert rc == 2 and "Unknown attendance session 'y'" in err and "Known sessions: x" in err
    rc, _, err = run(capsys, "attendance", "report", "x", "--csv", "/nonexistent/dir/r.csv", *opt)
    assert rc == 2 and "Cannot write the report" in err


def test_people_delete_removes_their_attendance_too(url, capsys):
    opt = ["--set", f"gallery.url={url}"]
    assert run(capsys, "attendance", "start", "s", "--roster", "group=hamilton", *opt)[0] == 0
    store = open_attendance_store(url)
    s = store.get_session("s")
    lin = next(r for r in s.roster if r.name == "Lin-Manuel Miranda")
    store.upsert("s", lin.person_id, lin.name, True, s.start, s.start, "cam0", 0.9, b"\xff\xd8jpeg")
    rc, out, err = run(capsys, "people", "delete", "Lin-Manuel Miranda", "--gallery", url)
    assert rc == 0, err
    assert "deleted Lin-Manuel Miranda" in out and "attendance in 1 session(s)" in out
    assert store.records("s") == [] and store.snapshot("s", lin.person_id) is None
    assert [r.name for r in store.get_session("s").roster] == ["Alex Lacamoire"]


def test_every_attendance_command_takes_gallery(url, capsys):
    """--gallery names the store, as for every command that reads the gallery."""
    rc, out, err = run(capsys, "attendance", "start", "standup", "--roster", "group=guests", "--gallery", url)
    assert rc == 0, err
    for argv in (["list"], ["show", "standup"], ["report", "standup"], ["stop", "standup"]):
        rc, out, err = run(capsys, "attendance", *argv, "--gallery", url)
        assert rc == 0 and "standup" in out + err, (argv, err)
    rc, out, err = run(capsys, "attendance", "delete", "standup", "--gallery", url)
    assert rc == 0 and open_attendance_store(url).get_session("standup") is None
