"""docker-compose.yml rehearsed without Docker (no engine runs here): its services' own commands and
environment, on top of the Dockerfile's ENTRYPOINT and ENV, run as processes against a real Redis started
with the compose Redis's arguments, and the steps its header tells a user to take work.

What differs from `docker compose up`, and why: service hosts (`redis`) are 127.0.0.1 and ports are free
ones (one machine, no compose network); image paths (/data, /opt) are the test's folders; the worker's
`embedder.device: cuda` is cpu (no GPU here); the camera is an RTSP server on loopback, so the worker may
open loopback sources (a site's cameras are on its LAN, which the default policy allows). The images
themselves are not built here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from facestream.stream.cluster.registry import SourceRegistry
from tests.conftest import HAMILTON, ROOT, RedisServer, free_port
from tests.stream.cluster.test_cluster import Proc, watching
from tests.stream.live.test_live_rtsp import SYSTEM_PYTHON, RtspServer, WsCollector
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # end-to-end: processes and servers (`make test-fast` skips it)

SECRETS = {"REDIS_PASSWORD": "compose-redis-password-5b1f0c9e27d4a8", "FACESTREAM_TOKEN": "c0" * 32}
_VAR = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (an unset required one is an error)."""
    def one(m: re.Match) -> str:
        name, kind, arg = m.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if kind == "-" else ""

    return _VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def image_defaults() -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's ENTRYPOINT and its facestream settings (ENV FACESTREAM__...)."""
    text = (ROOT / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    return entrypoint, dict(re.findall(r"\b(FACESTREAM__\w+)=(\S+)", text))


def service_env(compose: dict, name: str, redis_port: int, overrides: dict[str, str]) -> dict[str, str]:
    """What a service's process sees: this machine's environment without facestream settings, the image's
    settings, the service's own (interpolated, with `redis` as 127.0.0.1), then the differences above."""
    _, image_env = image_defaults()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM")}
    env.update(image_env)
    for key, value in (compose["services"][name].get("environment") or {}).items():
        env[key] = interpolate(str(value), SECRETS).replace("@redis:6379", f"@127.0.0.1:{redis_port}")
    env.update({"PYTHONUNBUFFERED": "1", **overrides})
    return env


def facestream(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker compose exec gateway facestream ...`: a one-off command in the gateway's environment."""
    return subprocess.run([sys.executable, "-m", "facestream", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def test_the_compose_services_run_as_declared_and_name_a_face_through_the_gateway(tmp_path):
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail("the system python with GStreamer's RTSP server is missing; run `bash .ci/setup`")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "worker", "gateway"}
    # the gateway is published on loopback only, and nothing starts without its secrets
    assert all(str(p).startswith("127.0.0.1:") for p in services["gateway"]["ports"])
    with pytest.raises(AssertionError, match="REDIS_PASSWORD"):
        interpolate(" ".join(services["redis"]["command"]), {})

    # Redis with the compose service's own arguments (append-only file, the password), and its health check
    redis_args = [interpolate(a, SECRETS) for a in services["redis"]["command"]]
    assert redis_args[0] == "redis-server" and "--requirepass" in redis_args
    redis = RedisServer(tmp_path, password=SECRETS["REDIS_PASSWORD"], extra=redis_args[1:])
    redis.start()
    procs: list[Proc] = []
    rtsp = RtspServer(HAMILTON)
    try:
        health = interpolate(services["redis"]["healthcheck"]["test"][1], {})  # CMD-SHELL, `$$` kept as `$`
        ok = subprocess.run(["sh", "-c", health.replace("redis-cli", f"redis-cli -p {redis.port}")],
                            env={**os.environ, **SECRETS}, timeout=30)
        assert ok.returncode == 0, "the compose Redis health check fails against its own server"

        entrypoint, _ = image_defaults()
        assert entrypoint == ["facestream", "-v"]  # what Proc runs: python -m facestream -v <command>
        port = free_port()
        data = tmp_path / "data"
        data.mkdir()
        differences = {"FACESTREAM__EMBEDDER__DEVICE": "cpu", "FACESTREAM__CLUSTER__ALLOW_LOCAL_SOURCES": "true"}
        gateway_env = service_env(compose, "gateway", redis.port, {"FACESTREAM__SERVER__PORT": str(port)})
        worker_env = service_env(compose, "worker", redis.port, differences)
        assert gateway_env["FACESTREAM__GALLERY__URL"] == redis.url == worker_env["FACESTREAM__GALLERY__URL"]

        # the steps of the compose file's header: enrol a folder per person, add a camera
        out = facestream(["enroll", str(ROOT / "examples" / "people")], gateway_env)
        assert out.returncode == 0, out.stdout + out.stderr
        rtsp.start()
        out = facestream(["sources", "add", rtsp.url, "--id", "door"], gateway_env)
        assert out.returncode == 0, out.stdout + out.stderr

        def service(name: str, env: dict[str, str]) -> Proc:  # ENTRYPOINT ["facestream", "-v"] + its command
            procs.append(Proc(services[name]["command"], tmp_path / f"{name}.log", env=env, cwd=data))
            return procs[-1]

        gateway = service("gateway", gateway_env)
        service("worker", worker_env)
        registry = SourceRegistry(redis.url)
        wait_until(lambda: registry.holders().get("door"), 120, "the worker claims the camera", **watching(procs))
        wait_until(lambda: "gateway on" in gateway.log.read_text(), 90, "the gateway serves", **watching(procs))

        token = SECRETS["FACESTREAM_TOKEN"]

        def stats() -> dict:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/stats",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        wait_until(lambda: "door" in stats()["sources"], 60, "the worker's camera in the gateway's /stats",
                   **watching(procs))
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token is required: the gateway is on 0.0.0.0
            urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10)
        assert refused.value.code == 401

        client = WsCollector(f"ws://127.0.0.1:{port}/", token).start()
        try:
            def named() -> set[str]:
                return {f["name"] for m in client.frames("door") for f in m["faces"] if f.get("name")}

            # the clip loops over RTSP: Lin-Manuel Miranda, enrolled from examples/people, is named
            wait_until(lambda: any("Lin" in n for n in named()), 180, "a name from the worker at the gateway",
                       **watching(procs))
        finally:
            client.stop()
    finally:
        for p in procs:
            p.stop(signal.SIGTERM)
        rtsp.kill()
        redis.stop()
