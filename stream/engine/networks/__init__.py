"""Network definitions the runtime needs, by name: ``create_model("dlib_resnet")``, ``list_networks()``.

Importing this package registers the built-in networks (the dlib ResNet port and
the small from-scratch net) in the leaf :mod:`.registry`; the torch runtime,
the model store (conversion) and the trainer build networks through it.
"""

from __future__ import annotations

from facestream.stream.engine.networks import blazeface, dlib_resnet, small_net  # noqa: F401 - they register on import
from facestream.stream.engine.networks.registry import create_model, list_networks, register_network

__all__ = ["create_model", "list_networks", "register_network"]
