"""facestream as someone else installs it: one namespace, package data inside, a wheel that works alone.

The wheel test builds the wheel, installs it (with the demo and train extras)
into a fresh virtual environment outside the repository, and runs the commands
a new user runs first, from a folder where no source tree is on the path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.conftest import CELEBS, EXAMPLES, GROUPS, HAMILTON, ROOT, free_port

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_package_folder_is_listed_and_mapped():
    """A folder with an __init__.py that pyproject does not list would silently miss the wheel."""
    mapping = SETUPTOOLS["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *rel]))
    assert found == set(SETUPTOOLS["packages"])


def build_wheel_and_venv(root: Path) -> tuple[Path, Path]:
    """Build the wheel and install it (with the demo and train extras) into a fresh virtual environment
    outside the repository, not editable. Started in the background when the session begins
    (tests/conftest.py), since pip takes minutes and the other tests need not wait for it."""
    out = root / "dist"
    out.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, cwd=out)
    (whl,) = out.glob("facestream-*.whl")
    home = root / "user"
    home.mkdir()
    env_dir = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch pinned to the CPU wheel, as the README says; the extras bring Gradio and MLflow.
    done = subprocess.run([*pip, "torch==2.13.0", f"{whl}[demo,train]"], cwd=home, timeout=900,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"installing the wheel failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return whl, env_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    from tests import conftest

    if conftest.WHEEL_BUILD is not None:  # started when the session began
        return conftest.WHEEL_BUILD.result(timeout=1200)
    return build_wheel_and_venv(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


def test_the_wheel_holds_one_namespace_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"facestream", f"{wheel.name.split('-py3')[0]}.dist-info"}
    for needed in ("facestream/configs/default.yaml", "facestream/stream/serve/dashboard/index.html",
                   "facestream/stream/serve/dashboard/app.js", "facestream/py.typed",
                   "facestream/stream/serve/api_docs/swagger-ui-bundle.js", "facestream/stream/serve/api_docs/LICENSE"):
        assert needed in names


@pytest.fixture(scope="module")
def venv(built) -> Path:
    """A fresh virtual environment outside the repo with the wheel and its extras installed (not editable)."""
    return built[1]


def _run(venv: Path, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(FACESTREAM_CACHE=str(cwd / "cache"), HOME=str(cwd), PATH=f"{venv / 'bin'}:{env['PATH']}")
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def test_the_installed_wheel_runs_the_whole_product(venv, tmp_path):
    fs = str(venv / "bin" / "facestream")
    py = str(venv / "bin" / "python")
    gallery = f"sqlite:///{tmp_path}/gallery.db"

    # the bare folder names are not importable: only facestream is installed
    bare = subprocess.run([py, "-c", "import stream"], cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode != 0 and "No module named 'stream'" in bare.stderr
    where = _run(venv, tmp_path, py, "-c", "import facestream.stream.config as c; print(c.DEFAULT_CONFIG)").stdout
    assert "site-packages" in where and str(ROOT) not in where

    _run(venv, tmp_path, fs, "models", "prepare")
    detected = json.loads(_run(venv, tmp_path, fs, "detect", str(GROUPS / "obama_and_biden.jpg"), "--json").stdout)
    assert len(detected["faces"]) == 3  # the two men and the girl at the bottom right
    same = json.loads(_run(venv, tmp_path, fs, "compare", str(EXAMPLES / "Joe_Biden" / "biden.jpg"),
                           str(GROUPS / "obama_and_biden.jpg"), "--json").stdout)
    assert "similarity" in same
    _run(venv, tmp_path, fs, "enroll", str(ROOT / "examples" / "people"), "--gallery", gallery, "--quiet")
    named = json.loads(_run(venv, tmp_path, fs, "identify", str(GROUPS / "obama_and_biden.jpg"), "--gallery", gallery,
                            "--json").stdout)
    assert {f["name"] for f in named["faces"]} == {"Barack_Obama", "Joe_Biden", "unknown"}
    jsonl = tmp_path / "clip.jsonl"
    _run(venv, tmp_path, fs, "run", str(HAMILTON), "--gallery", gallery, "--no-server", "--max-frames", "40",
         "--jsonl", str(jsonl))
    assert sum(1 for line in jsonl.read_text().splitlines() if '"type":"frame"' in line) == 40

    # the demo serves its page
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(FACESTREAM_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path))
    demo = subprocess.Popen([fs, "demo", "--port", str(port), "--gallery", gallery], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, page = time.time() + 180, ""
        while time.time() < deadline and not page:
            assert demo.poll() is None, demo.stdout.read()
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except OSError:
                time.sleep(1)
        assert "gradio" in page.lower()
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=30)

    # and the trainer: a small from-scratch run, registered in a local MLflow store
    trained = _run(venv, tmp_path, fs, "train", "--data", str(CELEBS), "--model", "small_net", "--epochs", "1",
                   "--mlflow", f"sqlite:///{tmp_path}/mlflow.db", "--json", timeout=600)
    result = json.loads(trained.stdout)
    assert result["run_id"] and Path(result["model_dir"], "spec.json").is_file()
