"""The live preview: the MJPEG stream read by a real HTTP client and parsed part by part, the
page shown in a real headless browser (Debian's chromium, when installed), overlays on disk,
and frames held no longer than until they are decided."""

from __future__ import annotations

import http.client
import io
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import treemem
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.pipeline.frames import FrameResult
from treemem.viz.overlay import colorize
from treemem.viz.preview import (
    BOUNDARY,
    HeldFrames,
    OverlayFolder,
    Overlays,
    PreviewServer,
    to_jpeg,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def video() -> SyntheticVideo:
    return make_video(6, num_frames=24, height=48, width=64)


def live_results(video: SyntheticVideo, held: HeldFrames, max_lag: int | None = 2
                 ) -> Iterator[FrameResult]:
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(video), prompts=video.gt[0],
                             max_lag=max_lag)
    return tracker.track(held.hold(video.frames))


def read_parts(response: http.client.HTTPResponse, count: int) -> list[bytes]:
    """`count` JPEGs of a multipart/x-mixed-replace body, each by its Content-Length."""
    parts = []
    while len(parts) < count:
        line = response.readline()
        if line.strip() == f"--{BOUNDARY}--".encode():
            break
        if line.strip() != f"--{BOUNDARY}".encode():
            continue
        headers = {}
        while (header := response.readline().strip()):
            key, _, value = header.decode().partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(response.read(int(headers["content-length"])))
    return parts


def get(server: PreviewServer, path: str) -> http.client.HTTPResponse:
    host, port = server._server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=30)
    connection.request("GET", path)
    return connection.getresponse()


def test_the_mjpeg_stream_is_each_decided_frame_overlaid(video: SyntheticVideo) -> None:
    held = HeldFrames()
    server = PreviewServer("127.0.0.1", 0, Overlays(held)).start()
    try:
        assert get(server, "/frame.jpg").status == 503  # nothing decided yet
        response = get(server, "/stream.mjpg")
        assert response.status == 200
        assert response.getheader("Content-Type") == (
            f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        )
        results = live_results(video, held)
        first = next(results)
        frame = video.frames[first.frame]
        server.write(first)
        jpeg = read_parts(response, 1)[0]
        assert jpeg == to_jpeg(colorize(frame, first.ids()))  # that frame, its masks drawn
        assert jpeg != to_jpeg(frame) and first.ids().any()
        assert Image.open(io.BytesIO(jpeg)).size == (64, 48)
        for result in results:
            server.write(result)
        assert get(server, "/frame.jpg").status == 200
        page = get(server, "/").read().decode()
        assert 'preview.src = "stream.mjpg" + location.search' in page
        two = get(server, "/stream.mjpg?frames=2")  # the newest frame, then one more
        assert read_parts(two, 1) == [get(server, "/frame.jpg").read()]
        server.show(jpeg)
        assert read_parts(two, 5) == [jpeg]  # and then the closing boundary
        assert get(server, "/nothing").status == 404
    finally:
        server.close()
    assert response.read().endswith(f"--{BOUNDARY}--\r\n".encode())  # closing ends the stream


def test_held_frames_are_let_go_once_decided(video: SyntheticVideo) -> None:
    held = HeldFrames()
    most = 0
    for result in live_results(video, held, max_lag=2):
        most = max(most, len(held.frames))
        held.take(result.frame)
    assert held.frames == {} and 0 < most <= 2 + 2  # the lag, the frame searched, one pushed


def test_overlay_folder_writes_one_jpeg_per_decided_frame(video: SyntheticVideo,
                                                          tmp_path: Path) -> None:
    held = HeldFrames()
    folder = OverlayFolder(tmp_path / "overlays", Overlays(held))
    for result in live_results(video, held):
        folder.write(result)
    names = sorted(p.name for p in (tmp_path / "overlays").iterdir())
    assert names == [f"{t:05d}.jpg" for t in range(video.num_frames)]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_a_headless_browser_shows_the_preview(video: SyntheticVideo, tmp_path: Path) -> None:
    held = HeldFrames()
    overlays = Overlays(held)
    results = list(live_results(video, held, max_lag=0))
    shown = max(results, key=lambda r: int((r.ids() > 0).sum()))  # the most object in view
    drawn = colorize(video.frames[shown.frame], shown.ids())
    server = PreviewServer("127.0.0.1", 0, overlays).start()
    stop = threading.Event()

    def feed() -> None:  # a live source keeps sending; the browser joins mid-stream
        while not stop.is_set():
            server.show(to_jpeg(drawn))
            stop.wait(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    shot = tmp_path / "page.png"
    browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--timeout=60000"]
    page_url = f"{server.url}?frames=3"  # the page finishes loading after 3 frames
    try:
        dom = subprocess.run([*browser, "--dump-dom", page_url], capture_output=True,
                             text=True, timeout=120)
        subprocess.run([*browser, "--window-size=320,240", "--force-device-scale-factor=1",
                        f"--screenshot={shot}", page_url],
                       capture_output=True, timeout=120, check=True)
    finally:
        stop.set()
        feeder.join(timeout=10)
        server.close()
    assert '<p id="status">live: 64x48</p>' in dom.stdout
    page = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    ink = np.abs(page - page[-1, -1]).sum(axis=2) > 0
    top = int(np.flatnonzero(ink.any(axis=1))[0])  # the image is the first thing on the page
    left = int(np.flatnonzero(ink[top])[0])
    painted = page[top : top + 48, left : left + 64]
    decoded = np.asarray(Image.open(io.BytesIO(to_jpeg(drawn))).convert("RGB")).astype(int)
    plain = colorize(video.frames[shown.frame], np.zeros_like(shown.ids())).astype(int)
    assert np.abs(painted - decoded).mean() < 3  # what the browser painted is the overlay
    assert np.abs(painted - plain).mean() > np.abs(painted - decoded).mean() + 1
