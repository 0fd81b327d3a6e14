"""A real RTSP server that serves a video file, looping, for the live tests.

Runs under the SYSTEM python (``/usr/bin/python3``, which has python3-gi and
gst-rtsp-server), not the project's venv:

    /usr/bin/python3 tests/stream/rtsp_server.py VIDEO PORT [MOUNT]

A decoder pipeline plays the file at its native rate and seeks back to the start
at its end; every RTSP client's media gets those frames through an ``appsrc``
and encodes them with x264 (zero latency), so the stream never ends and clients
that connect later see the live position, like a camera. Prints ``READY`` on
stdout once it accepts clients.
"""

from __future__ import annotations

import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( appsrc name=src is-live=true format=time do-timestamp=true ! videoconvert ! "
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=1500 ! "
    "rtph264pay name=pay0 pt=96 config-interval=1 )"
)


class Feeder:
    """Decodes the file at native pace, forever, and pushes each frame to every connected client."""

    def __init__(self, video: str):
        self.pipeline = Gst.parse_launch(
            f'filesrc location="{video}" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! '
            "appsink name=sink sync=true emit-signals=true max-buffers=2 drop=false"
        )
        self.caps: Gst.Caps | None = None
        self.ready = threading.Event()
        self.appsrcs: list[Gst.Element] = []
        self.lock = threading.Lock()
        sink = self.pipeline.get_by_name("sink")
        sink.connect("new-sample", self.on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def on_message(self, _bus, msg) -> None:
        if msg.type == Gst.MessageType.EOS:  # loop
            self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"decoder error: {err} {dbg}", file=sys.stderr, flush=True)
            sys.exit(1)

    def on_sample(self, sink) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if self.caps is None:
            self.caps = sample.get_caps()
            self.ready.set()
        buf = sample.get_buffer()
        data = buf.extract_dup(0, buf.get_size())
        with self.lock:
            targets = list(self.appsrcs)
        for src in targets:
            ret = src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
            if ret != Gst.FlowReturn.OK:
                with self.lock:
                    if src in self.appsrcs:
                        self.appsrcs.remove(src)
        return Gst.FlowReturn.OK

    def attach(self, _factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        src.set_property("caps", self.caps)
        with self.lock:
            self.appsrcs.append(src)


def main() -> int:
    video, port = sys.argv[1], sys.argv[2]
    mount = sys.argv[3] if len(sys.argv) > 3 else "/live"
    Gst.init(None)
    feeder = Feeder(video)
    loop = GLib.MainLoop()
    feeder.start()
    context = loop.get_context()
    while not feeder.ready.is_set():  # the caps of the decoded frames are needed by every client
        context.iteration(True)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(True)
    factory.connect("media-configure", feeder.attach)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr, flush=True)
        return 1
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
