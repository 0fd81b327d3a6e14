"""The command line in this process: where no process boundary is under test, `facestream ARGS` runs as a
call (no interpreter start-up, no second import of torch), with its exit code, stdout and stderr."""

from __future__ import annotations

import io
import subprocess
from contextlib import redirect_stderr, redirect_stdout

from facestream.stream.cli import main


def facestream(*args: object) -> subprocess.CompletedProcess[str]:
    """``facestream ARGS`` as the user types it; argparse's own errors (exit 2) are caught like a process's."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
