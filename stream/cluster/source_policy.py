"""Which sources a worker opens when they come from Redis: the control plane is data, not trust.

Anyone who could write one ``facestream:sources`` entry once made a worker read a local image
file and publish it as frames, fetch an internal URL, and open a listening socket on 0.0.0.0.
A worker now opens a source declared in Redis only when it passes this policy:

* its URL scheme is one of ``cluster.source_schemes`` (rtsp, rtsps, http, https by default), and
  its host resolves only to addresses a camera can have: never loopback, unspecified (0.0.0.0:
  what makes a reader listen), link-local (169.254.169.254 is the cloud's metadata service),
  multicast or reserved; loopback only with ``cluster.allow_local_sources`` (tests, one box);
* a file or folder lies inside one of ``cluster.source_folders`` (none by default);
* a local camera index only with ``cluster.allow_devices``.

Sources in the worker's own config file are trusted as they are: whoever writes that file
runs the worker. A refused source is never claimed, so a worker that may open it can.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from facestream.errors import redact
from facestream.stream.config import ClusterConfig, SourceConfig


def refusal(source: SourceConfig, policy: ClusterConfig) -> str | None:
    """Why a worker must not open ``source`` (declared in Redis), or None when it may."""
    url = source.url.strip()
    if url.isdigit():
        return None if policy.allow_devices else "a local camera (set cluster.allow_devices on its worker)"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if len(scheme) > 1 and "://" in url:  # a URL (a one-letter scheme is a Windows drive)
        if scheme not in policy.source_schemes:
            return f"the scheme {scheme}:// (allowed: {', '.join(policy.source_schemes)}; cluster.source_schemes)"
        if not parts.hostname:
            return "a URL without a host"
        return _host_refusal(parts.hostname, parts.port, policy.allow_local_sources)
    return _path_refusal(url, policy.source_folders)


def _host_refusal(host: str, port: int | None, allow_local: bool) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port or 554, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"a host that does not resolve ({exc})"
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip.is_loopback and allow_local:
            continue
        if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast or ip.is_reserved:
            return f"the address {ip} (loopback, unspecified, link-local, multicast or reserved)"
    return None


def _path_refusal(path: str, folders: list[str]) -> str | None:
    if path.lower().startswith("file:"):
        path = urlsplit(path).path
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return "a path that cannot be resolved"
    for folder in folders:
        root = Path(os.path.realpath(folder))
        if real == root or root in real.parents:
            return None
    return "a file outside cluster.source_folders" if folders else "a local file (no cluster.source_folders set)"


def describe(source: SourceConfig) -> str:
    return f"{source.id} ({redact(source.url)})"
