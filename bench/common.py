"""Shared helpers for the benchmark scripts: the machine, robust statistics, JSON results.

Numbers without the machine they came from are useless, and this project's CI
and dev machines are small and shared, so every result records the CPU, cores,
GPU, library versions and the load average at the start and end of the run.
Results go to ``bench/results/<name>-<machine-tag>.json`` and are printed.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

log = logging.getLogger(__name__)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (affinity/cgroup-aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # a missing or broken optional library is just "not there"
        return None
    return getattr(mod, "__version__", "unknown")


def gpu_name() -> str | None:
    """The first CUDA GPU's name as torch sees it, or None."""
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two results: hardware, libraries, and how busy the box was."""
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": _cpu_model(),
        "cores": usable_cores(),
        "memory_gb": mem_gb,
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
        "numpy": _version("numpy"),
        "load_average": load_average(),
    }


def machine_tag(info: dict[str, Any] | None = None) -> str:
    """Short file-name tag: the GPU if there is one, else CPU model and core count."""
    info = info or machine_info()
    base = info["gpu"] or f"{info['cpu']}-{info['cores']}c"
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:60]


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] (numpy's default method, without numpy)."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(seconds: Iterable[float]) -> dict[str, float]:
    """Median and spread, in milliseconds, of repeated timings (median: robust to a noisy neighbour)."""
    s = list(seconds)
    ms = [x * 1000.0 for x in s]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p10_ms": percentile(ms, 10),
        "p90_ms": percentile(ms, 90),
        "min_ms": min(ms),
        "mean_ms": statistics.fmean(ms),
    }


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1, min_seconds: float = 0.0) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones.

    ``min_seconds`` keeps timing past ``repeats`` until that much time was measured,
    so very fast calls get enough samples for a stable median.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    total = 0.0
    while len(times) < repeats or total < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return times


@contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """A throwaway redis-server on a free port (no persistence); yields its URL once it answers, stops on exit."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", workdir], stdout=subprocess.DEVNULL)
        try:
            _wait_for_port(port, proc, timeout)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"redis-server did not answer on port {port} within {timeout:.0f} s")


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None, quiet: bool = False) -> Path:
    """Save ``payload`` with the machine, command and time to ``<out_dir>/<name>-<tag>.json``; print it.

    Returns:
        The path written.
    """
    info = payload.get("machine") or machine_info()
    info["load_average_end"] = load_average()
    doc = {
        "benchmark": name,
        "when_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        **payload,
        "machine": info,
    }
    out_dir = Path(out_dir) if out_dir is not None else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{machine_tag(info)}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if not quiet:
        print(json.dumps(doc, indent=2))
        print(f"wrote {path}")
    return path
