"""Synthetic videos with ground truth, for testing and benchmarking the search without a model.

Each object of a video is a flat-coloured shape that moves along a path which leaves the
frame and comes back; a look-alike (same shape, nearly the same colour) wanders near it; an
opaque bar (the occluder) sweeps across it. The ground truth is what a tracker should output:
the object's visible pixels (hidden behind the occluder or outside the frame: not in the GT).

Besides frames and GT a video keeps the layers a simulated tracker needs (the look-alikes'
visible masks, how much of each object is visible and how much the occluder hides), so the
synthetic backend can be a function of the scene rather than of hand-written scripts.

numpy only; Pillow is imported lazily by `save` and `load`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from treemem.types import InputError, Prompt

U8Array = npt.NDArray[np.uint8]
F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SHAPES = ("ellipse", "rectangle", "diamond")
FORMAT_VERSION = 1


def davis_palette() -> list[int]:
    """The 256-colour DAVIS palette (the VOC bit-interleaving scheme), flat RGB."""
    palette: list[int] = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [red, green, blue]
    return palette


@dataclass(frozen=True, eq=False)
class SyntheticVideo:
    """A rendered synthetic video and its ground truth.

    frames: (T, H, W, 3) uint8 RGB. gt: (T, H, W) uint8, 0 background, i = object i's
    visible pixels. lookalike: (T, H, W) uint8, i = visible pixels of object i's look-alike.
    visibility: (T, n) visible fraction of each object's full (amodal) area; occluded:
    (T, n) fraction of it hidden by an occluder; lookalike_visibility, lookalike_occluded:
    (T, n) the same for the look-alikes. `params` holds the generator arguments.
    """

    frames: U8Array
    gt: U8Array
    lookalike: U8Array
    visibility: F64Array
    occluded: F64Array
    lookalike_visibility: F64Array
    lookalike_occluded: F64Array
    params: dict[str, int] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.visibility.shape[1])

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def object_mask(self, obj: int, frame: int) -> BoolArray:
        """(H, W) GT mask of object `obj` (1-based) on `frame`."""
        return np.asarray(self.gt[frame] == obj)

    def first_frame_prompts(self) -> list[Prompt]:
        """Every object prompted with its GT mask on frame 0 (empty if it is not in view):
        the protocol of the synthetic suite."""
        return [
            Prompt(obj, 0, mask=self.object_mask(obj, 0)) for obj in range(1, self.num_objects + 1)
        ]

    def save(self, folder: Path | str) -> Path:
        """Write `frames/00000.png...`, `gt/00000.png...` (DAVIS palette), `video.json`
        (generator parameters) and `layers.npz` (the tracker layers) under `folder`."""
        from PIL import Image

        root = Path(folder)
        (root / "frames").mkdir(parents=True, exist_ok=True)
        (root / "gt").mkdir(parents=True, exist_ok=True)
        palette = davis_palette()
        for index in range(self.num_frames):
            name = f"{index:05d}.png"
            Image.fromarray(self.frames[index], mode="RGB").save(root / "frames" / name)
            label = Image.fromarray(self.gt[index], mode="P")
            label.putpalette(palette)
            label.save(root / "gt" / name)
        meta: dict[str, Any] = {"format": FORMAT_VERSION, "generator": "treemem.synthetic"}
        meta.update(self.params)
        (root / "video.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        np.savez_compressed(
            root / "layers.npz",
            lookalike=self.lookalike,
            visibility=self.visibility,
            occluded=self.occluded,
            lookalike_visibility=self.lookalike_visibility,
            lookalike_occluded=self.lookalike_occluded,
        )
        return root

    @classmethod
    def load(cls, folder: Path | str) -> SyntheticVideo:
        """Read a folder written by `save`."""
        from PIL import Image

        root = Path(folder)
        try:
            meta = json.loads((root / "video.json").read_text(encoding="utf-8"))
            frame_files = sorted((root / "frames").glob("*.png"))
            gt_files = sorted((root / "gt").glob("*.png"))
            with np.load(root / "layers.npz") as layers:
                stored = {name: layers[name] for name in layers.files}
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{root} is not a synthetic video folder ({error})") from None
        if not frame_files or len(frame_files) != len(gt_files):
            raise InputError(
                f"{root}: need as many gt/*.png as frames/*.png, got {len(gt_files)} and "
                f"{len(frame_files)}"
            )
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in frame_files])
        gt = np.stack([np.asarray(Image.open(p)) for p in gt_files]).astype(np.uint8)
        params = {k: int(v) for k, v in meta.items() if k not in ("format", "generator")}
        return cls(
            frames=frames,
            gt=gt,
            lookalike=stored["lookalike"].astype(np.uint8),
            visibility=stored["visibility"].astype(np.float64),
            occluded=stored["occluded"].astype(np.float64),
            lookalike_visibility=stored["lookalike_visibility"].astype(np.float64),
            lookalike_occluded=stored["lookalike_occluded"].astype(np.float64),
            params=params,
        )


# --- generator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    kind: str
    radius_y: float
    radius_x: float
    color: tuple[int, int, int]

    def inside(self, dy: npt.NDArray[np.float64], dx: npt.NDArray[np.float64]) -> BoolArray:
        """Which offsets (from the centre) the shape covers; broadcasts."""
        ny, nx = dy / self.radius_y, dx / self.radius_x
        if self.kind == "ellipse":
            return np.asarray(ny * ny + nx * nx <= 1.0)
        if self.kind == "rectangle":
            return np.asarray((np.abs(ny) <= 1.0) & (np.abs(nx) <= 1.0))
        return np.asarray(np.abs(ny) + np.abs(nx) <= 1.0)

    def area(self) -> float:
        """Pixel count of the full shape (rasterised on a large canvas at an integer centre)."""
        reach = int(np.ceil(max(self.radius_y, self.radius_x))) + 1
        offsets = np.arange(-reach, reach + 1, dtype=np.float64)
        return float(self.inside(offsets[:, None], offsets[None, :]).sum())


def _path(
    times: list[float], ys: list[float], xs: list[float], num_frames: int
) -> tuple[F64Array, F64Array]:
    t = np.arange(num_frames, dtype=np.float64)
    return np.interp(t, times, ys), np.interp(t, times, xs)


def _inside_point(
    rng: np.random.Generator, height: int, width: int, margin: float
) -> tuple[float, float]:
    return (
        float(rng.uniform(margin, height - margin)),
        float(rng.uniform(margin, width - margin)),
    )


def _object_path(
    rng: np.random.Generator, num_frames: int, height: int, width: int, shape: _Shape
) -> tuple[F64Array, F64Array]:
    """Inside, inside, fully out past one edge, along outside, back in, inside."""
    reach = max(shape.radius_y, shape.radius_x)
    margin = 1.6 * reach
    last = num_frames - 1
    t_out = float(rng.uniform(0.45, 0.6) * last)
    t_away = t_out + float(rng.uniform(0.06, 0.12) * last)
    t_back = t_away + float(rng.uniform(0.1, 0.16) * last)
    edge = int(rng.integers(4))
    out_y, out_x = _inside_point(rng, height, width, margin)
    away_y, away_x = _inside_point(rng, height, width, margin)
    beyond = 1.4 * reach
    if edge == 0:
        out_y, away_y = -beyond, -beyond
    elif edge == 1:
        out_y, away_y = height + beyond, height + beyond
    elif edge == 2:
        out_x, away_x = -beyond, -beyond
    else:
        out_x, away_x = width + beyond, width + beyond
    points = [
        (0.0, *_inside_point(rng, height, width, margin)),
        (float(rng.uniform(0.15, 0.3) * last), *_inside_point(rng, height, width, margin)),
        (t_out, out_y, out_x),
        (t_away, away_y, away_x),
        (t_back, *_inside_point(rng, height, width, margin)),
        (float(last), *_inside_point(rng, height, width, margin)),
    ]
    times, ys, xs = (list(c) for c in zip(*points, strict=True))
    return _path(times, ys, xs, num_frames)


def _lookalike_path(
    rng: np.random.Generator,
    num_frames: int,
    height: int,
    width: int,
    shape: _Shape,
    near: list[tuple[float, float, float]],
) -> tuple[F64Array, F64Array]:
    """A path that stays in the frame and passes through the given (time, y, x) points."""
    reach = max(shape.radius_y, shape.radius_x)
    margin = 1.2 * reach
    points = [(0.0, *_inside_point(rng, height, width, margin))]
    for time, y, x in sorted(near):
        if points[-1][0] < time < num_frames - 1:
            y_in = float(np.clip(y, margin, height - margin))
            x_in = float(np.clip(x, margin, width - margin))
            points.append((time, y_in, x_in))
    points.append((float(num_frames - 1), *_inside_point(rng, height, width, margin)))
    times, ys, xs = (list(c) for c in zip(*points, strict=True))
    return _path(times, ys, xs, num_frames)


def _occluder_track(
    rng: np.random.Generator,
    along: F64Array,
    t_cross: int,
    thickness: float,
    reach: float,
    scale: float,
) -> F64Array:
    """Centre of a bar moving at constant speed that is on the object at `t_cross` and clear
    of it (with a margin) on frames 0-2, preferring to move against the object's motion."""
    times = np.arange(along.shape[0], dtype=np.float64) - t_cross
    motion = float(np.sign(along[min(t_cross + 1, along.shape[0] - 1)] - along[t_cross]) or 1.0)
    clearance = thickness / 2 + reach + 2.0
    base = float(rng.uniform(1.2, 2.2) * scale)
    for speed in base * np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0]):
        for direction in (-motion, motion):
            position = along[t_cross] + direction * speed * times
            if np.all(np.abs(position[:3] - along[:3]) > clearance):
                return np.asarray(position, dtype=np.float64)
    return np.asarray(along[t_cross] + 1e3 * scale * np.sign(times - 0.5), dtype=np.float64)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = rng.uniform(0, 1)
    rgb = np.clip(np.abs(((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6) - 3) - 1, 0, 1)
    rgb = 60 + rgb * 180
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def make_video(
    seed: int,
    num_frames: int = 60,
    height: int = 96,
    width: int = 128,
    num_objects: int = 1,
) -> SyntheticVideo:
    """Render one seeded synthetic video (same arguments, same video, bit for bit).

    Every object is fully visible on frame 0 (the prompt frame), is swept over by its own
    occluder once before it leaves the frame, leaves past one edge after about half the video
    and comes back; its look-alike waits beside the occluder's crossing and near the exit.
    """
    if num_frames < 8 or height < 32 or width < 32 or not 1 <= num_objects <= 8:
        raise InputError(
            "make_video needs num_frames >= 8, height and width >= 32 and 1..8 objects, got "
            f"{num_frames}, {height}x{width}, {num_objects}"
        )
    rng = np.random.default_rng([seed, num_frames, height, width, num_objects])
    scale = min(height, width) / 96.0
    last = num_frames - 1
    ys = np.arange(height, dtype=np.float64)[:, None]
    xs = np.arange(width, dtype=np.float64)[None, :]

    shapes: list[_Shape] = []
    lookalikes: list[_Shape] = []
    paths: list[tuple[F64Array, F64Array]] = []
    lookalike_paths: list[tuple[F64Array, F64Array]] = []
    bars: list[tuple[F64Array, float, bool, tuple[int, int, int]]] = []
    for _ in range(num_objects):
        radius_y = float(rng.uniform(8.0, 12.0) * scale)
        radius_x = float(rng.uniform(8.0, 13.0) * scale)
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        shape = _Shape(kind, radius_y, radius_x, _random_color(rng))
        tint = rng.integers(-14, 15, size=3)
        twin_color = tuple(int(c) for c in np.clip(np.array(shape.color) + tint, 0, 255))
        twin = _Shape(shape.kind, radius_y, radius_x, (twin_color[0], twin_color[1], twin_color[2]))
        path_y, path_x = _object_path(rng, num_frames, height, width, shape)

        # The occluder crosses the object at t_cross, clear of it on the first frames.
        t_cross = int(rng.integers(max(3, int(0.15 * last)), max(4, int(0.4 * last))))
        vertical = bool(rng.integers(2))
        along = path_x if vertical else path_y
        reach = radius_x if vertical else radius_y
        thickness = float(rng.uniform(2.3, 3.2) * reach)
        position = _occluder_track(rng, along, t_cross, thickness, reach, scale)
        bars.append((position, thickness, vertical, (40, 40, 48)))

        # The look-alike sits just beside the occluder's crossing and near the exit.
        side = float(rng.choice([-1.0, 1.0]))
        gap = thickness / 2 + (radius_x if vertical else radius_y) + 3 * scale
        cross_y = path_y[t_cross] + (0.0 if vertical else side * gap)
        cross_x = path_x[t_cross] + (side * gap if vertical else 0.0)
        exit_t = int(np.argmax(np.arange(num_frames) > 0.45 * last))
        near = [
            (float(t_cross - 2), cross_y, cross_x),
            (float(t_cross + 3), cross_y, cross_x),
            (float(exit_t), float(path_y[exit_t]) + side * 2.6 * radius_y, float(path_x[exit_t])),
        ]
        twin_path = _lookalike_path(rng, num_frames, height, width, twin, near)
        # Keep the prompt frame clean: the look-alike starts away from the object.
        start_gap = np.hypot(twin_path[0][0] - path_y[0], twin_path[1][0] - path_x[0])
        if start_gap < 3.0 * max(radius_y, radius_x):
            flip_y = float(np.clip(height - path_y[0], 1.2 * radius_y, height - 1.2 * radius_y))
            flip_x = float(np.clip(width - path_x[0], 1.2 * radius_x, width - 1.2 * radius_x))
            twin_path[0][0], twin_path[1][0] = flip_y, flip_x
        shapes.append(shape)
        lookalikes.append(twin)
        paths.append((path_y, path_x))
        lookalike_paths.append(twin_path)

    background = _background(rng, height, width)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    gt = np.zeros((num_frames, height, width), dtype=np.uint8)
    twin_gt = np.zeros((num_frames, height, width), dtype=np.uint8)
    visibility = np.zeros((num_frames, num_objects))
    occluded = np.zeros((num_frames, num_objects))
    twin_visibility = np.zeros((num_frames, num_objects))
    twin_occluded = np.zeros((num_frames, num_objects))
    areas = np.array([s.area() for s in shapes])
    for t in range(num_frames):
        canvas = background.copy()
        twin_layer = np.zeros((height, width), dtype=np.uint8)
        object_layer = np.zeros((height, width), dtype=np.uint8)
        twin_full: list[BoolArray] = []
        for i, twin in enumerate(lookalikes):
            region = twin.inside(ys - lookalike_paths[i][0][t], xs - lookalike_paths[i][1][t])
            twin_full.append(region)
            canvas[region] = twin.color
            twin_layer[region] = i + 1
        full: list[BoolArray] = []
        for i, shape in enumerate(shapes):
            region = shape.inside(ys - paths[i][0][t], xs - paths[i][1][t])
            full.append(region)
            canvas[region] = shape.color
            object_layer[region] = i + 1
            twin_layer[region] = 0
        cover = np.zeros((height, width), dtype=bool)
        for position, thickness, vertical, color in bars:
            coordinate = xs if vertical else ys
            band = np.abs(coordinate - position[t]) <= thickness / 2
            bar = np.broadcast_to(band, (height, width))
            canvas[bar] = color
            cover |= bar
        object_layer[cover] = 0
        twin_layer[cover] = 0
        noise = rng.normal(0.0, 4.0, size=(height, width, 3))
        frames[t] = np.clip(canvas + noise, 0, 255).astype(np.uint8)
        gt[t] = object_layer
        twin_gt[t] = twin_layer
        for i in range(num_objects):
            visibility[t, i] = float((object_layer == i + 1).sum()) / areas[i]
            occluded[t, i] = float((full[i] & cover).sum()) / areas[i]
            twin_visibility[t, i] = float((twin_layer == i + 1).sum()) / areas[i]
            twin_occluded[t, i] = float((twin_full[i] & cover).sum()) / areas[i]
    params = {
        "seed": seed,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "num_objects": num_objects,
    }
    return SyntheticVideo(
        frames=frames,
        gt=gt,
        lookalike=twin_gt,
        visibility=np.minimum(visibility, 1.0),
        occluded=np.minimum(occluded, 1.0),
        lookalike_visibility=np.minimum(twin_visibility, 1.0),
        lookalike_occluded=np.minimum(twin_occluded, 1.0),
        params=params,
    )


def _background(rng: np.random.Generator, height: int, width: int) -> F64Array:
    """A smooth two-colour gradient with a faint texture."""
    low = rng.uniform(90, 170, size=3)
    high = rng.uniform(90, 170, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ys = np.linspace(0, 1, height)[:, None]
    xs = np.linspace(0, 1, width)[None, :]
    ramp = np.clip((np.cos(angle) * xs + np.sin(angle) * ys + 1) / 2, 0, 1)[..., None]
    texture = rng.normal(0, 6, size=(height, width, 1))
    return np.asarray(low + (high - low) * ramp + texture, dtype=np.float64)


def make_suite(
    seed: int = 0,
    count: int = 12,
    num_frames: int = 60,
    height: int = 96,
    width: int = 128,
    num_objects: int = 1,
) -> list[SyntheticVideo]:
    """The seeded benchmark suite: `count` videos with seeds derived from `seed`."""
    seeds = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint32)
    size = {"height": height, "width": width}
    return [
        make_video(int(s), num_frames=num_frames, num_objects=num_objects, **size) for s in seeds
    ]


def region_similarity(prediction: BoolArray, truth: BoolArray) -> float:
    """J: IoU of two (H, W) masks; 1 when both are empty (DAVIS convention)."""
    union = int(np.logical_or(prediction, truth).sum())
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, truth).sum()) / union


def mean_j(predictions: U8Array, video: SyntheticVideo, skip: int = 1) -> float:
    """Mean J over objects and frames of (T, H, W) label predictions, skipping the first
    `skip` frames (the prompt frame copies the GT)."""
    scores = [
        region_similarity(predictions[t] == obj, video.gt[t] == obj)
        for obj in range(1, video.num_objects + 1)
        for t in range(skip, video.num_frames)
    ]
    return float(np.mean(scores)) if scores else float("nan")
