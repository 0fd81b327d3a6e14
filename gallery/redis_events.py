"""Gallery change events over Redis pub/sub: a listener thread that survives Redis restarts."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from facestream.gallery.store import Subscription
from facestream.redis_url import connect

log = logging.getLogger("facestream.gallery.redis_store")


class RedisSubscription(Subscription):
    """A daemon thread on the ``events`` channel that survives Redis restarts.

    After every (re)connect it sends ``{"op": "resync"}`` to the callback, since
    events published while disconnected are lost and the cache must be checked.
    """

    def __init__(self, url: str, channel: str, callback: Callable[[dict[str, Any]], None]):
        self.url, self.channel, self.callback = url, channel, callback
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gallery-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            client = connect(self.url, socket_connect_timeout=1, socket_timeout=5)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is None:
                        continue
                    if msg["type"] == "subscribe":
                        self.connected.set()
                        delay = 0.1
                        self._emit({"op": "resync"})
                    elif msg["type"] == "message":
                        try:
                            self._emit(json.loads(msg["data"]))
                        except ValueError:
                            self._emit({"op": "resync"})
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("gallery events: lost Redis at %s (%s); reconnecting", self.url, exc)
                self.connected.clear()
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except (RedisError, OSError):
                    pass

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            self.callback(event)
        except Exception:  # a listener bug must not kill the channel
            log.exception("gallery event callback failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
