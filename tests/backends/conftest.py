"""Shared fixtures for the SAM 2 and SAM 3 backend tests: thread counts, small real videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"
ORACLE = SHARED / "oracle"
VIDEOS = SHARED / "data" / "videos"


@pytest.fixture(scope="session")
def torch_threads() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    torch.set_num_threads(2)  # exactness depends on the thread count


@pytest.fixture(scope="session")
def sam3_threads() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam3", reason="sam3 is not installed (pip install 'treemem[sam3]')")
    torch.set_num_threads(2)  # exactness depends on the thread count


@pytest.fixture(scope="session")
def oracle_frames(torch_threads: None) -> tuple[Path, Callable[[int], np.ndarray], np.ndarray]:
    from PIL import Image

    folder = ORACLE / "case" / "frames"
    if not folder.is_dir():
        pytest.skip("the shared oracle case is not present")
    files = sorted(folder.glob("*.jpg"))

    def read(index: int) -> np.ndarray:
        return np.array(Image.open(files[index]).convert("RGB"))

    mask = np.array(Image.open(ORACLE / "case" / "mask0.png")) > 0
    return folder, read, mask


@pytest.fixture(scope="session")
def cups_clip(tmp_path_factory: pytest.TempPathFactory, torch_threads: None) -> Path:
    """The first 12 frames of a real mp4, downscaled to 320x180 JPEGs (cut at run time)."""
    av = pytest.importorskip("av")

    source = VIDEOS / "02_cups.mp4"
    if not source.exists():
        pytest.skip("the shared videos are not present")
    folder = tmp_path_factory.mktemp("cups")
    with av.open(str(source)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 12:
                break
            image = frame.to_image().resize((320, 180))
            image.save(folder / f"{index:05d}.jpg", quality=95)
    return folder
