"""Configuration errors a person can act on: the key, a near valid key, the bad value (never a secret's)."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from facestream.errors import FacestreamError, redact


def _nearest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else f" Valid keys: {', '.join(sorted(candidates))}."


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model under ``root`` that owns the location ``loc`` (the path without its last key)."""
    model: Any = root
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        ann = model.model_fields[key].annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


_SECRET_WORDS = ("token", "password", "secret", "login", "key")


def _shown(loc: tuple[Any, ...], value: Any) -> str:
    """What an error says about a bad value: never a secret's value (errors end up in logs), URLs redacted."""
    if any(word in str(loc[-1]).lower() for word in _SECRET_WORDS) and value is not None:
        size = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        return f"got a value of {size}, not shown: it is a secret"
    return f"got {redact(repr(value))}"


def explain(err: ValidationError, origin: str, root: type[BaseModel]) -> FacestreamError:
    """One error for every problem pydantic found, each with the key, a near valid key or the bad value (never
    a secret's), and the fix."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            owner = _model_at(root, loc)
            hint = _nearest(str(loc[-1]), list(owner.model_fields)) if owner else ""
            lines.append(f"unknown key '{dotted}'.{hint}")
        else:
            lines.append(f"'{dotted}': {e['msg']} ({_shown(loc, e.get('input'))})")
    text = "; ".join(lines)
    if not text.endswith((".", "?")):
        text += "."
    return FacestreamError(f"Bad configuration in {origin}: {text}", "Fix the key or value and retry.")
