"""A random-weight SAM 2 streamed frame by frame through `treemem.stream` gives the file run's
masks, bit for bit (exact mode), and `max_lag` bounds how late a frame comes out; `treemem run
--live` over a pipe and over a local HTTP server writes the file run's masks, and a stream cut
mid-way keeps what was decided (exit code 3, one line)."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import treemem
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.io.masks import read_mask
from treemem.pipeline.sinks import run_files

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import build_random_model  # noqa: E402

FRAMES = 18
"""At least SAM 2's 16 object pointers: the length a stream's pointer positions assume."""


@pytest.fixture(scope="module")
def scene(torch_threads: None) -> tuple[SyntheticVideo, object]:
    return make_video(2, num_frames=FRAMES, height=64, width=80), build_random_model(
        seed=3, image_size=128
    )


def test_sam2_stream_equals_the_file_run(scene: tuple[SyntheticVideo, object]) -> None:
    video, model = scene
    expected = treemem.track(video.frames, video.gt[0], "sam2long", model=model)
    tracker = treemem.stream("sam2long", model=model, prompts=video.gt[0], keep_record=True)
    results = [r for frame in video.frames for r in tracker.push(frame)] + tracker.close()
    assert [r.frame for r in results] == list(range(FRAMES))
    for result in results:
        assert np.array_equal(result.ids(), expected.masks[result.frame]), result.frame
    assert tracker.decisions == list(expected.decisions)
    assert expected.masks[1:].any()  # the comparison is not between empty masks


@pytest.mark.parametrize("max_lag", [0, 4])
def test_sam2_stream_max_lag(scene: tuple[SyntheticVideo, object], max_lag: int) -> None:
    video, model = scene
    tracker = treemem.stream("sam2long", model=model, prompts=video.gt[0], max_lag=max_lag)
    came_out = {
        r.frame: t for t, frame in enumerate(video.frames) for r in tracker.push(frame)
    }
    came_out |= {r.frame: FRAMES - 1 for r in tracker.close()}
    assert sorted(came_out) == list(range(FRAMES))
    assert all(t - frame <= max_lag for frame, t in came_out.items())


# --- treemem run --live: stdin, a local HTTP server, a stream cut mid-way ---------------------


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory,
            scene: tuple[SyntheticVideo, object]) -> dict[str, Path]:
    """An H.264 mp4 of the synthetic video (index up front, so it streams through a pipe),
    its first-frame mask, a random-weight checkpoint, and the file run's output."""
    av = pytest.importorskip("av")
    from PIL import Image

    video, _ = scene
    folder = tmp_path_factory.mktemp("live")
    clip = folder / "clip.mp4"
    with av.open(str(clip), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10, options={"g": "4"})
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        for frame in video.frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    mask = folder / "mask.png"
    Image.fromarray(video.gt[0]).save(mask)
    checkpoint = folder / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_random_model(seed=5, image_size=128).state_dict()}, checkpoint)
    paths = {"clip": clip, "mask": mask, "checkpoint": checkpoint, "file": folder / "file"}
    done = _treemem(paths, str(clip), paths["file"])
    assert done.returncode == 0, done.stderr
    return paths


def _treemem(paths: dict[str, Path], source: str, out: Path, *extra: str,
             data: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`treemem run` in a child process (a real pipe for stdin), 2 torch threads as here."""
    command = [sys.executable, "-m", "treemem.cli", "run", source, "--mask", str(paths["mask"]),
               "--strategy", "greedy", "--checkpoint", str(paths["checkpoint"]),
               "--image-size", "128", "--device", "cpu", "--out", str(out), "--no-progress",
               *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, input=data, capture_output=True, env=env, timeout=600)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def _masks(out: Path) -> dict[str, bytes]:
    files = sorted((out / "masks").glob("*.png"))
    return {path.name: np.asarray(read_mask(path)).tobytes() for path in files}


@contextmanager
def _http_server(data: bytes, cut_at: int | None = None) -> Iterator[str]:
    """Serve `data` at http://127.0.0.1:PORT/clip.mp4 (loopback only) while the block runs;
    with `cut_at`, the connection closes after that many bytes of the announced length."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if cut_at is None else data[:cut_at])

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_live_from_stdin_equals_the_file_run(encoded: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stdin"
    done = _treemem(encoded, "-", out, "--live", data=encoded["clip"].read_bytes())
    assert done.returncode == 0, done.stderr
    assert f"the source ended after {FRAMES} frames" in done.stdout
    expected = _masks(encoded["file"])
    assert len(expected) == FRAMES and _masks(out) == expected
    report = json.loads((out / "run.json").read_text())
    assert report["video"]["broken"] is None and report["frames"] == FRAMES


def test_live_over_http_equals_the_file_run(encoded: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "http"
    with _http_server(encoded["clip"].read_bytes()) as url:
        done = _treemem(encoded, url, out, "--live", "--max-lag", "0")
    assert done.returncode == 0, done.stderr
    assert _masks(out) == _masks(encoded["file"])  # greedy: max_lag 0 decides the same


@pytest.mark.parametrize("route", ["stdin", "http"])
def test_a_stream_cut_mid_way_keeps_what_was_decided(encoded: dict[str, Path], tmp_path: Path,
                                                     route: str) -> None:
    data = encoded["clip"].read_bytes()
    cut = len(data) // 2
    out = tmp_path / route
    if route == "stdin":
        done = _treemem(encoded, "-", out, "--live", data=data[:cut])
    else:
        with _http_server(data, cut_at=cut) as url:
            done = _treemem(encoded, url, out, "--live")
    assert done.returncode == 3, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert err[0].startswith("treemem: the source broke off after ")
    written = _masks(out)
    report = json.loads((out / "run.json").read_text())
    decoded = report["video"]["frames"]
    assert 0 < decoded < FRAMES and report["video"]["broken"]
    assert list(written) == [f"{t:05d}.png" for t in range(decoded)]
    expected = _masks(encoded["file"])
    assert all(written[name] == expected[name] for name in written)


def test_live_serve_and_overlays_while_the_stream_runs(encoded: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """The preview serves while frames still arrive: half the stream is sent, a frame is read
    from the MJPEG stream, then the rest is sent and the run ends as the file run did."""
    from PIL import Image

    data = encoded["clip"].read_bytes()
    out, overlays = tmp_path / "served", tmp_path / "overlays"
    command = [sys.executable, "-m", "treemem.cli", "run", "-", "--live", "--mask",
               str(encoded["mask"]), "--strategy", "greedy", "--checkpoint",
               str(encoded["checkpoint"]), "--image-size", "128", "--device", "cpu",
               "--out", str(out), "--no-progress", "--max-lag", "0",
               "--serve", "127.0.0.1:0", "--overlays", str(overlays)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    try:
        assert child.stdin is not None and child.stderr is not None
        child.stdin.write(data[: len(data) // 2])
        child.stdin.flush()
        line = child.stderr.readline().decode()
        assert line.startswith("treemem: live preview at http://127.0.0.1:")
        host, port = line.split("http://")[1].strip().rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=300)
        connection.request("GET", "/stream.mjpg?frames=1")
        body = connection.getresponse().read()
        jpeg = body[body.index(b"\xff\xd8") : body.rindex(b"\xff\xd9") + 2]
        assert Image.open(io.BytesIO(jpeg)).size == (80, 64)
        child.stdin.write(data[len(data) // 2 :])
        child.stdin.close()
        assert child.wait(timeout=600) == 0, child.stderr.read().decode()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert _masks(out) == _masks(encoded["file"])
    assert sorted(p.name for p in overlays.iterdir()) == [f"{t:05d}.jpg" for t in range(FRAMES)]


# --- treemem run --live --resume: a killed live run goes on from its snapshot -----------------

LIVE_KILL, LIVE_EVERY = 14, 4



def test_a_killed_live_run_of_a_file_resumes_from_its_snapshot(
    encoded: dict[str, Path], tmp_path: Path
) -> None:
    """SIGKILL at frame 14 of 18, snapshots every 4 frames: the resume skips the 12 frames the
    snapshot pushed, searches from frame 12 on, and writes the uninterrupted run's files."""
    from treemem.pipeline.snapshots import read_snapshot
    from treemem.resume import SNAPSHOT

    whole = tmp_path / "whole"
    done = _treemem(encoded, str(encoded["clip"]), whole, "--live", "--strategy", "sam2long")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    args = ["run", str(encoded["clip"]), "--live", "--mask", str(encoded["mask"]),
            "--strategy", "sam2long", "--checkpoint", str(encoded["checkpoint"]),
            "--image-size", "128", "--device", "cpu", "--out", str(out), "--no-progress",
            "--snapshot-every", str(LIVE_EVERY)]
    driver = Path(__file__).parents[1] / "kill_driver.py"
    killed = subprocess.run([sys.executable, str(driver), str(LIVE_KILL), "0", "2", "--", *args],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None and snapshot.frame == 11  # after the third snapshot's frame
    assert not (out / "run.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "treemem.cli", *args, "--resume"],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert resumed.returncode == 0, resumed.stderr
    assert f"the source ended after {FRAMES} frames" in resumed.stdout
    assert run_files(out) == run_files(whole)
