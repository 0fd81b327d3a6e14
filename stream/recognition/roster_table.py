"""Roster files: a CSV or XLSX table of people (one row per photo), and which columns hold what."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from facestream.errors import FacestreamError

NAME_COLUMNS = ("name", "full name", "full_name", "display name", "display_name", "student", "person")
PHOTO_COLUMNS = ("photo", "photo_url", "photo url", "image", "image_url", "picture", "url", "path", "file")
ID_COLUMNS = ("id", "person_id")


def pick_column(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    if wanted:
        for col in header:
            if col.strip().casefold() == wanted.strip().casefold():
                return col
        raise FacestreamError(f"{path} has no column {wanted!r} (columns: {', '.join(header) or 'none'}).",
                              f"Pass the right --{what}-column.")
    for cand in candidates:
        for col in header:
            if col.strip().casefold() == cand:
                return col
    raise FacestreamError(
        f"{path} has no {what} column (columns: {', '.join(repr(h) for h in header) or 'none'}).",
        f"Name a column {candidates[0]!r} or pass --{what}-column COLUMN.")


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV/TSV (delimiter sniffed) or the first sheet of an XLSX."""
    if not path.is_file():
        raise FacestreamError(f"Roster not found: {path}.", "Check the path.")
    if path.suffix.lower() == ".xlsx":
        try:
            import openpyxl

            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            table = [["" if c is None else str(c) for c in row] for row in wb.worksheets[0].iter_rows(values_only=True)]
            wb.close()
        except Exception as exc:  # openpyxl raises many types for a damaged file
            raise FacestreamError(f"Cannot read the spreadsheet {path} ({exc}).", "Save it again as .xlsx or .csv.") \
                from None
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise FacestreamError(f"Cannot read the roster {path} ({exc}).", "Save it as UTF-8 CSV.") from None
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        table = list(csv.reader(io.StringIO(text), dialect))
    table = [r for r in table if any(str(c).strip() for c in r)]
    if not table:
        raise FacestreamError(f"The roster {path} is empty.", "Add a header row (name, photo) and one row per photo.")
    header = [h.strip() for h in table[0]]
    return header, [dict(zip(header, r + [""] * (len(header) - len(r)), strict=False)) for r in table[1:]]

