"""The Python API: `track()` for a whole video, `Predictor` for scripts written against sam2.

Both go through the same run layer as `treemem run` (`treemem.pipeline`), in memory: no files
are written, and the id maps equal the PNGs `treemem run` writes.

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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from treemem.backend import Backend
from treemem.pipeline.frames import FrameResult, FrameStream, RunDirection, check_direction
from treemem.pipeline.inputs import (
    BACKENDS,
    BackendName,
    ModelCache,
    ModelOptions,
    OpenedVideo,
    PromptInput,
    VideoInput,
    as_prompts,
    check_box,
    check_model_options,
    check_points,
    check_prompt,
    live_backend,
    model_spec,
    open_backend,
)
from treemem.pipeline.live import LivePrompts, LiveTracker
from treemem.pipeline.runner import StrategyChoice, choose_strategy, search_frames, search_sweep
from treemem.pipeline.sinks import IdArraySink
from treemem.pipeline.sweep import SweepStream
from treemem.strategy import StrategySet
from treemem.tree import TreeRecord
from treemem.types import (
    BoolArray,
    Closing,
    ConfigError,
    Direction,
    FrameDecision,
    InputError,
    Prompt,
    UInt8Array,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11; treemem runs on 3.10


@dataclass(frozen=True, eq=False)
class TrackResult:
    """One tracked video.

    masks: (T, H, W) uint8 object ids per frame (0 = background; where objects overlap the
    higher mask logit wins, ties to the lower id, as in the palette PNGs `treemem run` writes
    and sam2's `vos_inference.py`); frames before an object's first prompt are background
    for it; the array is read-only. `record` is the whole search tree; `decisions` says which
    tree node gave each object's mask on each frame, in the order they were decided, and
    `lags` how many frames after it each was decided. `direction` is the way it was tracked:
    backward, the frames after the (last) prompt frame are background; both ways, none are.
    """

    masks: UInt8Array
    objects: tuple[int, ...]
    record: TreeRecord
    decisions: tuple[FrameDecision, ...]
    lags: tuple[int, ...]
    strategy: str
    first_frame: int
    seconds: float
    """Wall time of the search and mask retrieval (not of opening the video or the model)."""
    direction: RunDirection = "forward"

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
        """Search time per tracked frame (from the first prompt frame on, in the direction
        tracked; every frame both ways)."""
        tracked = {
            "forward": self.num_frames - self.first_frame,
            "backward": self.first_frame + 1,
            "both": self.num_frames,
        }[self.direction]
        return self.seconds / max(1, tracked)

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
    progress: bool = False,
    direction: RunDirection = "forward",
    **options: Unpack[ModelOptions],
) -> TrackResult:
    """Track the prompted objects through `video`; return every frame's masks and the tree.

    Args:
        video: an mp4, a frame folder, a saved synthetic video folder, a `SyntheticVideo`,
            or a (T, H, W, 3) uint8 array; None when `backend` is a `Backend` instance (it
            reads its own frames).
        prompts: `Prompt` records, or a mask of object ids on `prompt_frame` (array or PNG).
        strategy: a registered strategy set's name (see `treemem strategies`), a built
            `StrategySet`, or a strategy parameter record (anything with `build()`).
        backend: "sam2", "sam3", "synthetic" or a `Backend` instance. Default: "synthetic"
            for a synthetic video, "sam2" otherwise.
        overrides: parameter overrides for a named strategy, as `--set` takes them
            (`{"P": 2, "delta_iou": "0.3"}`; text is parsed).
        max_lag: decide each frame at most this many frames late (live use). None (default)
            is exact: the result equals the best pathway traced back from the last frame.
        prompt_frame: the frame a mask given as an array or PNG is on.
        progress: show a progress bar on stderr.
        direction: "forward" (default) from the first prompt frame to the end, "backward"
            from the last prompt frame to frame 0 (sam2's `reverse=True`), or "both" (one
            search each way, merged: each object's frames before its first prompt come
            from the backward search), as `treemem run --direction`.
        **options: the model to run, as keywords (`ModelOptions`, which says what each
            means): checkpoint, config, device, offload, image_size, model (one already
            built), seed (synthetic), dtype, compile.

    Raises:
        TreememError: a subclass that says what is wrong with the input and how to fix it.
    """
    choice = choose_strategy(strategy, overrides)
    _check_max_lag(max_lag)
    check_direction(direction)
    with open_backend(video, backend, model_spec(options)) as opened:
        found = as_prompts(prompts, opened.frame_size, opened.num_frames, prompt_frame)
        stream = FrameStream(
            opened.backend, choice.strategy, found, max_lag=max_lag, direction=direction
        )
        sink = IdArraySink.for_video(opened.num_frames, opened.frame_size)
        seconds = search_frames(stream, [sink], progress=progress)
    return _track_result(choice, stream, sink, seconds, direction)


def _track_result(
    choice: StrategyChoice, stream: FrameStream, sink: IdArraySink, seconds: float,
    direction: RunDirection,
) -> TrackResult:
    """One configuration's result, its id maps made read-only."""
    sink.ids.setflags(write=False)
    return TrackResult(
        masks=sink.ids,
        objects=stream.objects,
        record=stream.record,
        decisions=tuple(stream.decisions),
        lags=tuple(stream.lags),
        strategy=choice.name,
        first_frame=stream.first_frame,
        seconds=seconds,
        direction=direction,
    )


StrategyConfig = str | StrategySet | tuple[str, Mapping[str, object]] | Any
"""One configuration of a sweep: what `track` takes as `strategy`, or a (name, overrides)
pair (`("sam2long", {"P": 2})`)."""


def sweep(
    video: VideoInput | None,
    prompts: PromptInput,
    strategies: Sequence[StrategyConfig],
    backend: BackendName | Backend | None = None,
    max_lag: int | None = None,
    *,
    prompt_frame: int = 0,
    progress: bool = False,
    direction: Direction = "forward",
    **options: Unpack[ModelOptions],
) -> list[TrackResult]:
    """Track the prompted objects through `video` under every strategy configuration in one
    pass (`direction` forward or backward); one `TrackResult` per configuration, in order,
    each equal to `track`'s for it (masks, tree record, decisions, lags).

    Per frame the image encoder runs once for all configurations (`treemem.pipeline.sweep`:
    how their proposals are batched, and which memories they share). Each result's
    `seconds` is the whole pass's wall time (all configurations). The other arguments are
    `track`'s.

    ```python
    grid = [("sam2long", {"P": p}) for p in (1, 2, 3, 4)]
    results = treemem.sweep("clip.mp4", "mask.png", grid, checkpoint="sam2.1_hiera_large.pt")
    ```
    """
    choices = [_sweep_choice(item) for item in strategies]
    _check_max_lag(max_lag)
    with open_backend(video, backend, model_spec(options)) as opened:
        found = as_prompts(prompts, opened.frame_size, opened.num_frames, prompt_frame)
        sets = [c.strategy for c in choices]
        swept = SweepStream(opened.backend, sets, found, max_lag, direction=direction)
        sinks = [IdArraySink.for_video(opened.num_frames, opened.frame_size) for _ in choices]
        seconds = search_sweep(swept, [[sink] for sink in sinks], progress=progress)
    return [
        _track_result(choice, one, sink, seconds, direction)
        for choice, one, sink in zip(choices, swept.streams, sinks, strict=True)
    ]


def _sweep_choice(item: StrategyConfig) -> StrategyChoice:
    if isinstance(item, tuple):
        name, overrides = item
        return choose_strategy(name, overrides)
    return choose_strategy(item)


def stream(
    strategy: str | StrategySet | Any = "sam2long",
    *,
    prompts: LivePrompts = None,
    backend: BackendName | Backend | None = None,
    overrides: Mapping[str, object] | None = None,
    max_lag: int | None = None,
    keep_record: bool = False,
    **options: Unpack[ModelOptions],
) -> LiveTracker:
    """Track objects through frames handed over one at a time (a camera, a decoder, frames a
    program makes): a source of unknown length.

    ```python
    tracker = treemem.stream("sam2long", checkpoint="sam2.1_hiera_tiny.pt", prompts=mask)
    for frame in frames:                     # (H, W, 3) uint8 RGB each
        for result in tracker.push(frame):   # the frames this one completes
            ...                              # result.frame, result.ids()
    for result in tracker.close():           # the end of the stream decides the rest
        ...
    ```

    `prompts` (a mask of object ids for frame 0, or `Prompt` records on any frame) may also
    come later: `tracker.push(frame, prompts=mask)` or `tracker.prompt(...)` (a new object,
    or a re-prompt). `tracker.track(frames)` is the pull form over any iterable of frames.
    Exact by default (a frame is emitted once decided; the masks equal `track()`'s on the
    same frames when every prompt is on the first frame); `max_lag` L emits every frame at
    most L frames after it arrived. The other arguments are `track()`'s; `backend` is "sam2"
    (default) or a `Backend` instance that reads its own frames (a `SyntheticBackend`).
    `tracker.record` holds the search tree's open tail only and `tracker.lag_counts` a tally
    of the lags, so memory stays flat however long the stream runs; `keep_record=True` keeps
    the whole record and every decision and lag (`tracker.decisions`, `tracker.lags`: they
    grow with every frame).
    """
    choice = choose_strategy(strategy, overrides)
    _check_max_lag(max_lag)
    tracker = LiveTracker(choice.strategy, live_backend(backend, model_spec(options)),
                          max_lag=max_lag, keep_record=keep_record)
    tracker.prompt(prompts)
    return tracker


def _check_max_lag(max_lag: int | None) -> None:
    if max_lag is not None and max_lag < 0:
        raise InputError(f"max_lag must be >= 0, got {max_lag}")


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
    _opened: OpenedVideo | None = field(default=None, repr=False)

    @property
    def obj_ids(self) -> list[int]:
        """The prompted object ids, ascending (sam2's order of `obj_ids` is insertion order;
        treemem's is ascending, which is also the order of the yielded masks)."""
        return sorted({p.obj for p in self.prompts})

    def add_prompt(self, prompt: Prompt) -> None:
        """Add a prompt record (what the `add_new_*` methods build); one per object and frame."""
        check_prompt(prompt, self.frame_size, self.num_frames)
        self.prompts[:] = [
            p for p in self.prompts if (p.obj, p.frame) != (prompt.obj, prompt.frame)
        ]
        self.prompts.append(prompt)

    def close(self) -> None:
        """Close the video file (the state's prompts and tree stay readable)."""
        if self._opened is not None:
            self._opened.close()


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
    included); `reverse=True` tracks backward from the last prompt frame, and
    `direction="both"` both ways. Adding prompts after a propagation and propagating again
    reruns the search from the first prompt with every prompt given.
    Per-object masks overlap as each object was tracked, as sam2's predictor returns them;
    `non_overlap_masks=True` (sam2's option of the same name) gives each contested pixel to
    the highest logit instead, as the id maps of `track()` and `treemem run` do. For code
    written against sam2, `treemem.sam2.build_sam2_video_predictor` is the drop-in (sam2's
    signatures and tensors).

    The sam2 model is loaded once, on the first `init_state`, and serves every video.
    """

    def __init__(
        self,
        backend: BackendName | Backend,
        strategy: str | StrategySet | Any = "sam2long",
        *,
        overrides: Mapping[str, object] | None = None,
        max_lag: int | None = None,
        non_overlap_masks: bool = False,
        **options: Unpack[ModelOptions],
    ) -> None:
        _check_max_lag(max_lag)
        if isinstance(backend, str) and backend not in BACKENDS:
            raise ConfigError(
                f"unknown backend {backend!r}; use 'sam2', 'sam3', 'synthetic' or a Backend"
            )
        self._choice: StrategyChoice = choose_strategy(strategy, overrides)
        self.strategy: StrategySet = self._choice.strategy
        self.max_lag = max_lag
        self.non_overlap_masks = non_overlap_masks
        self._backend = backend
        self._instance_used = False
        self._spec = model_spec(options)
        check_model_options(backend, self._spec)
        self._models = ModelCache()

    # --- sam2's API ------------------------------------------------------------------------

    def init_state(self, video: VideoInput | None = None) -> PredictorState:
        """Open `video` (None when the predictor was given a `Backend` instance)."""
        opened = self._open(video)
        return PredictorState(
            num_frames=opened.num_frames,
            frame_size=opened.frame_size,
            video=video,
            _opened=opened,
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
        size = inference_state.frame_size
        xy = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64)
        flags = np.ones(len(xy), np.int64) if labels is None else np.asarray(labels)
        if xy.ndim != 2 or xy.shape[1] != 2 or flags.shape != (len(xy),):
            raise InputError(
                f"points need shape (M, 2) and labels (M,), got {xy.shape} and {flags.shape}"
            )
        new_points = tuple((float(x), float(y)) for x, y in xy)
        new_labels = tuple(int(v) for v in flags)
        check_points(new_points, new_labels, size)
        corners = None
        if box is not None:
            corners = check_box(np.asarray(box, dtype=np.float64).reshape(4).tolist(), size)
        if corners is None and not new_points:
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
            points=old_points + new_points,
            labels=old_labels + new_labels,
        )
        inference_state.add_prompt(prompt)
        return frame_idx, inference_state.obj_ids

    def propagate_in_video(
        self,
        inference_state: PredictorState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
        *,
        direction: RunDirection | None = None,
    ) -> Iterator[tuple[int, list[int], BoolArray]]:
        """Track every prompted object; yield `(frame_idx, obj_ids, masks)` per frame, in
        tracking order, as soon as every object's mask for it is final.

        masks: (len(obj_ids), H, W) bool, in `obj_ids` order (an object not yet prompted on
        that frame has an empty mask). Tracking starts at the first prompt frame in the
        direction (`start_frame_idx`, if given, must be that frame) and covers
        `max_frame_num_to_track` frames after it (default: to the end). `reverse=True`
        tracks backward (sam2's descending frame order and reverse memory order);
        `direction` ("forward", "backward" or "both") says the same in treemem's words, and
        "both" yields forward frames, then the frames before each object's first prompt.
        """
        state = inference_state
        way = check_direction("backward" if reverse else (direction or "forward"))
        if reverse and direction not in (None, "backward"):
            raise InputError(
                f"reverse=True tracks backward; it contradicts direction={direction!r}"
            )
        if not state.prompts:
            raise InputError("no prompt yet; call add_new_mask or add_new_points_or_box first")
        frames = [p.frame for p in state.prompts]
        first = max(frames) if way == "backward" else min(frames)
        if start_frame_idx is not None and start_frame_idx != first:
            raise InputError(
                f"tracking starts at the first prompt frame in the direction ({first}), got "
                f"start_frame_idx {start_frame_idx}"
            )
        if way == "both" and max_frame_num_to_track is not None:
            raise InputError(
                "direction 'both' tracks the whole video: give no max_frame_num_to_track"
            )
        last = None
        if max_frame_num_to_track is not None:
            sign = -1 if way == "backward" else 1
            last = first + sign * max_frame_num_to_track
        opened = state._opened
        if opened is None:
            opened = state._opened = self._open(state.video)
        state._opened = None  # a backend serves one search: node ids restart with each
        stream = FrameStream(
            opened.backend, self.strategy, list(state.prompts), self.max_lag, last_frame=last,
            direction=way,
        )
        state.record = stream.record
        state.decisions = ()
        try:
            for result in stream.frames():
                state.decisions = tuple(stream.decisions)
                yield result.frame, list(result.objects), self._masks(result)
            state.decisions = tuple(stream.decisions)
        finally:
            opened.close()

    def reset_state(self, inference_state: PredictorState) -> None:
        """Forget every prompt and result of `inference_state` (the video stays open)."""
        inference_state.prompts.clear()
        inference_state.record = TreeRecord()
        inference_state.decisions = ()

    # --- internals ---------------------------------------------------------------------------

    def _masks(self, result: FrameResult) -> BoolArray:
        if not self.non_overlap_masks:
            return result.stacked_masks()
        ids = result.ids()
        return np.stack([ids == obj for obj in result.objects])

    def _open(self, video: VideoInput | None) -> OpenedVideo:
        if not isinstance(self._backend, str):
            if self._instance_used:
                raise InputError(
                    "a Backend instance serves one search; give the predictor backend='sam2', "
                    "'sam3' or 'synthetic' to track again, or a new instance"
                )
            opened = open_backend(video, self._backend)
            self._instance_used = True
            return opened
        if video is None:
            raise InputError(f"backend {self._backend!r} needs a video")
        return open_backend(video, self._backend, self._spec, models=self._models)


__all__ = [
    "LiveTracker",
    "Predictor",
    "PredictorState",
    "StrategyConfig",
    "TrackResult",
    "stream",
    "sweep",
    "track",
]
