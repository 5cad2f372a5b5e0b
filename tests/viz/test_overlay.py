"""Mask overlays: colours, the side-by-side mp4, the montage and tree thumbnails."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from story import write_frames, write_run

from treemem.cli import main
from treemem.types import InputError
from treemem.viz.overlay import colorize, davis_palette, mask_thumbnails, montage, write_video

SIZE = (47, 63)  # odd on purpose: H.264 needs even sizes
FRAMES = 12


@pytest.fixture
def run_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    video = write_frames(tmp_path / "frames", FRAMES, SIZE)
    first = write_run(tmp_path / "sam2long", FRAMES, SIZE, shift=0, strategy="sam2long")
    second = write_run(tmp_path / "greedy", FRAMES, SIZE, shift=9, strategy="greedy")
    return video, first, second


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_davis_palette() -> None:
    palette = davis_palette()
    assert palette.shape == (256, 3)
    assert palette[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                                    [0, 0, 128]]


def test_colorize_blends_inside_and_outlines() -> None:
    frame = np.full((10, 10, 3), 200, np.uint8)
    labels = np.zeros((10, 10), np.uint8)
    labels[2:8, 2:8] = 2
    out = colorize(frame, labels, alpha=0.5)
    assert (out[0, 0] == 200).all()  # background untouched
    assert out[4, 4].tolist() == [100, 164, 100]  # halfway to (0, 128, 0)
    assert out[2, 4].tolist() == [0, 128, 0]  # the outline in full colour
    assert (colorize(frame, labels, objects=[1]) == frame).all()
    with pytest.raises(InputError, match="mask is"):
        colorize(frame, labels[:5])


def test_side_by_side_mp4(run_pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    video, first, second = run_pair
    out = tmp_path / "overlay.mp4"
    assert write_video(first, video, out, compare=second, fps=10) == FRAMES
    frames = decoded(out)
    assert len(frames) == FRAMES
    height, width = SIZE
    assert frames[0].shape == (height + 1, 2 * width + 8, 3)  # one row padded to even


def test_montage_and_thumbnails(run_pair: tuple[Path, Path, Path]) -> None:
    video, first, second = run_pair
    grid = montage(first, video, [0, 5, 11], compare=second)
    height, width = SIZE
    assert grid.shape == (2 * height + 8, 3 * width + 2 * 8, 3)
    dark_red = (np.abs(grid.astype(int) - [128, 0, 0]).max(axis=-1) < 3).sum()
    assert dark_red > 0  # object 1's outline
    assert montage(first, video, [0, 5], width=60).shape[1] == 60
    with pytest.raises(InputError, match="outside the video"):
        montage(first, video, [FRAMES])
    thumbnails = mask_thumbnails(first, video, [0, 6, 6], obj=2, height=20)
    assert sorted(thumbnails) == [0, 6]
    assert thumbnails[0].shape[0] <= 2 * 20


def test_cli_overlay(run_pair: tuple[Path, Path, Path], tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    video, first, second = run_pair
    code = main(["overlay", str(first), "--video", str(video), "--out",
                 str(tmp_path / "o.mp4"), "--compare", str(second), "--montage",
                 str(tmp_path / "m.png"), "--montage-frames", "0,3,6"])
    assert code == 0
    assert len(decoded(tmp_path / "o.mp4")) == FRAMES
    assert Image.open(tmp_path / "m.png").size == (3 * SIZE[1] + 16, 2 * SIZE[0] + 8)
    assert main(["overlay", str(first), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "names no video" in capsys.readouterr().err
    assert main(["overlay", str(tmp_path), "--video", str(video), "--montage",
                 str(tmp_path / "y.png")]) == 2
    assert "no masks/ folder" in capsys.readouterr().err


def test_tree_thumbnails_from_a_run(run_pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from story import story_tree

    video, first, _ = run_pair
    story_tree(FRAMES, ((4, 5),)).save_jsonl(first / "tree.jsonl")
    out = tmp_path / "tree.png"
    assert main(["tree", str(first), "--out", str(out), "--thumbnails", str(video)]) == 0
    assert Image.open(out).size[0] > 1000
