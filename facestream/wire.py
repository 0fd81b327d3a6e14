"""JSON that every reader can parse: what leaves the process (websocket messages, HTTP answers, stored
sessions, JSON lines) never holds ``NaN`` or ``Infinity``, which Python writes by default and a browser's
``JSON.parse`` refuses: one bad number would break every dashboard that reads it."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (numpy's too) replaced by None, containers walked."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        value = obj.item()
        return finite(value) if isinstance(value, float) else value
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)`` that refuses NaN and infinities outright."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
