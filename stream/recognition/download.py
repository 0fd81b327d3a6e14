"""Photos linked from a roster, downloaded under one deadline, one size cap and one address policy.

* **One deadline over everything** (``deadline``): resolving, connecting, a
  server that trickles its headers or its body byte by byte; a watchdog shuts
  the socket when it passes, whatever the download is waiting on.
* **The address checked is the address used**: the host name is resolved once,
  every address it gives is checked (no loopback, private, link-local or
  reserved address unless ``allow_private``), and the connection goes to that
  address (TLS still verifies the host name). A second DNS answer (rebinding)
  is never asked for. Every redirect is resolved and checked the same way.
* ``MAX_DOWNLOAD`` bytes at most; http(s) only.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from facestream.errors import FacestreamError

MAX_DOWNLOAD = 25 * 1024 * 1024
URL_TIMEOUT = 10.0  # per connect or read
URL_DEADLINE = 30.0  # for the whole download, redirects included
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to an address resolved (and checked) beforehand."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    """HTTPS to a pre-resolved address; the certificate is still checked against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def _abort(conn: http.client.HTTPConnection) -> None:
    """Shut the connection's socket: whatever read or write waits on it returns at once."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def resolve(url: str, target: str, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, address) of ``target``: one resolution, every address checked.

    Raises:
        FacestreamError: not http(s), a name that does not resolve, or a private address when not allowed.
    """
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FacestreamError(f"Cannot download {url}: only http(s) URLs are fetched.", "Link a photo by http(s).")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FacestreamError(f"Cannot download {url} ({exc}).", "Check the URL.") from None
    addresses = [str(info[4][0]) for info in infos]
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global:
                raise FacestreamError(f"Cannot download {url}: {parts.hostname} is a private or local address "
                                      f"({ip}).", "Link photos on a public server.")
    return parts.scheme, parts.hostname, port, addresses[0]


def fetch_url(url: str, timeout: float = URL_TIMEOUT, deadline: float = URL_DEADLINE,
              allow_private: bool = True) -> bytes:
    """Download a photo within ``deadline`` seconds in all and ``MAX_DOWNLOAD`` bytes; any problem becomes
    one FacestreamError naming the URL.

    Args:
        allow_private: also fetch from loopback, private and link-local addresses (a roster on one's own
            network, with ``--allow-local``). Servers and the CLI by default pass False: a roster must not
            make them reach the machine's own services.
    """
    end = time.monotonic() + deadline
    late = FacestreamError(f"Cannot download {url}: it took longer than {deadline:.0f} s.",
                           "Check the server, or download the photo yourself.")
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, address = resolve(url, target, allow_private)
        left = end - time.monotonic()
        if left <= 0:
            raise late
        kind = _PinnedTLS if scheme == "https" else _Pinned
        conn = kind(host, port, address, min(timeout, left))
        watchdog = threading.Timer(left, _abort, (conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            parts = urlsplit(target)
            conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                         headers={"User-Agent": "facestream", "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status in REDIRECTS and resp.getheader("Location"):
                target = urljoin(target, resp.getheader("Location") or "")
                continue
            if resp.status != 200:
                raise FacestreamError(f"Cannot download {url}: HTTP {resp.status}.", "Check the URL.")
            return _read(resp, url, end, late)
        except FacestreamError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if time.monotonic() >= end:
                raise late from None
            raise FacestreamError(f"Cannot download {url} ({exc}).", "Check the URL and the network.") from None
        finally:
            watchdog.cancel()
            conn.close()
    raise FacestreamError(f"Cannot download {url}: more than {MAX_REDIRECTS} redirects.", "Link the photo itself.")


def _read(resp: http.client.HTTPResponse, url: str, end: float, late: FacestreamError) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > end:
            raise late
        chunk = resp.read1(65536)  # what has arrived: a drip-feeding server cannot hold a read open
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_DOWNLOAD:
            raise FacestreamError(f"{url} is larger than {MAX_DOWNLOAD >> 20} MB.", "Link a photo, not an archive.")
        chunks.append(chunk)
