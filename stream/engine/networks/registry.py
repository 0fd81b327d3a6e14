"""Embedding models by name, timm style: ``create_model("dlib_resnet")``, ``list_networks()``.

The trainer, the torch inference engine and the exporter all build networks
through this registry, so a model directory's ``spec.architecture`` is enough
to rebuild the network its ``weights.pt`` belongs to. A leaf module: networks
register themselves here with :func:`register_network` when their module is
imported, and :mod:`facestream.stream.engine.networks` imports the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from facestream.errors import FacestreamError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_network(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Decorator that adds a factory ``fn(pretrained: bool = True, **kw) -> nn.Module``.

    Usable bare (``@register_network``, registered under the function's name) or
    with a name (``@register_network(name="tiny_resnet")``).
    """

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key] is not f:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = f
        return f

    return add(fn) if fn is not None else add


def list_networks() -> list[str]:
    """Registered architecture names."""
    return sorted(_REGISTRY)


def create_model(name: str, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``pretrained`` loads its original weights where it has any.

    Raises:
        facestream.errors.FacestreamError: unknown name (the message lists the valid ones).
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise FacestreamError(f"Unknown model architecture '{name}'.", f"Use one of: {', '.join(list_networks())}.")
    return factory(pretrained=pretrained, **kwargs)
