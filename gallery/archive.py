"""Gallery export and import: one ``.zip`` file that moves a whole gallery between stores or machines.

File format (version 2; version 1 had no negatives and is still read), a zip archive holding::

    manifest.json          {"format": "facestream-gallery", "version": 1, "exported": <unix time>,
                            "people": <count>, "embeddings": <count>,
                            "models": {"<model_id>": {"file": "embeddings/<i>.npy", "dim": D, "count": N}}}
    people.json            [{"id", "name", "metadata", "created", "updated",
                             "embeddings": [{"model_id", "hash", "row", "source", "created",
                                             "chip": "chips/<i>/<hash>.jpg" or null,
                                             "negative": true for a "not this person" face}]}]
    embeddings/<i>.npy     float32 (N, D), one file per model; "row" indexes into it
    chips/<i>/<hash>.jpg   the aligned face chip behind each embedding (for re-embedding)

``<i>`` is the model's position in ``manifest.models`` (model ids may hold characters
unfit for file names). Vectors are L2-normalised. ``hash`` is the content hash that
keeps re-enrolment and re-import idempotent: importing the same file twice adds nothing.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from facestream.gallery.errors import GalleryError
from facestream.gallery.store import GalleryStore, check_metadata, check_name, check_person_id
from facestream.gallery.types import NewEmbedding, Person

FORMAT = "facestream-gallery"
VERSION = 2
READABLE = (1, 2)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def export_gallery(store: GalleryStore, path: str | Path) -> dict[str, Any]:
    """Write every person, embedding and chip of ``store`` to ``path``; returns the manifest."""
    path = Path(path)
    people: list[dict[str, Any]] = []
    vectors: dict[str, list[np.ndarray]] = {}
    chips: list[tuple[str, bytes]] = []
    model_index: dict[str, int] = {}
    for person, embs in store.export_people():
        items = []
        for e in embs:
            i = model_index.setdefault(e.model_id, len(model_index))
            rows = vectors.setdefault(e.model_id, [])
            chip_name = None
            if e.chip:  # a negative's chip gets its own name: the same face may be someone's photo too
                chip_name = f"chips/{i}/not-{person.id}-{e.hash}.jpg" if e.negative else f"chips/{i}/{e.hash}.jpg"
                chips.append((chip_name, e.chip))
            item = {"model_id": e.model_id, "hash": e.hash, "row": len(rows), "source": e.source,
                    "created": e.created, "chip": chip_name}
            if e.negative:
                item["negative"] = True
            items.append(item)
            rows.append(np.asarray(e.vector, np.float32).reshape(-1))
        people.append({"id": person.id, "name": person.name, "metadata": person.metadata,
                       "created": person.created, "updated": person.updated, "embeddings": items})
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "exported": time.time(), "people": len(people),
        "embeddings": sum(len(v) for v in vectors.values()),
        "models": {m: {"file": f"embeddings/{i}.npy", "dim": int(len(vectors[m][0])), "count": len(vectors[m])}
                   for m, i in model_index.items()},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
            zf.writestr("people.json", json.dumps(people), zipfile.ZIP_DEFLATED)
            for m, info in manifest["models"].items():
                zf.writestr(info["file"], _npy(np.stack(vectors[m])), zipfile.ZIP_STORED)
            for name, data in chips:
                zf.writestr(name, data, zipfile.ZIP_STORED)
        tmp.replace(path)  # a crash mid-export never leaves a truncated archive under the real name
    except OSError as exc:
        raise GalleryError(f"Cannot write the archive {path} ({exc}).", "Choose a writable path.") from None
    return manifest


# An archive is read whole before anything is written, so what it may claim is bounded, from the zip
# directory, before anything inflates: the whole (MAX_TOTAL) and any member (MAX_MEMBER); then, per kind of
# member, by what the data model allows: the manifest is small; the vectors are exactly count x dim float32
# (an .npy header besides) and barely compress (random-looking floats); a chip is a small JPEG; people.json
# holds at most PERSON_JSON bytes per person and EMBEDDING_JSON per embedding, and JSON is refused when it
# inflates more than JSON_RATIO times (a real people.json, of random hashes, deflates ~3x). People are at
# most the vectors' count plus EMPTY_PEOPLE (people enrolled without a photo are rare). Any other member is
# refused. Together: an archive of 10 MB cannot make the import hold much more than 100 MB.
MAX_RATIO = 200
MAX_MEMBER = 4 << 30
MAX_TOTAL = 32 << 30
MAX_MANIFEST = 1 << 20
MAX_CHIP = 256 << 10
NPY_HEADER = 4096
VECTOR_RATIO = 2.0
CHIP_RATIO = 4.0
JSON_RATIO = 8.0
PERSON_JSON = 2048
EMBEDDING_JSON = 1536
EMPTY_PEOPLE = 1000
MIN_DIM = 64
_HASH = re.compile(r"[0-9A-Za-z_-]{1,128}")


def read_archive(path: str | Path,
                 max_total: int = MAX_TOTAL) -> tuple[dict[str, Any], list[tuple[Person, list[NewEmbedding]]]]:
    """Parse and check an archive completely before anything is written to a store.

    Raises:
        GalleryError: not an archive, damaged, too large or too compressed, or a manifest or people file
            that does not hold what the format says (every field is checked).
    """
    path = Path(path)
    bad = "Export it again with `facestream gallery export`."
    if not path.is_file():
        raise GalleryError(f"Archive not found: {path}.", "Check the path.")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_sizes(zf, path, max_total)
            names = set(zf.namelist())
            if "manifest.json" not in names or "people.json" not in names:
                raise GalleryError(f"{path} is not a facestream gallery archive (no manifest/people).", bad)
            if zf.getinfo("manifest.json").file_size > MAX_MANIFEST:
                raise GalleryError(f"{path}: manifest.json is larger than a manifest can be.", bad)
            manifest = json.loads(zf.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
                    or manifest.get("version") not in READABLE:
                got = manifest if not isinstance(manifest, dict) else (manifest.get("format"), manifest.get("version"))
                raise GalleryError(f"{path} has format {got!r}; this facestream reads {FORMAT!r} version "
                                   f"{', '.join(map(str, READABLE))}.", bad)
            models = _models(manifest, names, path)
            _check_members(zf, path, models)
            people = json.loads(zf.read("people.json"))
            if not isinstance(people, list):
                raise _invalid(path, "people.json", "a list of people")
            if len(people) > sum(int(i["count"]) for i in models.values()) + EMPTY_PEOPLE:
                raise _invalid(path, "people.json", "one person per few embeddings (it lists more people than the "
                                                    "archive has vectors for)")
            matrices = {}
            for m, info in models.items():
                arr = np.load(io.BytesIO(zf.read(info["file"])), allow_pickle=False)
                if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape != (info["count"], info["dim"]):
                    raise GalleryError(f"{path}: {info['file']} has shape {arr.shape}, manifest says "
                                       f"({info['count']}, {info['dim']}).", bad)
                if not np.all(np.isfinite(arr)):
                    raise GalleryError(f"{path}: {info['file']} holds vectors that are not finite.", bad)
                matrices[m] = arr
            out = [_person(p, i, matrices, names, zf, path) for i, p in enumerate(people)]
    except GalleryError:
        raise
    except (zipfile.BadZipFile, KeyError, IndexError, ValueError, TypeError, OSError, EOFError) as exc:
        raise GalleryError(f"{path} is damaged or not a facestream gallery archive ({exc}).", bad) from None
    return manifest, out


def _check_sizes(zf: zipfile.ZipFile, path: Path, max_total: int) -> None:
    total = 0
    for info in zf.infolist():
        total += info.file_size
        if info.file_size > MAX_MEMBER or total > max_total:
            raise GalleryError(f"{path}: {info.filename} would unpack to {info.file_size >> 20} MB "
                               f"({total >> 20} MB so far), more than an archive may hold.",
                               "Split the gallery, or check where the archive came from.")
        if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise GalleryError(f"{path}: {info.filename} inflates {info.file_size // max(1, info.compress_size)}x "
                               f"({info.compress_size} bytes to {info.file_size >> 20} MB): a zip bomb, not a "
                               "gallery.", "Check where the archive came from.")


def _check_members(zf: zipfile.ZipFile, path: Path, models: dict[str, dict[str, Any]]) -> None:
    """Every member's size against what the manifest and the data model allow (before reading any of it)."""
    vectors = {info["file"]: info for info in models.values()}
    embeddings = sum(int(info["count"]) for info in models.values())
    budget = 64 * 1024 + PERSON_JSON * (embeddings + EMPTY_PEOPLE) + EMBEDDING_JSON * embeddings
    fix = "Export it again with `facestream gallery export`; check where the archive came from."

    def refuse(member: zipfile.ZipInfo, why: str) -> GalleryError:
        return GalleryError(f"{path}: {member.filename} ({member.file_size} bytes unpacked, "
                            f"{member.compress_size} packed) {why}.", fix)

    for member in zf.infolist():
        name, size, packed = member.filename, member.file_size, max(1, member.compress_size)
        if name == "manifest.json":
            continue
        if name == "people.json":
            if size > budget:
                raise refuse(member, f"is larger than {len(models)} model(s) of {embeddings} embeddings allow")
            if size > 64 * 1024 and size > JSON_RATIO * packed:
                raise refuse(member, f"inflates {size // packed}x: JSON of people does not compress that well")
        elif name in vectors:
            info = vectors[name]
            exact = int(info["count"]) * int(info["dim"]) * 4
            if not exact <= size <= exact + NPY_HEADER:
                raise refuse(member, f"is not {info['count']} x {info['dim']} float32 vectors, as the manifest says")
            if size > 64 * 1024 and size > VECTOR_RATIO * packed:
                raise refuse(member, f"inflates {size // packed}x: embeddings do not compress that well")
        elif name.startswith("chips/") and name.endswith(".jpg"):
            if size > MAX_CHIP or (size > 64 * 1024 and size > CHIP_RATIO * packed):
                raise refuse(member, "is not a face chip (too large, or compressed like no JPEG is)")
        elif not name.endswith("/"):
            raise refuse(member, "is not part of a gallery archive")


def _invalid(path: Path, where: str, expected: str) -> GalleryError:
    return GalleryError(f"{path}: {where} is not {expected}.", "Export it again with `facestream gallery export`.")


def _models(manifest: dict[str, Any], names: set[str], path: Path) -> dict[str, dict[str, Any]]:
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise _invalid(path, "manifest.models", "an object of models")
    for m, info in models.items():
        ok = (isinstance(m, str) and 0 < len(m) <= 200 and isinstance(info, dict)
              and isinstance(info.get("file"), str) and info["file"] in names
              and isinstance(info.get("dim"), int) and MIN_DIM <= info["dim"] <= 8192
              and isinstance(info.get("count"), int) and 0 <= info["count"] <= 100_000_000)
        if not ok:
            raise _invalid(path, f"manifest.models[{str(m)[:40]!r}]", "{file, dim, count} of a file in the archive")
    return models


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _person(p: Any, i: int, matrices: dict[str, np.ndarray], names: set[str], zf: zipfile.ZipFile, path: Path
            ) -> tuple[Person, list[NewEmbedding]]:
    where = f"people.json[{i}]"
    if not isinstance(p, dict) or not isinstance(p.get("embeddings", []), list):
        raise _invalid(path, where, "a person with a list of embeddings")
    try:
        pid = check_person_id(p.get("id"))
        name = check_name(p.get("name"))
        metadata = check_metadata(p.get("metadata") or {})
    except GalleryError as exc:
        raise GalleryError(f"{path}: {where}: {exc.problem}", exc.fix) from None
    for key in ("created", "updated"):
        if key in p and not _number(p[key]):
            raise _invalid(path, f"{where}.{key}", "a time in seconds")
    embs = []
    for j, e in enumerate(p.get("embeddings", [])):
        at = f"{where}.embeddings[{j}]"
        ok = (isinstance(e, dict) and e.get("model_id") in matrices and isinstance(e.get("hash"), str)
              and _HASH.fullmatch(e["hash"]) is not None and isinstance(e.get("row"), int)
              and not isinstance(e["row"], bool) and 0 <= e["row"] < len(matrices[e["model_id"]])
              and isinstance(e.get("source", ""), str) and _number(e.get("created", 0.0))
              and (e.get("chip") is None or (isinstance(e["chip"], str) and e["chip"] in names))
              and isinstance(e.get("negative", False), bool))
        if not ok:
            raise _invalid(path, at, "{model_id, hash, row within its model's vectors, source, created, chip}")
        chip = zf.read(e["chip"]) if e.get("chip") else None
        embs.append(NewEmbedding(matrices[e["model_id"]][e["row"]], e["model_id"], e["hash"], chip,
                                 e.get("source", ""), float(e.get("created", 0.0)), bool(e.get("negative"))))
    return Person(pid, name, metadata, len(embs), float(p.get("created", 0.0)), float(p.get("updated", 0.0))), embs


def import_gallery(store: GalleryStore, path: str | Path) -> dict[str, Any]:
    """Add an archive's people to ``store`` (merging by id or name; existing embeddings are skipped)."""
    manifest, people = read_archive(path)
    store.import_people(people)
    return manifest
