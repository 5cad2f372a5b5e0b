"""Masks over video frames: an mp4 to watch, a PNG montage for a paper, thumbnails for the tree.

A run directory is what `treemem run` writes: `masks/00000.png` (DAVIS palette PNGs, pixel
value = object id, 0 = background), `tree.jsonl` and `run.json`. Each object gets its DAVIS
palette colour; with a second run the two are drawn side by side, each panel titled with its
strategy (from run.json) or its directory name. Frames come from `treemem.io.video`, masks
from `treemem.io.masks`; PyAV and Pillow are imported only when needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from treemem.io.masks import davis_palette as flat_davis_palette
from treemem.io.masks import read_mask
from treemem.io.video import VideoSource, open_video
from treemem.types import InputError

RGB = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.uint8]

PANEL_GAP = 8
"""Pixels of white between side-by-side panels and montage tiles."""


def davis_palette() -> RGB:
    """(256, 3) the DAVIS / PASCAL VOC palette: 0 black, 1 dark red, 2 green, 3 olive, ..."""
    return np.asarray(flat_davis_palette(), dtype=np.uint8).reshape(256, 3)


def colorize(
    frame: RGB, labels: Labels, alpha: float = 0.55, objects: Sequence[int] | None = None
) -> RGB:
    """Blend each object's palette colour over `frame` and outline it in full colour.

    frame: (H, W, 3) uint8; labels: (H, W) uint8 object ids (0 background); `objects` limits
    the drawing to those ids.
    """
    if labels.shape != frame.shape[:2]:
        raise InputError(f"mask is {labels.shape[1]}x{labels.shape[0]} but the frame is "
                         f"{frame.shape[1]}x{frame.shape[0]}")
    palette = davis_palette()
    shown = labels > 0 if objects is None else np.isin(labels, list(objects))
    colors = palette[labels].astype(np.float32)
    out = frame.astype(np.float32)
    out[shown] = (1 - alpha) * out[shown] + alpha * colors[shown]
    edge = np.zeros_like(shown)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge &= shown
    out[edge] = colors[edge]
    blended: RGB = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return blended


# --- input ------------------------------------------------------------------------------------


def open_frames(path: str | Path) -> VideoSource:
    """An mp4 (or any PyAV-readable video) or a folder of JPEG/PNG frames; a synthetic
    video folder (video.json beside frames/) reads its frames/."""
    path = Path(path)
    if (path / "video.json").is_file() and (path / "frames").is_dir():
        path = path / "frames"
    return open_video(path)


@dataclass(frozen=True)
class RunMasks:
    """The masks of one `treemem run` output directory."""

    directory: Path
    name: str

    def read(self, frame: int, shape: tuple[int, int]) -> Labels:
        """Frame `frame`'s object ids; all background where the run wrote no mask."""
        path = self.directory / "masks" / f"{frame:05d}.png"
        if not path.exists():
            return np.zeros(shape, dtype=np.uint8)
        return read_mask(path)


def open_run(run_dir: str | Path) -> RunMasks:
    """Check that `run_dir` holds masks and name it by its strategy (run.json) or folder."""
    directory = Path(run_dir)
    if not (directory / "masks").is_dir():
        raise InputError(f"{directory} has no masks/ folder: is it a `treemem run` output?")
    name = directory.resolve().name
    info_path = directory / "run.json"
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{info_path}: not JSON ({error})") from None
        strategy = info.get("strategy") if isinstance(info, dict) else None
        if isinstance(strategy, dict):
            strategy = strategy.get("name")
        if isinstance(strategy, str):
            name = strategy
    return RunMasks(directory, name)


# --- composition ------------------------------------------------------------------------------


def compose(frame: RGB, runs: Sequence[RunMasks], index: int, titles: bool = True) -> RGB:
    """One panel per run (masks over `frame`), side by side, each titled when several."""
    shape = (frame.shape[0], frame.shape[1])
    panels = [colorize(frame, run.read(index, shape)) for run in runs]
    if titles and len(runs) > 1:
        panels = [_caption(panel, run.name) for panel, run in zip(panels, runs, strict=True)]
    return _hstack(panels)


def write_video(
    run_dir: str | Path,
    video: str | Path,
    out: str | Path,
    compare: str | Path | None = None,
    fps: float | None = None,
    frames: Sequence[int] | None = None,
) -> int:
    """Write the overlay (side by side with `compare`'s masks if given) as H.264 mp4.

    Returns the number of frames written. `fps` defaults to the video's rate (25 when it
    has none, e.g. a frame folder); `frames` to every frame of the video.
    """
    av = _av()
    runs = _runs(run_dir, compare)
    with open_frames(video) as source, av.open(str(out), mode="w") as container:
        order = list(range(source.num_frames)) if frames is None else list(frames)
        _check_frames(order, source.num_frames)
        rate = fps or source.fps or 25.0
        written = 0
        stream: Any = None
        for index in order:
            image = _even(compose(source.read(index), runs, index))
            if stream is None:
                stream = container.add_stream("libx264", rate=_fraction(rate))
                stream.width, stream.height = image.shape[1], image.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20"}
            packet_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(packet_frame))
            written += 1
        if stream is not None:
            container.mux(stream.encode(None))
    return written


def montage(
    run_dir: str | Path,
    video: str | Path,
    frames: Sequence[int],
    compare: str | Path | None = None,
    width: int | None = None,
) -> RGB:
    """A grid of the chosen frames: one row per run, one column per frame, each tile
    captioned with its frame number (and the first tile of each row with the run's name).

    `width` scales the result to that many pixels wide (keeping its aspect).
    """
    if not frames:
        raise InputError("a montage needs at least one frame")
    runs = _runs(run_dir, compare)
    with open_frames(video) as source:
        _check_frames(frames, source.num_frames)
        images = {index: source.read(index) for index in frames}
    rows = []
    for run in runs:
        tiles = []
        for column, index in enumerate(frames):
            image = images[index]
            tile = colorize(image, run.read(index, (image.shape[0], image.shape[1])))
            label = f"frame {index}"
            if column == 0 and len(runs) > 1:
                label = f"{run.name}  {label}"
            tiles.append(_caption(tile, label))
        rows.append(_hstack(tiles))
    grid = _vstack(rows)
    if width is not None and width != grid.shape[1]:
        height = max(1, round(grid.shape[0] * width / grid.shape[1]))
        resized = _pil().fromarray(grid).resize((width, height), _pil().Resampling.LANCZOS)
        grid = np.asarray(resized, dtype=np.uint8)
    return grid


def save_png(image: RGB, path: str | Path) -> None:
    _pil().fromarray(image).save(str(path), optimize=True)


def mask_thumbnails(
    run_dir: str | Path,
    video: str | Path,
    frames: Sequence[int],
    obj: int | None = None,
    height: int = 120,
) -> dict[int, RGB]:
    """Frame -> small (about `height` px high) image of the chosen mask over the frame, for
    `draw_tree(thumbnails=...)`; only object `obj` is drawn when given."""
    run = open_run(run_dir)
    out = {}
    with open_frames(video) as source:
        _check_frames(frames, source.num_frames)
        for index in sorted(set(frames)):
            image = source.read(index)
            labels = run.read(index, (image.shape[0], image.shape[1]))
            tile = colorize(image, labels, alpha=0.6, objects=None if obj is None else [obj])
            step = max(1, image.shape[0] // height)
            out[index] = np.ascontiguousarray(tile[::step, ::step])
    return out


def _runs(run_dir: str | Path, compare: str | Path | None) -> list[RunMasks]:
    return [open_run(run_dir)] + ([open_run(compare)] if compare is not None else [])


def _check_frames(frames: Sequence[int], num_frames: int) -> None:
    outside = [index for index in frames if not 0 <= index < num_frames]
    if outside:
        raise InputError(f"frame {outside[0]} is outside the video (frames 0 to {num_frames - 1})")


# --- small image helpers --------------------------------------------------------------------


def _hstack(images: Sequence[RGB]) -> RGB:
    height = max(image.shape[0] for image in images)
    gap = np.full((height, PANEL_GAP, 3), 255, dtype=np.uint8)
    parts: list[RGB] = []
    for i, image in enumerate(images):
        if i:
            parts.append(gap)
        parts.append(_pad_to(image, height, image.shape[1]))
    return np.concatenate(parts, axis=1)


def _vstack(images: Sequence[RGB]) -> RGB:
    width = max(image.shape[1] for image in images)
    gap = np.full((PANEL_GAP, width, 3), 255, dtype=np.uint8)
    parts: list[RGB] = []
    for i, image in enumerate(images):
        if i:
            parts.append(gap)
        parts.append(_pad_to(image, image.shape[0], width))
    return np.concatenate(parts, axis=0)


def _pad_to(image: RGB, height: int, width: int) -> RGB:
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def _even(image: RGB) -> RGB:
    """H.264 with 4:2:0 chroma needs even width and height: pad one white pixel if odd."""
    height, width = image.shape[0] + image.shape[0] % 2, image.shape[1] + image.shape[1] % 2
    return image if (height, width) == image.shape[:2] else _pad_to(image, height, width)


def _caption(image: RGB, text: str) -> RGB:
    """`text` on a dark band across the top-left corner of a copy of `image`."""
    pil = _pil()
    from PIL import ImageDraw, ImageFont

    canvas = pil.fromarray(image)
    size = max(10, image.shape[0] // 22)
    font: Any
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 4)
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - left, pad - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas, dtype=np.uint8)


def _fraction(rate: float) -> Any:
    from fractions import Fraction

    return Fraction(rate).limit_denominator(1001)


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise InputError("writing or decoding video needs PyAV: pip install av") from None
    return av


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading and writing PNGs needs Pillow: pip install pillow") from None
    return Image
