"""The Gradio demo: one page with live webcam, photo, verify, look-alike, enrol and gallery tabs.

``service`` holds the recognition logic (no Gradio), ``live`` the per-browser
tracking session, ``app`` the page itself. Importing this package imports
Gradio, so only ``facestream demo`` and its tests do.
"""

from facestream.stream.demo.app import build_demo, launch_demo
from facestream.stream.demo.service import DemoService

__all__ = ["DemoService", "build_demo", "launch_demo"]
