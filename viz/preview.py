"""The live preview of `treemem run --live`: masks drawn over each frame as it is decided,
served as MJPEG to a browser (`--serve`) and/or written as JPEGs (`--overlays`).

MJPEG (`multipart/x-mixed-replace`, one JPEG per part) is what browsers show in a plain
`<img>` with no script and no player, over one long HTTP response: the simplest preview that
works in every browser and from `curl`. Each client gets the newest frame when it is ready
for one, so a slow client skips frames instead of slowing the run, and the server runs on
its own threads, so the run never waits for a viewer. It serves the loopback address unless
told otherwise.

A result reaches the preview when its frame is decided, so the frames are held from
decoding until then (`HeldFrames`): at most `max_lag` + 1 of them with `--max-lag`, as many
as are undecided in exact mode. Pillow is imported when a JPEG is made.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from treemem.pipeline.frames import FrameResult
from treemem.pipeline.sinks import make_folder, output_errors
from treemem.types import InputError, TreememError
from treemem.viz.overlay import colorize

RGB = npt.NDArray[np.uint8]
BOUNDARY = "treemem-frame"
JPEG_QUALITY = 85
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>treemem live</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}
img{display:block;max-width:100vw;max-height:92vh;margin:auto}p{text-align:center}</style>
</head>
<body>
<img id="preview" alt="treemem live preview">
<p id="status">waiting for the first decided frame</p>
<script>
const preview = document.getElementById("preview");
const status = document.getElementById("status");
preview.onload = () => {
  status.textContent = `live: ${preview.naturalWidth}x${preview.naturalHeight}`;
};
preview.onerror = () => { status.textContent = "the preview stream ended"; };
preview.src = "stream.mjpg" + location.search;  // ?frames=N passes on to the stream
</script>
</body>
</html>
"""


@dataclass(eq=False)
class HeldFrames:
    """The decoded frames not decided yet, by frame index (indices count the frames of the
    source from 0, as the tracker's do)."""

    frames: dict[int, RGB] = field(default_factory=dict)
    _next: int = 0

    def hold(self, frames: Iterable[RGB]) -> Iterator[RGB]:
        """Pass `frames` on, keeping each until `take` asks for it."""
        for frame in frames:
            self.frames[self._next] = frame
            self._next += 1
            yield frame

    def take(self, index: int) -> RGB:
        """Frame `index`; it and every frame before it are let go (results come in order)."""
        frame = self.frames.get(index)
        if frame is None:
            raise TreememError(f"frame {index} is not held; this is a treemem bug")
        for old in [i for i in self.frames if i <= index]:
            del self.frames[old]
        return frame


def to_jpeg(image: RGB, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(eq=False)
class Overlays:
    """Each decided frame with its masks drawn over it, for every sink of one run (drawn
    once, however many sinks show it)."""

    held: HeldFrames
    _last: tuple[int, RGB] | None = None

    def draw(self, result: FrameResult) -> RGB:
        if self._last is None or self._last[0] != result.frame:
            self._last = (result.frame, colorize(self.held.take(result.frame), result.ids()))
        return self._last[1]


@dataclass(eq=False)
class OverlayFolder:
    """`--overlays DIR`: DIR/00042.jpg per decided frame, written as it is decided."""

    folder: Path
    overlays: Overlays

    def __post_init__(self) -> None:
        make_folder(self.folder)

    def write(self, result: FrameResult) -> None:
        path = self.folder / f"{result.frame:05d}.jpg"
        data = to_jpeg(self.overlays.draw(result))
        with output_errors(path):
            temporary = path.with_suffix(".jpg.tmp")
            temporary.write_bytes(data)
            temporary.replace(path)


class PreviewServer:
    """`--serve`: the newest decided frame, overlaid, as MJPEG at `/stream.mjpg` (with
    `?frames=N`: N frames, then the stream ends), the newest JPEG at `/frame.jpg`, and a page
    showing the stream at `/` (its query passes on to the stream)."""

    def __init__(self, host: str, port: int, overlays: Overlays) -> None:
        self.overlays = overlays
        self._jpeg: bytes | None = None
        self._count = 0
        self._closed = False
        self._changed = threading.Condition()
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as error:
            raise InputError(f"cannot serve the preview on {host}:{port}: {error.strerror}"
                             ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="treemem-preview", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> PreviewServer:
        self._thread.start()
        return self

    def write(self, result: FrameResult) -> None:
        self.show(to_jpeg(self.overlays.draw(result)))

    def show(self, jpeg: bytes) -> None:
        """Make `jpeg` the newest frame and wake the clients."""
        with self._changed:
            self._jpeg, self._count = jpeg, self._count + 1
            self._changed.notify_all()

    def next_frame(self, seen: int) -> tuple[int, bytes] | None:
        """The newest frame once it is newer than the `seen`-th; None once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._count > seen)
            if self._closed or self._jpeg is None:
                return None
            return self._count, self._jpeg

    def close(self) -> None:
        """End every client's stream and stop serving."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


@dataclass(eq=False)
class Preview:
    """`--overlays` and/or `--serve` of one live run: the frames held for the overlays and the
    sinks that show them (the run layer's `LivePreview`)."""

    held: HeldFrames
    sinks: list[OverlayFolder | PreviewServer]

    @classmethod
    def open(cls, folder: Path | None, serve: tuple[str, int] | None) -> Preview:
        """Write overlays into `folder` and/or serve them on (host, port); the server is
        started here."""
        held = HeldFrames()
        overlays = Overlays(held)
        sinks: list[OverlayFolder | PreviewServer] = []
        if folder is not None:
            sinks.append(OverlayFolder(folder, overlays))
        if serve is not None:
            sinks.append(PreviewServer(*serve, overlays).start())
        return cls(held, sinks)

    @property
    def url(self) -> str | None:
        """Where the preview is served (None without `serve`)."""
        return next((s.url for s in self.sinks if isinstance(s, PreviewServer)), None)

    def hold(self, frames: Iterable[RGB]) -> Iterator[RGB]:
        return self.held.hold(frames)

    def close(self) -> None:
        for sink in self.sinks:
            if isinstance(sink, PreviewServer):
                sink.close()


def _handler(preview: PreviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/frame.jpg":
                newest = preview._jpeg
                if newest is None:
                    self._send(503, "text/plain", b"no frame decided yet\n")
                else:
                    self._send(200, "image/jpeg", newest)
            elif path == "/stream.mjpg":
                self._stream(_frames(query))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, frames: int | None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen, sent = 0, 0
            try:
                while sent != frames and (found := preview.next_frame(seen)) is not None:
                    (seen, jpeg), sent = found, sent + 1
                    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n")
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer went away

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the run's own output is what the terminal shows."""

    return Handler


def _frames(query: str) -> int | None:
    """`frames=N` in a query: end the stream after N frames (a snapshot for `curl`, a page
    that finishes loading); None (stream until the run ends) without it or when not a count."""
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "frames" and value.isdigit() and int(value) > 0:
            return int(value)
    return None
