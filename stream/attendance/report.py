"""Attendance reports: one row per person (roster first, then people not on it), CSV or XLSX.

The dashboard's report download and ``facestream attendance report`` both use
:func:`report_rows`, so the file always says what the page showed.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from facestream.stream.attendance.model import Attendance

# A cell starting with one of these is a formula to a spreadsheet: "=cmd|' /C calc'!A0" as a person's name
# must stay text (OWASP's CSV injection advice: prefix a quote).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(value: Any) -> Any:
    """A cell value that no spreadsheet runs: strings that look like formulas get a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


COLUMNS = ["session", "person_id", "name", "on_roster", "status", "first_seen", "last_seen", "camera",
           "best_similarity"]


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def report_rows(att: Attendance) -> list[dict[str, Any]]:
    """Roster people (present, late, absent) then everyone recognised who was not on the roster."""
    rows = []
    for row in att.roster + att.extra:
        sim = row.get("best_similarity")
        rows.append({
            "session": att.session.name, "person_id": row["person_id"], "name": row["name"],
            "on_roster": "yes" if row["on_roster"] else "no",
            "status": row["status"] if row["on_roster"] else f"{row['status']} (not on roster)",
            "first_seen": _iso(row["first_seen"]), "last_seen": _iso(row["last_seen"]),
            "camera": row["camera"] or "", "best_similarity": "" if sim is None else f"{sim:.4f}",
        })
    return rows


def to_csv(att: Attendance) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: as_text(v) for k, v in row.items()} for row in report_rows(att))
    buf.write(f"# unknown faces,{att.unknown}\n")
    return buf.getvalue().encode("utf-8")


def to_xlsx(att: Attendance) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "attendance"
    ws.append(COLUMNS)
    for row in report_rows(att):
        ws.append([as_text(row[c]) for c in COLUMNS])
    info = wb.create_sheet("session")
    s = att.session
    for key, value in [("session", s.name), ("kind", s.kind), ("cameras", ", ".join(s.cameras) or "all"),
                       ("roster", s.selector), ("start", _iso(s.start)), ("end", _iso(s.end)),
                       ("late after (min)", s.late_after_s / 60), *att.counts().items()]:
        info.append([key, as_text(value)])
    for sheet in wb.worksheets:  # text stays text: openpyxl would store "=..." as a formula
        for cells in sheet.iter_rows():
            for cell in cells:
                if isinstance(cell.value, str):
                    cell.data_type = "s"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
