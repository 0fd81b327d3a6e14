"""Embedding models by name, timm style: ``create_model("dlib_resnet")``, ``list_models()``.

The trainer, the torch inference engine and the exporter all build networks
through this registry, so a model directory's ``spec.architecture`` is enough
to rebuild the network its ``weights.pt`` belongs to. New backbones register
themselves with :func:`register_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Decorator that adds a factory ``fn(pretrained: bool = True, **kw) -> nn.Module``.

    Usable bare (``@register_model``, registered under the function's name) or
    with a name (``@register_model(name="tiny_resnet")``).
    """

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key] is not f:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = f
        return f

    return add(fn) if fn is not None else add


def _import_builtin_backbones() -> None:
    """Register the backbones that live in their own modules (they register on import)."""
    import trainer.small_net  # noqa: F401


def list_models() -> list[str]:
    """Registered architecture names."""
    _import_builtin_backbones()
    return sorted(_REGISTRY)


def create_model(name: str, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``pretrained`` loads its original weights where it has any.

    Raises:
        stream.errors.FacestreamError: unknown name (the message lists the valid ones).
    """
    _import_builtin_backbones()
    factory = _REGISTRY.get(name)
    if factory is None:
        from stream.errors import FacestreamError

        raise FacestreamError(f"Unknown model architecture '{name}'.", f"Use one of: {', '.join(list_models())}.")
    return factory(pretrained=pretrained, **kwargs)


@register_model
def dlib_resnet(pretrained: bool = True, path: str | None = None, **kwargs: Any) -> nn.Module:
    """dlib's face recognition ResNet (150x150 RGB -> 128-d); pretrained reads dlib's ``.dat``."""
    from trainer.dlib_resnet import DlibResNet, load_dlib_resnet

    if pretrained:
        return load_dlib_resnet(path)
    return DlibResNet(**kwargs)
