"""One way to open Redis for every part (gallery, attendance, sources, live stream, events).

Besides ``redis://``, ``rediss://`` (TLS) and ``unix://``, a Sentinel URL names a highly available
Redis: the sentinels are asked for the current master, and asked again after a failover, so the
cluster follows a promoted replica by itself::

    redis+sentinel://[:PASSWORD@]sentinel1:26379,sentinel2:26379/SERVICE[/DB]
    rediss+sentinel://...            (TLS to the master; the sentinels themselves are plain)

The password is the master's; sentinels that want one too take ``?sentinel_password=``.

TLS with a private certificate authority, or with client certificates (Redis's
``tls-auth-clients``), takes the files in the query::

    rediss://:PASSWORD@redis.internal:6380/0?ssl_ca_certs=/etc/facestream/redis-ca.pem
        &ssl_certfile=/etc/facestream/client.pem&ssl_keyfile=/etc/facestream/client.key
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from facestream.errors import FacestreamError, redact

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
SCHEMES = ("redis://", "rediss://", "unix://", *SENTINEL_SCHEMES)
SENTINEL_PORT = 26379


def is_redis_url(url: str) -> bool:
    return (url or "").strip().startswith(SCHEMES)


def connect(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url`` with ``options`` (timeouts and the like); lazy: nothing is sent yet.

    Raises:
        FacestreamError: a Sentinel URL without sentinels or a service name.
    """
    url, tls = _tls_options(url)
    if url.startswith(SENTINEL_SCHEMES):
        return _sentinel_master(url, **tls, **options)
    return redis.Redis.from_url(url, **tls, **options)


TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def _tls_options(url: str) -> tuple[str, dict[str, Any]]:
    """The TLS files named in ``url``'s query (redis-py's own URL parser drops them), and the URL without them."""
    parts = urlsplit(url)
    if not parts.query or not parts.scheme.startswith("rediss"):
        return url, {}
    pairs = [kv.partition("=") for kv in parts.query.split("&") if kv]
    tls = {k: unquote(v) for k, _, v in pairs if k in TLS_FILES}
    rest = "&".join(f"{k}={v}" for k, _, v in pairs if k not in TLS_FILES)
    return parts._replace(query=rest).geturl(), tls


def _sentinel_master(url: str, **options: Any) -> redis.Redis:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = []
    for node in filter(None, hosts.split(",")):
        host, sep, port = node.rpartition(":")
        if not sep or not port.isdigit():  # no port given
            host, port = node, str(SENTINEL_PORT)
        nodes.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not nodes or not path:
        raise FacestreamError(f"The Sentinel URL {redact(url)} needs sentinels and a service name.",
                              "Write redis+sentinel://[:PASSWORD@]HOST:26379[,HOST2:26379]/SERVICE[/DB].")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    query = parse_qs(parts.query)
    sentinel_kwargs: dict[str, Any] = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")
                                       if k in options}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"][0]
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **{k: v for k, v in sentinel_kwargs.items()
                                                                    if k != "password"})
    return sentinel.master_for(path[0], db=db, username=unquote(username) or None,
                               password=unquote(password) or None, ssl=url.startswith("rediss+"), **options)


def connection_fix(url: str, exc: BaseException, default: str) -> str:
    """What to do about a failed connection to ``url``: the TLS and password cases named, else ``default``."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return ("Redis's TLS certificate is not signed by an authority this machine trusts: name it in the URL, "
                "rediss://HOST:PORT/0?ssl_ca_certs=/path/to/ca.pem.")
    refused = ("WRONGPASS", "NOAUTH", "invalid password")
    if isinstance(exc, redis.AuthenticationError) or any(w in text for w in refused):
        return "Redis refused the password: fix it in the URL (redis://:PASSWORD@HOST:PORT/0) or in Redis's ACL."
    if url.startswith(("redis://", "redis+sentinel://")) and any(
            w in text for w in ("reset by peer", "Connection closed by server", "wrong version number")):
        return f"The server closed a plain-text connection: if it speaks TLS, use rediss://. {default}"
    return default
