"""The Python API: `track()` for a whole video, `Predictor` for scripts written against sam2.

Both run the same engine as `treemem run`, in memory: no files are written.

```python
import treemem

result = treemem.track("clip.mp4", "first_frame_mask.png", checkpoint="sam2.1_hiera_large.pt")
result.masks          # (T, H, W) uint8 object ids, 0 = background
result.record         # the search tree (TreeRecord)
```

`Predictor` mirrors sam2's `SAM2VideoPredictor` (`init_state`, `add_new_mask`,
`add_new_points_or_box`, `propagate_in_video`, `reset_state`) and yields each frame as soon as
the search has decided it, so it can drive a live display.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from treemem.backend import Backend
from treemem.engine import Engine
from treemem.io.masks import compose_ids, mask_prompts, read_mask, validate_mask
from treemem.registry import REGISTRY
from treemem.strategy import StrategySet
from treemem.tree import TreeRecord
from treemem.types import (
    BoolArray,
    Closing,
    ConfigError,
    FrameDecision,
    InputError,
    Prompt,
    TreememError,
)

UInt8Array = npt.NDArray[np.uint8]

VideoInput = str | os.PathLike[str] | npt.NDArray[np.uint8] | Any
"""A video: an mp4 path, a folder of JPEG/PNG frames, a saved synthetic video folder, a
`treemem.backends.synthetic_video.SyntheticVideo`, or (sam2 backend) a (T, H, W, 3) uint8
RGB array."""

PromptInput = Prompt | Sequence[Prompt] | str | os.PathLike[str] | npt.NDArray[np.integer[Any]]
"""Prompts: `Prompt` records, or a mask of object ids on `prompt_frame` as an (H, W) integer
array or a PNG path (palette PNG, or grayscale 0/1 or 0/255 for one object)."""

BackendName = Literal["sam2", "synthetic"]


@dataclass(frozen=True, eq=False)
class TrackResult:
    """One tracked video.

    masks: (T, H, W) uint8 object ids per frame (0 = background; where objects overlap the
    higher id wins, as in the palette PNGs `treemem run` writes); frames before an object's
    first prompt are background for it; the array is read-only. `record` is the whole search
    tree; `decisions` says which tree node gave each object's mask on each frame, in the order
    they were decided.
    """

    masks: UInt8Array
    objects: tuple[int, ...]
    record: TreeRecord
    decisions: tuple[FrameDecision, ...]
    strategy: str
    first_frame: int
    seconds: float
    """Wall time of the search and mask retrieval (not of opening the video or the model)."""

    @property
    def num_frames(self) -> int:
        return int(self.masks.shape[0])

    def mask(self, obj: int, frame: int) -> BoolArray:
        """(H, W) mask of object `obj` on `frame`."""
        self._check_object(obj)
        return np.asarray(self.masks[frame] == obj)

    def object_masks(self) -> dict[int, BoolArray]:
        """Object id -> its (T, H, W) boolean masks (a mapping view of `masks`)."""
        return {obj: np.asarray(self.masks == obj) for obj in self.objects}

    def seconds_per_frame(self) -> float:
        """Search time per tracked frame (frames from the first prompt on)."""
        return self.seconds / max(1, self.num_frames - self.first_frame)

    def _check_object(self, obj: int) -> None:
        if obj not in self.objects:
            raise InputError(f"object {obj} was not tracked (objects: {list(self.objects)})")


def track(
    video: VideoInput | None,
    prompts: PromptInput,
    strategy: str | StrategySet | Any = "sam2long",
    backend: BackendName | Backend | None = None,
    overrides: Mapping[str, object] | None = None,
    max_lag: int | None = None,
    *,
    prompt_frame: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    config: str | None = None,
    device: str | None = None,
    offload: bool = False,
    image_size: int | None = None,
    model: Any = None,
    seed: int = 0,
) -> TrackResult:
    """Track the prompted objects through `video`; return every frame's masks and the tree.

    Args:
        video: an mp4, a frame folder, a saved synthetic video folder, a `SyntheticVideo`,
            or a (T, H, W, 3) uint8 array; None when `backend` is a `Backend` instance (it
            reads its own frames).
        prompts: `Prompt` records, or a mask of object ids on `prompt_frame` (array or PNG).
        strategy: a registered strategy set's name (see `treemem strategies`), a built
            `StrategySet`, or a strategy parameter record (anything with `build()`).
        backend: "sam2", "synthetic" or a `Backend` instance. Default: "synthetic" for a
            synthetic video, "sam2" otherwise.
        overrides: parameter overrides for a named strategy, as `--set` takes them
            (`{"P": 2, "delta_iou": "0.3"}`; text is parsed).
        max_lag: decide each frame at most this many frames late (live use). None (default)
            is exact: the result equals the best pathway traced back from the last frame.
        prompt_frame: the frame a mask given as an array or PNG is on.
        checkpoint: the sam2 backend's checkpoint (.pt), as `treemem run --checkpoint`.
        config: the sam2 model config (default: inferred from the checkpoint's name).
        device: "cpu", "cuda", "cuda:1", ... (default: cuda when present).
        offload: keep frames and memories in host memory (long videos).
        image_size: the sam2 model's input resolution (default: the config's).
        model: a sam2 model already built (`treemem.backends.sam2.load_model`), used
            instead of loading `checkpoint`.
        seed: the synthetic backend's noise seed.

    Raises:
        TreememError: a subclass that says what is wrong with the input and how to fix it.
    """
    if backend is None:
        backend = "synthetic" if _is_synthetic(video) else "sam2"
    predictor = Predictor(
        backend,
        strategy,
        overrides=overrides,
        max_lag=max_lag,
        checkpoint=checkpoint,
        config=config,
        device=device,
        offload=offload,
        image_size=image_size,
        model=model,
        seed=seed,
    )
    with predictor.init_state(video) as state:
        for prompt in as_prompts(prompts, state.frame_size, state.num_frames, prompt_frame):
            state.add_prompt(prompt)
        masks = np.zeros((state.num_frames, *state.frame_size), dtype=np.uint8)
        started = time.perf_counter()
        for frame, obj_ids, frame_masks in predictor.propagate_in_video(state):
            masks[frame] = compose_ids(list(zip(obj_ids, frame_masks, strict=True)),
                                       state.frame_size)
        seconds = time.perf_counter() - started
        masks.setflags(write=False)
        return TrackResult(
            masks=masks,
            objects=tuple(state.obj_ids),
            record=state.record,
            decisions=state.decisions,
            strategy=predictor.strategy.name,
            first_frame=min(p.frame for p in state.prompts),
            seconds=seconds,
        )


def as_prompts(
    prompts: PromptInput, frame_size: tuple[int, int], num_frames: int, frame: int = 0
) -> list[Prompt]:
    """Normalise `track`'s `prompts` argument to `Prompt` records, checked against the video."""
    if isinstance(prompts, Prompt):
        return [prompts]
    if isinstance(prompts, (str, os.PathLike)):
        ids = read_mask(Path(prompts))
        name = f"mask {prompts}"
    elif isinstance(prompts, np.ndarray):
        if not np.issubdtype(prompts.dtype, np.integer) and prompts.dtype != np.bool_:
            raise InputError(f"a prompt mask needs integer object ids, got dtype {prompts.dtype}")
        if prompts.size and (prompts.min() < 0 or prompts.max() > 255):
            raise InputError("a prompt mask's object ids must be in 0..255")
        ids = prompts.astype(np.uint8)
        name = "the prompt mask"
    else:
        found = list(prompts)
        if not all(isinstance(p, Prompt) for p in found):
            raise InputError("prompts must be Prompt records, a mask array or a mask PNG path")
        return found
    if not 0 <= frame < num_frames:
        raise InputError(f"prompt_frame {frame} is outside the video (0..{num_frames - 1})")
    validate_mask(ids, frame_size, name=name)
    return mask_prompts(ids, frame)


# --- the predictor ------------------------------------------------------------------------------


@dataclass(eq=False)
class PredictorState(Closing):
    """What `Predictor.init_state` returns (sam2's `inference_state`): one video, its prompts,
    and after `propagate_in_video` the search tree and decisions.

    A context manager: leaving it closes the video file.
    """

    num_frames: int
    frame_size: tuple[int, int]
    """(height, width) of the video."""
    video: VideoInput | None = field(repr=False)
    prompts: list[Prompt] = field(default_factory=list)
    record: TreeRecord = field(default_factory=TreeRecord, repr=False)
    decisions: tuple[FrameDecision, ...] = field(default=(), repr=False)
    _backend: Backend | None = field(default=None, repr=False)
    _closers: ExitStack = field(default_factory=ExitStack, repr=False)

    @property
    def obj_ids(self) -> list[int]:
        """The prompted object ids, ascending (sam2's order of `obj_ids` is insertion order;
        treemem's is ascending, which is also the order of the yielded masks)."""
        return sorted({p.obj for p in self.prompts})

    def add_prompt(self, prompt: Prompt) -> None:
        """Add a prompt record (what the `add_new_*` methods build); one per object and frame."""
        self._check_frame(prompt.frame)
        if prompt.mask is not None and prompt.mask.shape != self.frame_size:
            raise InputError(
                f"the mask for object {prompt.obj} is {prompt.mask.shape}, the video is "
                f"{self.frame_size} (height, width)"
            )
        if not 0 < prompt.obj <= 255:
            raise InputError(f"object ids must be in 1..255 (palette PNG ids), got {prompt.obj}")
        self.prompts[:] = [
            p for p in self.prompts if (p.obj, p.frame) != (prompt.obj, prompt.frame)
        ]
        self.prompts.append(prompt)

    def close(self) -> None:
        """Close the video file (the state's prompts and tree stay readable)."""
        self._closers.close()


    def _check_frame(self, frame: int) -> None:
        if not 0 <= frame < self.num_frames:
            raise InputError(f"frame {frame} is outside the video (0..{self.num_frames - 1})")


class Predictor:
    """A sam2-style video predictor that runs a treemem strategy set.

    ```python
    predictor = treemem.Predictor("sam2", "sam2long", checkpoint="sam2.1_hiera_large.pt")
    with predictor.init_state("clip.mp4") as state:
        predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=first_mask)
        for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
            ...  # masks: (len(obj_ids), H, W) bool, yielded once the frame is decided
    ```

    Differences from sam2's predictor: masks are numpy booleans at video resolution, not
    logits; `add_new_*` return `(frame_idx, obj_ids)` (the prompt frame's masks come out of
    `propagate_in_video`, which yields every frame from the first prompt on, prompt frames
    included); tracking runs forward only. Adding prompts after a propagation and
    propagating again reruns the search from the first prompt with every prompt given.

    The sam2 model is loaded once, on the first `init_state`, and serves every video.
    """

    def __init__(
        self,
        backend: BackendName | Backend,
        strategy: str | StrategySet | Any = "sam2long",
        *,
        overrides: Mapping[str, object] | None = None,
        max_lag: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        config: str | None = None,
        device: str | None = None,
        offload: bool = False,
        image_size: int | None = None,
        model: Any = None,
        seed: int = 0,
    ) -> None:
        if max_lag is not None and max_lag < 0:
            raise InputError(f"max_lag must be >= 0, got {max_lag}")
        if isinstance(backend, str) and backend not in ("sam2", "synthetic"):
            raise ConfigError(f"unknown backend {backend!r}; use 'sam2', 'synthetic' or a Backend")
        self.strategy: StrategySet = build_strategy(strategy, overrides)
        self.max_lag = max_lag
        self._backend_spec = backend
        self._instance_used = False
        self._sam2 = _Sam2Options(checkpoint, config, device, offload, image_size, model)
        self._seed = seed

    # --- sam2's API ------------------------------------------------------------------------

    def init_state(self, video: VideoInput | None = None) -> PredictorState:
        """Open `video` (None when the predictor was given a `Backend` instance)."""
        closers = ExitStack()
        try:
            backend = self._open_backend(video, closers)
        except BaseException:
            closers.close()
            raise
        return PredictorState(
            num_frames=backend.num_frames,
            frame_size=backend.frame_size,
            video=video,
            _backend=backend,
            _closers=closers,
        )

    def add_new_mask(
        self, inference_state: PredictorState, frame_idx: int, obj_id: int, mask: npt.ArrayLike
    ) -> tuple[int, list[int]]:
        """Prompt object `obj_id` on `frame_idx` with an (H, W) mask (nonzero = object)."""
        array = np.asarray(mask)
        if array.ndim != 2:
            raise InputError(f"a mask prompt is (H, W), got shape {array.shape}")
        inference_state.add_prompt(Prompt(obj_id, frame_idx, mask=array != 0))
        return frame_idx, inference_state.obj_ids

    def add_new_points_or_box(
        self,
        inference_state: PredictorState,
        frame_idx: int,
        obj_id: int,
        points: npt.ArrayLike | None = None,
        labels: npt.ArrayLike | None = None,
        clear_old_points: bool = True,
        box: npt.ArrayLike | None = None,
    ) -> tuple[int, list[int]]:
        """Prompt with points (M, 2) xy pixels and labels (M,) (1 object, 0 background),
        and/or a box (x0, y0, x1, y1) in pixels. With `clear_old_points=False` the points
        add to this object's earlier points on the same frame."""
        height, width = inference_state.frame_size
        xy = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64)
        flags = np.ones(len(xy), np.int64) if labels is None else np.asarray(labels)
        if xy.ndim != 2 or xy.shape[1] != 2 or flags.shape != (len(xy),):
            raise InputError(
                f"points need shape (M, 2) and labels (M,), got {xy.shape} and {flags.shape}"
            )
        if not np.isin(flags, (0, 1)).all():
            raise InputError("point labels must be 1 (object) or 0 (background)")
        outside = (xy[:, 0] < 0) | (xy[:, 0] >= width) | (xy[:, 1] < 0) | (xy[:, 1] >= height)
        if outside.any():
            raise InputError(
                f"point {xy[outside][0].tolist()} is outside the {width}x{height} frame"
            )
        corners = None
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise InputError(
                    f"box {[x0, y0, x1, y1]} is not a box inside the {width}x{height} frame"
                )
            corners = (x0, y0, x1, y1)
        if corners is None and not len(xy):
            raise InputError("give points (with labels) or a box")
        old_points: tuple[tuple[float, float], ...] = ()
        old_labels: tuple[int, ...] = ()
        if not clear_old_points:
            for p in inference_state.prompts:
                if (p.obj, p.frame) == (obj_id, frame_idx):
                    old_points, old_labels = p.points, p.labels
                    corners = corners if corners is not None else p.box
        prompt = Prompt(
            obj_id,
            frame_idx,
            box=corners,
            points=old_points + tuple((float(x), float(y)) for x, y in xy),
            labels=old_labels + tuple(int(v) for v in flags),
        )
        inference_state.add_prompt(prompt)
        return frame_idx, inference_state.obj_ids

    def propagate_in_video(
        self,
        inference_state: PredictorState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], BoolArray]]:
        """Track every prompted object; yield `(frame_idx, obj_ids, masks)` per frame, in frame
        order, as soon as every object's mask for it is final.

        masks: (len(obj_ids), H, W) bool, in `obj_ids` order (an object not yet prompted on
        that frame has an empty mask). Tracking starts at the first prompt frame
        (`start_frame_idx`, if given, must be that frame) and covers
        `max_frame_num_to_track` frames after it (default: to the end).
        """
        state = inference_state
        if reverse:
            raise InputError("treemem tracks forward only; reverse=True is not supported")
        if not state.prompts:
            raise InputError("no prompt yet; call add_new_mask or add_new_points_or_box first")
        first = min(p.frame for p in state.prompts)
        if start_frame_idx is not None and start_frame_idx != first:
            raise InputError(
                f"tracking starts at the first prompt frame ({first}), got start_frame_idx "
                f"{start_frame_idx}"
            )
        last = state.num_frames - 1
        if max_frame_num_to_track is not None:
            last = min(last, first + max_frame_num_to_track)
        backend = state._backend
        if backend is None:
            backend = self._open_backend(state.video, state._closers)
        state._backend = None  # a backend serves one search: node ids restart with each
        record = TreeRecord()
        state.record = record
        state.decisions = ()
        engine = Engine(self.strategy, backend, record=record, max_lag=self.max_lag)
        yield from _frames_in_order(engine, backend, state, first, last)

    def reset_state(self, inference_state: PredictorState) -> None:
        """Forget every prompt and result of `inference_state` (the video stays open)."""
        inference_state.prompts.clear()
        inference_state.record = TreeRecord()
        inference_state.decisions = ()

    # --- backends ----------------------------------------------------------------------------

    def _open_backend(self, video: VideoInput | None, closers: ExitStack) -> Backend:
        spec = self._backend_spec
        if not isinstance(spec, str):
            if video is not None:
                raise InputError(
                    "this predictor was given a Backend instance, which reads its own frames; "
                    "pass video=None"
                )
            if self._instance_used:
                raise InputError(
                    "a Backend instance serves one search; give the predictor backend='sam2' or "
                    "'synthetic' to track again, or a new instance"
                )
            self._instance_used = True
            return spec
        if video is None:
            raise InputError(f"backend {spec!r} needs a video")
        if spec == "synthetic":
            return _open_synthetic(video, self._seed)
        return self._sam2.open(video, closers)


def build_strategy(
    strategy: str | StrategySet | Any, overrides: Mapping[str, object] | None = None
) -> StrategySet:
    """A `StrategySet` from a registered name (with overrides), a parameter record, or itself."""
    if isinstance(strategy, str):
        built: StrategySet = REGISTRY.create(strategy, overrides).build()
        return built
    if overrides:
        raise ConfigError(
            "overrides apply to a strategy given by name; for a parameter record use "
            "dataclasses.replace(record, ...)"
        )
    if isinstance(strategy, StrategySet):
        return strategy
    build = getattr(strategy, "build", None)
    if callable(build) and not isinstance(strategy, type):
        result = build()
        if isinstance(result, StrategySet):
            return result
    raise ConfigError(
        f"strategy must be a registered name, a StrategySet or a parameter record with build(), "
        f"got {strategy!r}"
    )


def _frames_in_order(
    engine: Engine, backend: Backend, state: PredictorState, first: int, last: int
) -> Iterator[tuple[int, list[int], BoolArray]]:
    """Gather each frame's masks from the engine's decisions; yield complete frames in order."""
    obj_ids = state.obj_ids
    starts = {obj: min(p.frame for p in state.prompts if p.obj == obj) for obj in obj_ids}
    empty = np.zeros(state.frame_size, dtype=bool)
    pending: dict[int, dict[int, BoolArray]] = {}
    decisions: list[FrameDecision] = []
    next_frame = first
    prompts = list(state.prompts)
    for decision in engine.run(prompts, frames=range(first, last + 1)):
        decisions.append(decision)
        state.decisions = tuple(decisions)
        if decision.frame > last:
            continue
        pending.setdefault(decision.frame, {})[decision.obj] = np.array(
            (backend.mask_logits(decision.node) > 0), dtype=bool
        )
        while next_frame <= last:
            masks = pending.get(next_frame, {})
            active = [obj for obj in obj_ids if starts[obj] <= next_frame]
            if any(obj not in masks for obj in active):
                break
            del pending[next_frame]
            stacked = np.stack([masks.get(obj, empty) for obj in obj_ids])
            yield next_frame, obj_ids, stacked
            next_frame += 1
    if next_frame <= last:
        raise TreememError(
            f"frame {next_frame} was not decided for every object; this is a treemem bug, "
            "please report it"
        )


# --- opening backends ---------------------------------------------------------------------------


def _synthetic_video_class() -> type[Any]:
    cls: type[Any] = importlib.import_module("treemem.backends.synthetic_video").SyntheticVideo
    return cls


def _is_synthetic(video: object) -> bool:
    """A `SyntheticVideo`, or a folder `SyntheticVideo.save` wrote."""
    if isinstance(video, (str, os.PathLike)):
        return (Path(video) / "video.json").is_file()
    return video is not None and isinstance(video, _synthetic_video_class())


def _open_synthetic(video: VideoInput, seed: int) -> Backend:
    synthetic = importlib.import_module("treemem.backends.synthetic")
    if isinstance(video, (str, os.PathLike)):
        from treemem.commands.run import open_synthetic

        backend, _, _ = open_synthetic(Path(video), seed=seed)
        return backend
    if not isinstance(video, _synthetic_video_class()):
        raise InputError(
            "the synthetic backend tracks a SyntheticVideo or a folder SyntheticVideo.save wrote, "
            f"got {type(video).__name__}"
        )
    opened: Backend = synthetic.SyntheticBackend(video, seed=seed)
    return opened


@dataclass(frozen=True)
class _FrameArray:
    """Frames held in memory, (T, H, W, 3) uint8, read like a video file."""

    frames: npt.NDArray[np.uint8]

    def read(self, index: int) -> npt.NDArray[np.uint8]:
        return np.array(self.frames[index])


@dataclass
class _Sam2Options:
    """The sam2 backend's model settings; the model loads once and serves every video."""

    checkpoint: str | os.PathLike[str] | None
    config: str | None
    device: str | None
    offload: bool
    image_size: int | None
    model: Any

    def open(self, video: VideoInput, closers: ExitStack) -> Backend:
        module = import_sam2_backend()
        if self.model is None:
            self._check()
        read: Callable[[int], npt.NDArray[np.uint8]]
        if isinstance(video, (str, os.PathLike)):
            from treemem.io.video import open_video

            source = closers.enter_context(open_video(Path(video)))
            read, num_frames, frame_size = source.read, source.num_frames, source.frame_size
        else:
            frames = getattr(video, "frames", video)
            if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[3] != 3:
                raise InputError(
                    "the sam2 backend reads an mp4, a frame folder, a SyntheticVideo or a "
                    f"(T, H, W, 3) uint8 array, got {type(video).__name__}"
                )
            read = _FrameArray(frames.astype(np.uint8, copy=False)).read
            num_frames, frame_size = int(frames.shape[0]), (int(frames.shape[1]),
                                                            int(frames.shape[2]))
        if self.model is None:
            self.model = self._load(module)
        backend: Backend = module.Sam2Backend(
            self.model, read, num_frames, frame_size, offload=self.offload
        )
        return backend

    def _check(self) -> None:
        """What can be checked before the video and the model are opened."""
        if self.checkpoint is None:
            raise InputError(
                "the sam2 backend needs checkpoint=PATH (e.g. sam2.1_hiera_tiny.pt from the SAM 2 "
                "release) or model=..., or use backend='synthetic'"
            )
        path = Path(self.checkpoint)
        if not path.is_file():
            raise InputError(f"checkpoint not found: {path}; give the path of a .pt file")
        if self.image_size is not None and self.image_size <= 0:
            raise InputError(f"image_size must be > 0, got {self.image_size}")

    def _load(self, module: Any) -> Any:
        return module.load_model(
            Path(str(self.checkpoint)),
            config=self.config,
            device=self.device,
            image_size=self.image_size,
        )


def import_sam2_backend() -> Any:
    """`treemem.backends.sam2`, or an `InputError` naming the missing extra (torch, sam2)."""
    try:
        return importlib.import_module("treemem.backends.sam2")
    except ImportError as error:
        if (error.name or "").startswith("treemem"):
            raise
        raise InputError(
            f"the sam2 backend needs `pip install 'treemem[sam2]'` (missing: {error.name})"
        ) from None


__all__ = [
    "Predictor",
    "PredictorState",
    "TrackResult",
    "as_prompts",
    "build_strategy",
    "import_sam2_backend",
    "track",
]
