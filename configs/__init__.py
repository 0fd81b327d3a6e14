"""Package data: ``default.yaml``, the documented defaults (read through ``importlib.resources``)."""
