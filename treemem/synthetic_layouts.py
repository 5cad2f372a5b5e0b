"""The synthetic suite written in a benchmark's own layout, so `treemem bench --protocol`
runs end to end with the synthetic backend (no model, no download).

`treemem bench --make-synthetic DIR --protocol NAME` writes DIR in NAME's layout (frames as
JPEG, annotations as the benchmark stores them, its meta files) plus `DIR/synthetic/<video>/`,
the saved synthetic videos the synthetic backend reads. The second object of every video is
annotated only from a third of the way in (LVOS, SA-V, MOSE: an object that appears late;
DAVIS keeps both from frame 0, as its protocol needs); the synthetic objects leave the frame
and come back, so disappearance and reappearance are there too.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from treemem.io.masks import write_palette_png as _write_png
from treemem.protocols import LVOS_STEP, get_protocol
from treemem.types import InputError, UInt8Array

SAV_STEP = 4
"""SA-V: frames at 24 fps, annotations at 6 fps."""


def _jpeg(path: Path, frame: UInt8Array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame, mode="RGB").save(path, quality=95)


def write_palette_png(path: Path, ids: UInt8Array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_png(path, ids)


def _late(gt: UInt8Array, step: int) -> UInt8Array:
    """The annotation with object 2 removed before a third of the video (on an annotated
    frame where it is in view, so it can be prompted there)."""
    annotated = gt.copy()
    frames = gt.shape[0]
    start = next(
        (t for t in range(frames // 3 // step * step, frames, step) if (gt[t] == 2).any()), None
    )
    if start is not None:
        annotated[:start][annotated[:start] == 2] = 0
    return annotated


def _davis(root: Path, name: str, video: Any) -> None:
    for t in range(video.num_frames):
        _jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", video.frames[t])
        write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", video.gt[t])


def _sav(root: Path, name: str, video: Any) -> None:
    gt = _late(video.gt, SAV_STEP)
    for t in range(video.num_frames):
        _jpeg(root / "JPEGImages_24fps" / name / f"{t:05d}.jpg", video.frames[t])
        if t % SAV_STEP == 0:
            for obj in range(1, video.num_objects + 1):
                path = root / "Annotations_6fps" / name / f"{obj - 1:03d}" / f"{t:05d}.png"
                write_palette_png(path, (gt[t] == obj).astype(np.uint8))


def _lvos(root: Path, name: str, video: Any) -> dict[str, Any]:
    gt = _late(video.gt, LVOS_STEP)
    annotated = list(range(0, video.num_frames, LVOS_STEP))
    for t in range(video.num_frames):
        _jpeg(root / "JPEGImages" / name / f"{t:08d}.jpg", video.frames[t])
        if t % LVOS_STEP == 0:
            write_palette_png(root / "Annotations" / name / f"{t:08d}.png", gt[t])
    objects = {}
    for obj in range(1, video.num_objects + 1):
        present = [t for t in annotated if (gt[t] == obj).any()]
        if len(present) >= 3:
            start, end = present[0], present[-1]
            frame_range = {"start": str(start), "end": str(end),
                           "frame_nums": str((end - start) // LVOS_STEP + 1)}
            objects[str(obj)] = {"frame_range": frame_range}
    return {"objects": objects}


def _mose(root: Path, name: str, video: Any) -> dict[str, Any]:
    gt = _late(video.gt, 1)
    for t in range(video.num_frames):
        _jpeg(root / "JPEGImages" / name / f"{t:05d}.jpg", video.frames[t])
        write_palette_png(root / "Annotations" / name / f"{t:05d}.png", gt[t])
    height, width = video.frame_size
    objects = sorted({int(v) for v in np.unique(gt) if v != 0})
    return {"length": video.num_frames, "height": height, "width": width,
            "objects": {str(obj): {} for obj in objects}}


_WRITERS: dict[str, Callable[[Path, str, Any], dict[str, Any] | None]] = {
    "davis": _davis, "sav": _sav, "lvos": _lvos, "mose": _mose,
}


def write_layout(
    folder: Path, protocol: str, count: int, seed: int, *, num_frames: int = 60
) -> list[str]:
    """Write `count` synthetic videos (two objects each) in `protocol`'s layout under
    `folder`; returns the video names."""
    get_protocol(protocol)
    if count < 1:
        raise InputError(f"--count must be >= 1, got {count}")
    make_suite = importlib.import_module("treemem.backends.synthetic_video").make_suite
    videos = make_suite(seed, count, num_frames=num_frames, num_objects=2)
    names = [f"video_{i:03d}" for i in range(count)]
    meta = {}
    for name, video in zip(names, videos, strict=True):
        video.save(folder / "synthetic" / name)
        record = _WRITERS[protocol](folder, name, video)
        if record is not None:
            meta[name] = record
    listing = "\n".join(names) + "\n"
    if protocol == "davis":
        (folder / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
        (folder / "ImageSets" / "2017" / "val.txt").write_text(listing, encoding="utf-8")
    elif protocol == "sav":
        (folder / "sav_val.txt").write_text(listing, encoding="utf-8")
    elif protocol == "lvos":
        (folder / "valid_meta.json").write_text(json.dumps({"videos": meta}, indent=1))
        unseen = "\n".join(names[1::2]) + "\n"  # every other video an unseen category
        (folder / "unseen_videos.txt").write_text(unseen, encoding="utf-8")
    else:
        (folder / "meta.json").write_text(json.dumps({"videos": meta}, indent=1))
    return names
