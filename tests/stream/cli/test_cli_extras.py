"""A base install (no extras): the demo and the trainer say which extra to install, never a traceback.

The test venv has every extra, so the subprocess hides gradio and mlflow with
an import hook, which is what a `pip install facestream` without extras looks
like to the code.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, ROOT

WITHOUT_EXTRAS = """
import importlib.abc, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"gradio", "gradio_client", "mlflow"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from facestream.stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("argv", "extra"), [
    (["demo", "--port", "0"], "demo"),
    (["train", "--data", str(EXAMPLES), "--epochs", "1"], "train"),
])
@pytest.mark.slow  # heavy (3 s or more on 2 cores, or its fixture is): `make test-fast` skips it
def test_a_command_whose_extra_is_missing_names_the_extra(tmp_path, argv, extra):
    out = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *argv, "--set", f"gallery.url=sqlite:///{tmp_path}/g.db"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert f"pip install 'facestream[{extra}]'" in out.stderr
    # the rest of the program does not need the extras
    ok = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, "people", "list", "--gallery",
                         f"sqlite:///{tmp_path}/g.db"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ok.returncode == 0 and "Traceback" not in ok.stderr, ok.stderr
