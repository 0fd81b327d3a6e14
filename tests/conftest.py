"""Shared fixtures: the real photos in ../shared/data/faces, a real Redis server, one analyzer.

Expensive things (models, the Redis server) are session-scoped so the suite
stays within CI's time on a 2-core machine.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACESTREAM_TEST_DATA", ROOT.parent / "shared" / "data" / "faces"))
CELEBS = DATA / "deepface_celebs"
EXAMPLES = DATA / "face_recognition_examples"
GROUPS = EXAMPLES / "_nonsingle" / "_group"
HAMILTON = EXAMPLES / "_nonsingle" / "_video" / "short_hamilton_clip.mp4"


def single_person_photos(folder: Path) -> list[tuple[str, Path]]:
    """(identity, path) for every single-person photo listed in a data set's manifest."""
    with open(folder / "manifest.csv", newline="") as fh:
        return [(row["identity"], folder / row["relative_path"]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"test photos not found at {DATA}; set FACESTREAM_TEST_DATA")
    return DATA


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(pw):
    """Debian's Chromium, headless, driven by playwright (never a downloaded browser)."""
    return pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


WHEEL_BUILD = None  # the packaging test's wheel and venv, built in the background (see pytest_collection_finish)


def pytest_collection_finish(session) -> None:
    """Start building the wheel and its fresh venv (minutes of pip) while the other tests run."""
    global WHEEL_BUILD
    if any(item.nodeid.startswith("tests/test_packaging.py::test_the_installed_wheel") for item in session.items):
        import tempfile
        from concurrent.futures import ThreadPoolExecutor

        from tests.test_packaging import build_wheel_and_venv

        root = Path(tempfile.mkdtemp(prefix="facestream-wheel-"))
        WHEEL_BUILD = ThreadPoolExecutor(1, thread_name_prefix="wheel").submit(build_wheel_and_venv, root)


def entry_order(entry) -> tuple[int, int]:
    """A Redis stream entry's place in time, for merging entries of several streams: (ms, sequence)."""
    ms, seq = (entry[0].decode() if isinstance(entry[0], bytes) else entry[0]).split("-")
    return int(ms), int(seq)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server on a free port; can be stopped and restarted to test outages."""

    def __init__(self, workdir: Path, password: str | None = None, extra: list[str] | None = None):
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.extra = extra or []
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed; run `bash .ci/setup`")
        subprocess.run(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--dir", str(self.workdir), "--pidfile", str(self.workdir / "redis.pid"),
             *(["--requirepass", self.password] if self.password else []), *self.extra],
            check=True,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def pid(self) -> int:
        """The server's process id (its pid file, which a daemonized server may write a moment after it listens)."""
        path = self.workdir / "redis.pid"
        deadline = time.time() + 10
        while not (path.exists() and path.read_text().strip()) and time.time() < deadline:
            time.sleep(0.05)
        return int(path.read_text())

    def stop(self) -> None:
        try:  # SIGTERM by its pid file: works whatever the server speaks (a TLS-only one refuses redis-cli)
            os.kill(int((self.workdir / "redis.pid").read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
            subprocess.run(["redis-cli", "-p", str(self.port), *auth, "shutdown", "nosave"], capture_output=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """A clean database on the shared server for each test."""
    import redis

    if not _is_up(redis_server.port):
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    """Each store-backed test runs twice: on a SQLite file and on the real Redis server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gallery.db"
    return request.getfixturevalue("redis_url")


def _is_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def analyzer():
    """One FaceAnalyzer (default config: auto engine) for the whole session."""
    from facestream.stream.engine.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def photo_embeddings(analyzer, data_dir):
    """(identity, path, embedding) of the largest face in every single-person photo of both sets.

    Embedded once per session: the compare, gallery and trainer tests all need them.
    """
    from facestream.stream.engine.imageio import load_image

    out = []
    for folder in (CELEBS, EXAMPLES):
        for identity, path in single_person_photos(folder):
            faces, _ = analyzer.largest_face(load_image(path), str(path))
            out.append((identity, path, faces.embedding[0]))
    return out
