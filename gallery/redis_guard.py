"""A lost Redis connection becomes one clear GalleryError, for every store method (generators too)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from facestream.gallery.errors import GalleryError
from facestream.redis_url import connection_fix


def _down(url: str, exc: Exception) -> GalleryError:
    return GalleryError(
        f"The Redis gallery at {url} is unreachable ({exc}); the operation was not applied.",
        connection_fix(url, exc, "Start redis-server (or fix --gallery / FACESTREAM_GALLERY) and retry; re-running "
                       "an enrolment skips what is already stored."),
    )


def _failure(url: str, exc: Exception) -> GalleryError:
    """The GalleryError for a Redis client exception."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return _down(url, exc)
    return GalleryError(f"Redis refused the operation ({exc}).", "Check the Redis server's logs.")


def guard(fn: Callable) -> Callable:
    """Turn a lost Redis connection into one clear GalleryError, also while a generator is iterated."""
    if inspect.isgeneratorfunction(fn):  # its body runs on next(), after a plain wrapper has returned

        @functools.wraps(fn)
        def gen_wrapper(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(self, *args, **kwargs)
            except (RedisError, OSError) as exc:
                raise _failure(self.url, exc) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            raise _failure(self.url, exc) from None

    return wrapper
