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
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from facestream.gallery.errors import GalleryError
from facestream.gallery.store import GalleryStore
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


def read_archive(path: str | Path) -> tuple[dict[str, Any], list[tuple[Person, list[NewEmbedding]]]]:
    """Parse and check an archive completely before anything is written to a store."""
    path = Path(path)
    bad = "Export it again with `facestream gallery export`."
    if not path.is_file():
        raise GalleryError(f"Archive not found: {path}.", "Check the path.")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "manifest.json" not in names or "people.json" not in names:
                raise GalleryError(f"{path} is not a facestream gallery archive (no manifest/people).", bad)
            manifest = json.loads(zf.read("manifest.json"))
            if manifest.get("format") != FORMAT or manifest.get("version") not in READABLE:
                raise GalleryError(f"{path} has format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                                   f"this facestream reads {FORMAT!r} version {VERSION}.", bad)
            people = json.loads(zf.read("people.json"))
            matrices = {}
            for m, info in manifest["models"].items():
                arr = np.load(io.BytesIO(zf.read(info["file"])), allow_pickle=False)
                if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape != (info["count"], info["dim"]):
                    raise GalleryError(f"{path}: {info['file']} has shape {arr.shape}, manifest says "
                                       f"({info['count']}, {info['dim']}).", bad)
                matrices[m] = arr
            out = []
            for p in people:
                embs = []
                for e in p["embeddings"]:
                    chip = zf.read(e["chip"]) if e.get("chip") else None
                    embs.append(NewEmbedding(matrices[e["model_id"]][e["row"]], e["model_id"], e["hash"], chip,
                                             e.get("source", ""), e.get("created", 0.0), bool(e.get("negative"))))
                out.append((Person(p["id"], p["name"], p.get("metadata") or {}, len(embs), p.get("created", 0.0),
                                   p.get("updated", 0.0)), embs))
    except GalleryError:
        raise
    except (zipfile.BadZipFile, KeyError, IndexError, ValueError, TypeError, OSError) as exc:
        raise GalleryError(f"{path} is damaged or not a facestream gallery archive ({exc}).", bad) from None
    return manifest, out


def import_gallery(store: GalleryStore, path: str | Path) -> dict[str, Any]:
    """Add an archive's people to ``store`` (merging by id or name; existing embeddings are skipped)."""
    manifest, people = read_archive(path)
    store.import_people(people)
    return manifest
