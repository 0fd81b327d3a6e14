"""Erasing a person: every trace, from every store, by one function every path uses.

A face recognizer holds biometric data; "delete" must mean gone: the gallery's
embeddings, face chips and negatives, and attendance's records, roster places and
face snapshots. The CLI (``people delete``), the demo and the HTTP API all call
:func:`erase_person`. Attendance goes first and the gallery last, so a failure half
way leaves the person findable by name and the same command, run again, finishes
the job. Both SQLite files overwrite deleted rows (``secure_delete``) and fold their
write-ahead log back into the file, so the bytes do not linger; Redis keeps deleted
data in its persistence files (RDB/AOF) until they are rewritten (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

from facestream.gallery.store import GalleryStore
from facestream.stream.attendance import open_attendance_store
from facestream.stream.attendance.store import AttendanceStore


@dataclass
class Erasure:
    """What was erased."""

    person_id: str
    name: str
    embeddings: int
    sessions: int

    def to_json(self) -> dict[str, str | int]:
        return {"deleted": self.person_id, "name": self.name, "embeddings": self.embeddings, "sessions": self.sessions}

    def describe(self) -> str:
        return (f"deleted {self.name} (id {self.person_id}): {self.embeddings} embedding(s), chips and corrections; "
                f"attendance in {self.sessions} session(s)")


def erase_person(gallery: GalleryStore, ref: str, attendance: AttendanceStore | None = None) -> Erasure:
    """Delete the person ``ref`` (name or id) from attendance, then from the gallery.

    Raises:
        FacestreamError: unknown person (with suggestions), or a store that cannot be written (run it again).
    """
    person = gallery.get_person(ref)
    store = attendance if attendance is not None else open_attendance_store(gallery.url)
    try:
        sessions = store.forget_person(person.id, person.name)
    finally:
        if attendance is None:
            store.close()
    gone = gallery.delete_person(person.id)
    return Erasure(gone.id, gone.name, gone.n_embeddings, sessions)
