"""Training data: identity folders -> aligned chips (cached) -> a reproducible split by identity.

Chips are made by the live runtime's own :class:`facestream.stream.engine.analyzer.FaceAnalyzer`
(same detector, 5-point landmarks and aligner), so a model is trained on exactly
the kind of chip it will see in production. Detection and alignment are the slow
part, so every image's result is cached under the sha256 of its bytes (and the
preprocessing settings): a second run, or a run on a folder that gained a few
images, only processes what is new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.config import Config
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.imageio import image_files, load_image
from facestream.stream.engine.model_store import cache_dir, file_sha256

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class ScanReport:
    """What a folder scan found that the user should know about."""

    empty_folders: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def lines(self) -> list[str]:
        out = [f"empty identity folder (ignored): {p}" for p in self.empty_folders]
        out += [f"skipped {p}: {why}" for p, why in self.skipped]
        return out


def scan_identity_folders(roots: Sequence[str | Path], report: ScanReport | None = None) -> list[tuple[str, Path]]:
    """(identity, image path) for every image in ``root/<identity>/``, sorted.

    Folders whose name starts with ``_`` or ``.`` are not identities (the test data
    keeps group photos in ``_nonsingle``). With several roots, identities are named
    ``<root>/<identity>`` so that two data sets never merge two different people.

    Raises:
        FacestreamError: a root that is missing, not a folder, or has no identity folders.
    """
    report = report if report is not None else ScanReport()
    items: list[tuple[str, Path]] = []
    for root in roots:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FacestreamError(
                f"Training data folder {root} does not exist or is not a folder.",
                "Pass --data DIR with one sub-folder of images per identity (DIR/<person>/*.jpg).",
            )
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        if not folders:
            raise FacestreamError(
                f"{root} has no identity folders.",
                "Put each person's images in their own sub-folder: DIR/<person>/*.jpg.",
            )
        for folder in folders:
            name = folder.name if len(roots) == 1 else f"{root.name}/{folder.name}"
            images = image_files(folder)
            if not images:
                report.empty_folders.append(str(folder))
                log.warning("identity folder %s has no images; ignored", folder)
                continue
            items.extend((name, p) for p in images)
    return items


def default_cache_dir() -> Path:
    return cache_dir() / "chips"


def chip_analyzer(config: Config) -> FaceAnalyzer:
    """The runtime's face engine with the pretrained embedder's geometry (chip size, padding)."""
    if config.embedder.model != "dlib-resnet-v1":
        config = config.model_copy(deep=True)
        config.embedder.model = "dlib-resnet-v1"
    return FaceAnalyzer(config)


def preprocessing_key(analyzer) -> str:
    """Names everything that changes a chip: the detector's settings (all of them: tiling, tile size and
    overlap, NMS, max side...), chip size, padding, landmark set, and the code versions of the photo search's
    box mapping and of the aligner (bumped when their output changes)."""
    from facestream.stream.engine.align import ALIGN_VERSION
    from facestream.stream.engine.detect import SEARCH_VERSION

    spec = analyzer.spec
    text = json.dumps({
        "size": spec.input_size, "padding": spec.padding, "landmarks": spec.landmarks,
        "detector": analyzer.config.detector.model_dump(mode="json"), "min_face": analyzer.config.match.min_face,
        "align_version": ALIGN_VERSION, "search_version": SEARCH_VERSION,
    }, sort_keys=True)
    return f"{spec.input_size}px-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass
class ChipSet:
    """Aligned chips with identities: the unit that training and evaluation consume.

    Attributes:
        chips: (n, S, S, 3) uint8 RGB.
        labels: (n,) int64 index into ``names``.
        names: identity names.
        paths: source image of each chip.
        digests: sha256 of each source image.
        prep_key: the preprocessing settings the chips were made with.
    """

    chips: np.ndarray
    labels: np.ndarray
    names: list[str]
    paths: list[str]
    digests: list[str]
    prep_key: str = ""
    padding: float = 0.25
    report: ScanReport = field(default_factory=ScanReport)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> ChipSet:
        """The chips where ``mask`` is true, labels re-numbered 0..k-1 over the identities kept."""
        idx = np.nonzero(mask)[0]
        kept = sorted(set(self.labels[idx].tolist()))
        remap = {old: new for new, old in enumerate(kept)}
        return ChipSet(
            chips=self.chips[idx],
            labels=np.array([remap[v] for v in self.labels[idx].tolist()], dtype=np.int64),
            names=[self.names[k] for k in kept],
            paths=[self.paths[i] for i in idx],
            digests=[self.digests[i] for i in idx],
            prep_key=self.prep_key,
            padding=self.padding,
        )

    def fingerprint(self) -> str:
        """Hash of (identity, image digest) pairs and the preprocessing: equal iff the data are equal."""
        h = hashlib.sha256(self.prep_key.encode())
        for pair in sorted(zip((self.names[k] for k in self.labels.tolist()), self.digests, strict=True)):
            h.update(f"{pair[0]}\0{pair[1]}\n".encode())
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {"images": len(self), "identities": len(self.names)}


def _usable(faces, min_face: int) -> np.ndarray:
    wh = faces.xyxy[:, 2:] - faces.xyxy[:, :2]
    return np.minimum(wh[:, 0], wh[:, 1]) >= min_face


def chip_for_image(analyzer, path: Path) -> tuple[np.ndarray | None, str]:
    """The one aligned chip of an image, or (None, reason) when it has not exactly one usable face."""
    try:
        rgb = load_image(path)
    except FacestreamError as exc:
        return None, f"unreadable ({exc.problem})"
    faces = analyzer.detect(rgb, with_landmarks=False)
    faces = faces[_usable(faces, analyzer.config.match.min_face)] if len(faces) else faces
    if len(faces) != 1:
        return None, f"{len(faces)} usable faces (need exactly 1)"
    return analyzer.chips(rgb, faces)[0], "ok"


def chip_cache_root(analyzer, cache: str | Path | None = None) -> Path:
    """The cache folder for this analyzer's preprocessing settings (created)."""
    root = (Path(cache).expanduser() if cache else default_cache_dir()) / preprocessing_key(analyzer)
    root.mkdir(parents=True, exist_ok=True)
    return root


def cached_chip(analyzer, path: Path, cache_root: Path) -> tuple[np.ndarray | None, str, str]:
    """(chip or None, reason, content digest) of one image, from the cache when it has the image's hash."""
    try:
        digest = file_sha256(path)  # content, not name: renamed or moved images still hit the cache
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})", ""
    entry = cache_root / f"{digest}.npz"
    chip, reason = _read_cache(entry)
    if reason is None:
        chip, reason = chip_for_image(analyzer, path)
        _write_cache(entry, chip, reason)
    return chip, reason, digest


def load_chip_set(roots: str | Path | Sequence[str | Path], analyzer: FaceAnalyzer | None = None,
                  cache: str | Path | None = None, progress: bool = True) -> ChipSet:
    """Scan identity folders and turn every image into an aligned chip (cached by content hash).

    Images without exactly one usable face, and unreadable images, are skipped and
    listed in ``ChipSet.report`` (and logged).

    Args:
        roots: one folder or several, each ``DIR/<identity>/*.jpg``.
        analyzer: the :class:`FaceAnalyzer` to preprocess with (default config when None).
        cache: cache folder (default ``<facestream cache>/chips``).
        progress: show a tqdm bar.

    Raises:
        FacestreamError: bad folders, or fewer than two identities with a usable face.
    """
    from tqdm import tqdm

    if isinstance(roots, str | Path):
        roots = [roots]
    report = ScanReport()
    items = scan_identity_folders(roots, report)
    if analyzer is None:
        analyzer = FaceAnalyzer()
    key = preprocessing_key(analyzer)
    cache_root = chip_cache_root(analyzer, cache)
    chips, names, paths, digests = [], [], [], []
    for name, path in tqdm(items, desc="preparing chips", unit="img", disable=not progress):
        chip, reason, digest = cached_chip(analyzer, path, cache_root)
        if chip is None:
            report.skipped.append((str(path), reason))
            log.warning("skipped %s: %s", path, reason)
            continue
        chips.append(chip)
        names.append(name)
        paths.append(str(path))
        digests.append(digest)
    log.info("%d chips, %d images skipped", len(chips), len(report.skipped))
    uniq = sorted(set(names))
    if len(uniq) < 2:
        raise FacestreamError(
            f"{', '.join(str(r) for r in roots)} gave usable faces of {len(uniq)} "
            f"identit{'y' if len(uniq) == 1 else 'ies'}; "
            "training and evaluation need at least two (better: dozens).",
            "Add more identity folders, each with photos showing exactly one face.",
        )
    index = {n: i for i, n in enumerate(uniq)}
    size = analyzer.spec.input_size
    return ChipSet(
        chips=np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8),
        labels=np.array([index[n] for n in names], dtype=np.int64),
        names=uniq,
        paths=paths,
        digests=digests,
        prep_key=key,
        padding=float(analyzer.spec.padding),
        report=report,
    )


def _read_cache(entry: Path) -> tuple[np.ndarray | None, str | None]:
    """(chip, reason) from the cache; reason None means a miss (or a broken entry)."""
    if not entry.is_file():
        return None, None
    try:
        with np.load(entry) as z:
            reason = str(z["reason"])
            chip = z["chip"] if reason == "ok" else None
        return chip, reason
    except (OSError, ValueError, KeyError):
        log.warning("broken cache entry %s; recomputing", entry)
        return None, None


def _write_cache(entry: Path, chip: np.ndarray | None, reason: str) -> None:
    tmp = entry.with_name(entry.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, chip=chip if chip is not None else np.zeros((0,), np.uint8), reason=np.array(reason))
    os.replace(tmp, entry)


def bucket(seed: int, name: str) -> float:
    """A person's fixed place in [0, 1): from a hash of the seed and their name, nothing else."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16) / 16**15


def split_by_identity(data: ChipSet, seed: int = 0, val_fraction: float = 0.15,
                      test_fraction: float = 0.25) -> dict[str, ChipSet]:
    """Split into train/val/test by identity: no person appears in two splits.

    Each person's split follows from a hash of the seed and their name alone (a fixed bucket:
    test below ``test_fraction``, validation below ``test_fraction + val_fraction``, train above),
    so adding or removing people never moves anyone else. On a data set too small for the buckets
    to give two testable people (two or more chips each) in test, the testable people with the
    lowest buckets are moved there; a validation split of one person is folded into train (one
    person gives no impostor pairs). Both happen only on small data sets.

    Raises:
        FacestreamError: too few identities with two images to hold out a test split.
    """
    counts = np.bincount(data.labels, minlength=len(data.names))
    place = {n: bucket(seed, n) for n in data.names}
    which = {n: "test" if place[n] < test_fraction else "val" if place[n] < test_fraction + val_fraction
             else "train" for n in data.names}
    testable = sorted((n for i, n in enumerate(data.names) if counts[i] >= 2), key=place.__getitem__)
    for n in testable:  # small data sets only: top the test split up to two testable people
        if sum(1 for m in testable if which[m] == "test") >= 2:
            break
        if which[n] != "test":
            which[n] = "test"
    if sum(1 for n in data.names if which[n] == "val") < 2:
        for n in data.names:
            if which[n] == "val":
                which[n] = "train"
    n_test = sum(1 for n in testable if which[n] == "test")
    n_train = sum(1 for n in data.names if which[n] == "train")
    if n_test < 2 or n_train < 2:
        raise FacestreamError(
            f"Only {len(testable)} of {len(data.names)} identities have two or more usable images; a held-out test "
            "split needs two of them and training at least two other identities.",
            "Add more identities with several photos each.")
    split_of_chip = np.array([which[n] for n in data.names])[data.labels]
    return {s: data.subset(split_of_chip == s) for s in SPLITS}


def describe(splits: dict[str, ChipSet]) -> dict[str, int]:
    """Flat counts per split for logging as MLflow params."""
    out = {}
    for s, cs in splits.items():
        out[f"{s}_images"] = len(cs)
        out[f"{s}_identities"] = len(cs.names)
    return out

