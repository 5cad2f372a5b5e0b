"""Small generated datasets in each benchmark's layout, with predictions, for checking the
protocols against the benchmarks' official evaluators.

Everything is a pure function of the seed: `scripts/official_fixtures.py` writes these
folders, runs the official code on them and stores its numbers in tests/fixtures/official/;
tests/test_protocols.py writes the same folders and checks treemem's numbers against those.

The scenes hold what the protocols disagree about: objects that appear after the first
frame, leave and come back, frames without any object, an id missing from the first frame
(DAVIS scores it as an empty object), void (255) bands, large and one-pixel objects (MOSE's
adaptive boundary radius), and predictions that drift, vanish, swap ids and add spurious
blobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]

HEIGHT, WIDTH = 48, 64


def _ellipse(
    center: tuple[float, float], radii: tuple[float, float], size: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]]
    return np.asarray(
        ((ys - center[0]) / radii[0]) ** 2 + ((xs - center[1]) / radii[1]) ** 2 <= 1.0
    )


def scene(
    seed: int,
    frames: int,
    objects: int,
    *,
    late: dict[int, int] | None = None,
    gone: dict[int, tuple[int, int]] | None = None,
    empty_frames: tuple[int, ...] = (),
    void: bool = False,
    big: int | None = None,
    size: tuple[int, int] = (HEIGHT, WIDTH),
    object_scale: float | None = None,
) -> tuple[U8, U8]:
    """(ground truth, prediction), each (frames, H, W) uint8 object ids.

    late: object -> first frame it is on; gone: object -> (first, last) frame it is away;
    empty_frames: frames without any object; big: an object covering most of the frame;
    size: (H, W), positions scaled with it, and object sizes by `object_scale` (default the
    same).
    """
    height, width = size
    scale = height / HEIGHT
    grow = scale if object_scale is None else object_scale
    rng = np.random.default_rng(seed)
    late, gone = late or {}, gone or {}
    gt = np.zeros((frames, height, width), np.uint8)
    pred = np.zeros_like(gt)
    for obj in range(1, objects + 1):
        start = np.array([rng.uniform(10, HEIGHT - 10), rng.uniform(10, WIDTH - 10)]) * scale
        velocity = rng.uniform(-1.2, 1.2, size=2) * scale
        radii = (rng.uniform(3, 9) * grow, rng.uniform(3, 12) * grow)
        if obj == big:
            radii = (height * 0.45, width * 0.45)
        drift = np.zeros(2)
        for t in range(frames):
            center = start + velocity * t
            center = np.clip(center, [4, 4], [height - 5, width - 5])
            away = gone.get(obj)
            present = t >= late.get(obj, 0) and not (away and away[0] <= t <= away[1])
            present = present and t not in empty_frames
            if present:
                gt[t][_ellipse(tuple(center), radii, size)] = obj
            drift += rng.normal(0, 0.6 * scale, size=2)
            roll = rng.uniform()
            if roll < 0.1:
                continue  # the prediction misses the object
            if roll < 0.2 and not present:
                where = (rng.uniform(5, height - 5), rng.uniform(5, width - 5))
                blob = _ellipse(where, (3 * scale, 4 * scale), size)
                pred[t][blob] = obj  # a spurious blob while the object is away
                continue
            if present or roll < 0.3:
                shifted = _ellipse(
                    tuple(center + drift), (radii[0] * 1.1, radii[1] * 0.9), size
                )
                pred[t][shifted] = obj
    for t in range(frames):
        if rng.uniform() < 0.1 and objects >= 2:
            swapped = pred[t].copy()
            swapped[pred[t] == 1], swapped[pred[t] == 2] = 2, 1
            pred[t] = swapped
    if void:
        for t in range(0, frames, 3):
            band = slice(int(rng.integers(0, height - 3)), None)
            rows = gt[t, band][:2]
            rows[rows == 0] = 255
    tiny = (height - 2, width - 2)
    gt[frames // 2, tiny[0], tiny[1]] = 1  # a one-pixel piece of object 1
    return gt, pred


def _png(path: Path, ids: U8, binary: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 255, 255, 255] if binary else _davis_palette()
    image.putpalette(palette)
    image.save(path)


def _davis_palette() -> list[int]:
    """The VOC / DAVIS palette (kept here so the official evaluators' environment, which has
    no treemem, can run this module)."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette += [red, green, blue]
    return palette


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGB").save(path, quality=80)


# --- one writer per layout ------------------------------------------------------------------


def davis_scenes() -> dict[str, tuple[U8, U8]]:
    """Frame 0 holds ids 1 and 3 (2 is absent: scored as an empty object); void bands."""
    scenes = {}
    gt, pred = scene(1, 14, 3, gone={1: (5, 8)}, late={2: 100}, void=True)
    pred[pred == 2] = 0
    scenes["bike"] = (gt, pred)
    gt, pred = scene(2, 12, 2, empty_frames=(4, 5), void=True)
    scenes["camel"] = (gt, pred)
    gt, pred = scene(3, 10, 1)
    scenes["dog"] = (gt, pred)
    return scenes


def write_davis(root: Path) -> Path:
    """DAVIS 2017 layout under `root`; predictions under `root/pred`. Returns root."""
    names = []
    for name, (gt, pred) in davis_scenes().items():
        names.append(name)
        for t in range(gt.shape[0]):
            _jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", t)
            _png(root / "Annotations" / "480p" / name / f"{t:05d}.png", gt[t])
            _png(root / "pred" / name / f"{t:05d}.png", pred[t])
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return root


SAV_STEP = 4


def sav_scenes() -> dict[str, tuple[U8, U8]]:
    scenes = {}
    scenes["sav_000001"] = scene(11, 25, 2, late={2: 6}, gone={1: (9, 14)})
    scenes["sav_000002"] = scene(12, 21, 3, empty_frames=(8,))
    return scenes


def write_sav(root: Path) -> Path:
    """SA-V val layout (per-object folders 000, 001, ... at every 4th frame); predictions in
    the same per-object layout under `root/pred`."""
    names = []
    for name, (gt, pred) in sav_scenes().items():
        names.append(name)
        objects = int(max(gt.max(), 1))
        for t in range(gt.shape[0]):
            _jpeg(root / "JPEGImages_24fps" / name / f"{t:05d}.jpg", t)
            if t % SAV_STEP:
                continue
            for obj in range(1, objects + 1):
                folder = f"{obj - 1:03d}"
                truth = (gt[t] == obj).astype(np.uint8)
                _png(root / "Annotations_6fps" / name / folder / f"{t:05d}.png", truth, True)
                guess = (pred[t] == obj).astype(np.uint8)
                _png(root / "pred" / name / folder / f"{t:05d}.png", guess, True)
    (root / "sav_val.txt").write_text("\n".join(names) + "\n")
    return root


LVOS_STEP = 5


def lvos_scenes() -> dict[str, tuple[U8, U8]]:
    scenes = {}
    scenes["aB3dE5fG"] = scene(21, 51, 2, late={2: 17}, gone={1: (20, 31)})
    scenes["Hi7jK9lM"] = scene(22, 41, 2, empty_frames=(20,))
    scenes["nO1pQ3rS"] = scene(23, 36, 1, void=True)
    return scenes


LVOS_UNSEEN = ("Hi7jK9lM",)


def write_lvos(root: Path) -> Path:
    """LVOS valid layout (8-digit names, every 5th frame annotated, valid_meta.json,
    unseen_videos.txt); predictions on the annotated frames under `root/pred`."""
    meta: dict[str, dict[str, object]] = {}
    for name, (gt, pred) in lvos_scenes().items():
        annotated = list(range(0, gt.shape[0], LVOS_STEP))
        objects = {}
        for obj in range(1, int(gt[gt != 255].max()) + 1):
            present = [t for t in annotated if (gt[t] == obj).any()]
            start, end = present[0], present[-1]
            objects[str(obj)] = {
                "frame_range": {
                    "start": str(start),
                    "end": str(end),
                    "frame_nums": str((end - start) // LVOS_STEP + 1),
                }
            }
        meta[name] = {"objects": objects}
        for t in range(gt.shape[0]):
            _jpeg(root / "JPEGImages" / name / f"{t:08d}.jpg", t)
            if t % LVOS_STEP == 0:
                _png(root / "Annotations" / name / f"{t:08d}.png", gt[t])
                _png(root / "pred" / name / f"{t:08d}.png", pred[t])
    (root / "valid_meta.json").write_text(json.dumps({"videos": meta}, indent=1))
    (root / "unseen_videos.txt").write_text("\n".join(LVOS_UNSEEN) + "\n")
    return root


MOSE_SIZE = (240, 320)
"""Large enough that MOSE's adaptive radius (0.1 x sqrt(area)) is often below 0.008 x the
diagonal (3.2 px): both of the toolkit's boundary branches are taken."""


def mose_scenes() -> dict[str, tuple[U8, U8]]:
    scenes = {}
    scenes["a1b2c3d4"] = scene(
        31, 16, 3, gone={1: (4, 7), 2: (11, 12)}, big=3, size=MOSE_SIZE, object_scale=1.5
    )
    scenes["e5f6g7h8"] = scene(
        32, 13, 3, gone={3: (0, 4)}, empty_frames=(6,), size=MOSE_SIZE, object_scale=1.5
    )
    return scenes


def write_mose(root: Path) -> Path:
    """MOSEv2 valid layout (dense annotations, meta.json as the toolkit reads it);
    predictions under `root/pred`."""
    meta: dict[str, dict[str, object]] = {}
    for name, (gt, pred) in mose_scenes().items():
        objects = sorted({int(v) for v in np.unique(gt) if v not in (0, 255)})
        meta[name] = {
            "length": gt.shape[0],
            "height": gt.shape[1],
            "width": gt.shape[2],
            "objects": {str(obj): {} for obj in objects},
        }
        for t in range(gt.shape[0]):
            _jpeg(root / "JPEGImages" / name / f"{t:05d}.jpg", t, gt.shape[1:])
            _png(root / "Annotations" / name / f"{t:05d}.png", gt[t])
            _png(root / "pred" / name / f"{t:05d}.png", pred[t])
    (root / "meta.json").write_text(json.dumps({"videos": meta}, indent=1))
    return root


WRITERS = {"davis": write_davis, "sav": write_sav, "lvos": write_lvos, "mose": write_mose}
