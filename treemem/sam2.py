"""A drop-in for sam2 1.1.0's video predictor that runs a treemem strategy set.

```python
from treemem.sam2 import build_sam2_video_predictor   # was: from sam2.build_sam import ...

predictor = build_sam2_video_predictor("sam2.1_hiera_l", "sam2.1_hiera_large.pt")
state = predictor.init_state(video_path="videos/bedroom")
_, obj_ids, logits = predictor.add_new_points_or_box(state, 0, 1, points=[[210, 350]], labels=[1])
for frame_idx, obj_ids, logits in predictor.propagate_in_video(state):
    masks = (logits > 0.0).cpu().numpy()   # (num_objects, 1, H, W)
```

Every public method has sam2's name, arguments and return values; clicks and masks are
answered at once (one decoder pass, as in sam2), and `propagate_in_video` runs treemem's
search over the run layer (`treemem.pipeline.FrameStream`), `sam2long` by default. With
`strategy="greedy", batch_like_sam2=True` the logits equal sam2's predictor's bit for bit.
The differences that remain are listed on the docs page "Port your sam2 script".

This module imports no torch: the tensor work is `treemem.backends.sam2.session`, loaded
when a predictor is built.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from treemem.pipeline.frames import FrameStream
from treemem.pipeline.inputs import (
    ModelSpec,
    OpenedVideo,
    VideoInput,
    check_frame,
    import_backend,
    open_backend,
)
from treemem.pipeline.runner import StrategyChoice, choose_strategy
from treemem.strategy import MemorySelection, RecalledMemory, StrategySet
from treemem.tree import TreeRecord
from treemem.types import Closing, InputError, MemoryEntry, MemoryHistory

STATE_KEYS = (
    "num_frames",
    "video_height",
    "video_width",
    "obj_ids",
    "device",
    "storage_device",
    "offload_video_to_cpu",
    "offload_state_to_cpu",
)
"""The entries of sam2's `inference_state` dict that `InferenceState[...]` answers."""


def build_sam2_video_predictor(
    config_file: str,
    ckpt_path: str | os.PathLike[str] | None = None,
    device: str = "cuda",
    mode: str = "eval",
    hydra_overrides_extra: list[str] = [],  # noqa: B006 (sam2's signature; never mutated)
    apply_postprocessing: bool = True,
    vos_optimized: bool = False,
    strategy: str | StrategySet | Any = "sam2long",
    *,
    max_lag: int | None = None,
    batch_like_sam2: bool = False,
    **strategy_params: object,
) -> SAM2VideoPredictor:
    """sam2's `build_sam2_video_predictor`, plus the strategy the predictor searches with.

    The model is built by sam2's own builder with the same arguments (config names in any
    form sam2 users write: `configs/sam2.1/sam2.1_hiera_t.yaml`, `sam2.1_hiera_t`, ...).
    `strategy` is a registered strategy set's name (`treemem strategies`), a built
    `StrategySet` or a parameter record; `strategy_params` override a named set's parameters
    (`P=4, delta_iou=0.3`). `max_lag` decides each frame at most that many frames late.
    `batch_like_sam2` runs each object's rows as sam2 runs each object, one per pass: with
    `greedy` the logits are then bit for bit sam2's for several objects too (batched, they
    differ by ~1e-7), at the cost of the batching.
    """
    choice = choose_strategy(strategy, strategy_params or None)
    module = import_backend("sam2")
    checkpoint = None if ckpt_path is None else str(ckpt_path)
    model = module.build_video_model(
        config_file, checkpoint, device, mode, hydra_overrides_extra, apply_postprocessing,
        vos_optimized,
    )
    return SAM2VideoPredictor(model, choice, max_lag=max_lag, batch_like_sam2=batch_like_sam2)


@dataclass(eq=False)
class InferenceState(Closing):
    """What `init_state` returns: one video, its prompts and outputs (sam2's
    `inference_state`).

    sam2 users read a few entries of that dict; `state["num_frames"]`, `["video_height"]`,
    `["video_width"]`, `["obj_ids"]`, `["device"]`, `["storage_device"]` and the two offload
    flags answer as sam2's do (see `STATE_KEYS`). The per-frame tensors are not entries:
    they live in `session` (`treemem.backends.sam2.Sam2Session`). `record` is the search tree
    of the last propagation. A context manager: leaving it closes the video file.
    """

    num_frames: int
    video_height: int
    video_width: int
    session: Any = field(repr=False)
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False
    record: TreeRecord = field(default_factory=TreeRecord, repr=False)
    _opened: OpenedVideo | None = field(default=None, repr=False)

    @property
    def obj_ids(self) -> list[int]:
        """Object ids in the order they were first prompted (sam2's order)."""
        ids: list[int] = self.session.obj_ids
        return ids

    def __getitem__(self, key: str) -> Any:
        if key not in STATE_KEYS:
            raise KeyError(
                f"{key!r}: treemem's inference state answers {', '.join(STATE_KEYS)}; the "
                "per-frame tensors are in state.session"
            )
        if key == "device":
            return self.session.device
        if key == "storage_device":
            return self.session.storage
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in STATE_KEYS

    def keys(self) -> tuple[str, ...]:
        return STATE_KEYS

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()


@dataclass(frozen=True, eq=False)
class ResumedMemory:
    """A memory selection that continues from outputs kept before the search started.

    sam2 starts a propagation from its stored outputs: on the first frames it reads the
    object's earlier prompts and the frames tracked just before the start. The search gets
    them here: per object, the conditioning entries of prompts before the start frame
    (`conditioning`) and the tracked frames before it (`recent`, oldest first), both of
    nodes the backend holds for the whole search; a prompt in `resumed` (its (object,
    frame)) stands for the tracked frame the object resumes from and is read as that
    tracked frame, not as a prompt. The kept past is replayed through the wrapped
    selection's own `extend`, then, once the search has reached one of the object's own
    prompts, through its `restart` (plain SAM 2 keeps reading the past, SAM2Long restarts),
    and the pathway's own history is replayed on top.

    `prompt_keys` maps the search's prompt nodes to (object, frame): the backend fills it as
    the engine stores the prompts, before any recall.
    """

    inner: MemorySelection
    conditioning: Mapping[int, tuple[MemoryEntry, ...]]
    recent: Mapping[int, tuple[MemoryEntry, ...]]
    resumed: AbstractSet[tuple[int, int]]
    prompt_keys: Mapping[int, tuple[int, int]]

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory:
        return self.inner.extend(history, entry)

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        return self.inner.restart(history)

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory:
        obj = self.prompt_keys[history.conditioning[0].node][0]
        own: list[MemoryEntry] = []
        resumed: list[MemoryEntry] = []
        prompted = False
        for entry in history.conditioning:
            if self.prompt_keys[entry.node] in self.resumed:
                resumed.append(dataclasses.replace(entry, conditioning=False))
            else:
                own.append(entry)
                prompted = prompted or entry.elapsed(frame) >= 0
        past = MemoryHistory(self.conditioning.get(obj, ()) + tuple(own))
        for entry in (*self.recent.get(obj, ()), *resumed):
            past = self.inner.extend(past, entry)
        if prompted:
            past = self.inner.restart(past)
        for entry in history.recent:
            past = self.inner.extend(past, entry)
        return self.inner.recall(past, frame)


class SAM2VideoPredictor:
    """sam2 1.1.0's `SAM2VideoPredictor` API over treemem's search (see the module docstring).

    `model` is the sam2 model (a sam2 `SAM2VideoPredictor`, used as the network only);
    `device` and `image_size` are its own.
    """

    def __init__(
        self,
        model: Any,
        strategy: StrategyChoice | str | StrategySet | Any = "sam2long",
        *,
        max_lag: int | None = None,
        batch_like_sam2: bool = False,
    ) -> None:
        if max_lag is not None and max_lag < 0:
            raise InputError(f"max_lag must be >= 0, got {max_lag}")
        choice = strategy if isinstance(strategy, StrategyChoice) else choose_strategy(strategy)
        self.model = model
        self.strategy: StrategySet = choice.strategy
        self.max_lag = max_lag
        self.batch_like_sam2 = batch_like_sam2

    @property
    def device(self) -> Any:
        return self.model.device

    @property
    def image_size(self) -> int:
        size: int = self.model.image_size
        return size

    def _apply_non_overlapping_constraints(self, pred_masks: Any) -> Any:
        """sam2's rule (highest logit per pixel wins), as `tools/vos_inference.py` calls it."""
        return self.model._apply_non_overlapping_constraints(pred_masks)

    # --- sam2's API ------------------------------------------------------------------------

    def init_state(
        self,
        video_path: VideoInput,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> InferenceState:
        """Open a video: a folder of JPEG/PNG frames (sam2's input), an mp4 or a (T, H, W, 3)
        uint8 array. Frames are read as they are needed, never all loaded, so
        `offload_video_to_cpu` and `async_loading_frames` change nothing;
        `offload_state_to_cpu` keeps memories and outputs in host memory, as in sam2."""
        del async_loading_frames  # frames are always read on demand
        spec = ModelSpec(model=self.model, offload=offload_state_to_cpu)
        opened = open_backend(video_path, "sam2", spec)
        module = import_backend("sam2")
        session = module.Sam2Session(
            self.model, opened.backend, offload_state=offload_state_to_cpu,
            rows_alone=self.batch_like_sam2,
        )
        height, width = opened.frame_size
        return InferenceState(
            opened.num_frames, height, width, session, offload_video_to_cpu,
            offload_state_to_cpu, _opened=opened,
        )

    def add_new_points_or_box(
        self,
        inference_state: InferenceState,
        frame_idx: int,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list[int], Any]:
        """Clicks (points (M, 2) xy, labels (M,) 1 object / 0 background) and/or a box
        (x0, y0, x1, y1), in pixels unless `normalize_coords=False` (then in [0, 1]).

        Returns `(frame_idx, obj_ids, video_res_masks)`: every object's mask logits on the
        frame, (len(obj_ids), 1, H, W) float on the model's device. On a frame the object
        was already tracked on, the clicks refine its current mask (fed as mask input with
        all the frame's points), as in sam2."""
        self._check(inference_state, frame_idx, obj_id)
        masks = inference_state.session.add_points(
            frame_idx, obj_id, points, labels, clear_old_points, normalize_coords, box
        )
        return frame_idx, inference_state.obj_ids, masks

    def add_new_points(self, *args: Any, **kwargs: Any) -> tuple[int, list[int], Any]:
        """sam2's deprecated name for `add_new_points_or_box`."""
        return self.add_new_points_or_box(*args, **kwargs)

    def add_new_mask(
        self, inference_state: InferenceState, frame_idx: int, obj_id: int, mask: Any
    ) -> tuple[int, list[int], Any]:
        """An (H, W) mask (bool, 0/1 array or tensor) for `obj_id` on `frame_idx`; returns as
        `add_new_points_or_box`."""
        self._check(inference_state, frame_idx, obj_id)
        masks = inference_state.session.add_mask(frame_idx, obj_id, mask)
        return frame_idx, inference_state.obj_ids, masks

    def propagate_in_video_preflight(self, inference_state: InferenceState) -> None:
        """Encode the memory of the frames clicked since the last propagation (sam2 calls it
        at the start of `propagate_in_video`; so does this)."""
        inference_state.session.preflight()

    def propagate_in_video(
        self,
        inference_state: InferenceState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], Any]]:
        """Track every object; yield `(frame_idx, obj_ids, video_res_masks)` per frame in
        processing order, logits (len(obj_ids), 1, H, W) on the model's device.

        As in sam2: from `start_frame_idx` (default: the first prompt frame) over
        `max_frame_num_to_track` more frames, forward, or backward with `reverse=True`
        (nothing from frame 0). The search continues from the outputs already there, as sam2
        does: an object tracked on the frame before the start (in tracking order) resumes
        from it, reading its earlier prompts and tracked frames as memory
        (`ResumedMemory`). A frame is yielded once the search has decided it for every
        object (with `sam2long`, up to the decision lag later than sam2 would; frames still
        come in order). Every decided mask becomes the object's output on that frame, which
        later clicks refine. An object neither prompted on the start frame nor tracked on
        the one before is tracked from its next prompt on; before it, it shows its earlier
        output there, if any, else NO_OBJ_SCORE (sam2 would track it there from that later
        prompt).
        """
        state = inference_state
        session = state.session
        session.preflight()
        step = -1 if reverse else 1
        start = session.cond_frames()[0] if start_frame_idx is None else start_frame_idx
        check_frame(start, state.num_frames, "start_frame_idx")
        count = state.num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            end = max(start - count, 0)
            if start == 0:
                return  # sam2 does not track backward from frame 0
        else:
            end = min(start + count, state.num_frames - 1)
        plan = session.plan_search(start, step)
        order = range(start, end + step, step)
        first = min((p.frame for p in plan.prompts), key=lambda f: f * step, default=None)
        if first is None or (end - first) * step < 0:  # no object is tracked in the range
            for frame in order:
                yield frame, state.obj_ids, session.tracked_output(frame, {}, None, reverse)
            return
        for frame in order:
            if (frame - first) * step >= 0:
                break
            yield frame, state.obj_ids, session.tracked_output(frame, {}, None, reverse)
        strategy = self.strategy
        if any(plan.conditioning.values()) or any(plan.recent.values()) or plan.resumed:
            memory = ResumedMemory(strategy.memory, plan.conditioning, plan.recent,
                                   plan.resumed, plan.backend.prompt_keys)
            strategy = dataclasses.replace(strategy, memory=memory)
        stream = FrameStream(
            plan.backend, strategy, plan.prompts, self.max_lag, last_frame=end,
            direction="backward" if reverse else "forward",
        )
        state.record = stream.record
        decided: dict[int, dict[int, tuple[int, float, float]]] = {}
        seen = 0
        for result in stream.frames():
            if len(stream.decisions) > seen:
                columns = stream.record.columns()
                for decision in stream.decisions[seen:]:
                    row = decision.node
                    decided.setdefault(decision.frame, {})[decision.obj] = (
                        row, float(columns.iou[row]), float(columns.occlusion[row])
                    )
                seen = len(stream.decisions)
            nodes = decided.pop(result.frame, {})
            if (result.frame - start) * step < 0:
                continue  # the frame an object resumes from
            masks = session.tracked_output(result.frame, nodes, plan.backend, reverse)
            yield result.frame, state.obj_ids, masks

    def clear_all_prompts_in_frame(
        self,
        inference_state: InferenceState,
        frame_idx: int,
        obj_id: int,
        need_output: bool = True,
    ) -> tuple[int, list[int], Any] | None:
        """Remove the object's inputs on the frame; its output there becomes a tracked one.
        Returns `(frame_idx, obj_ids, video_res_masks)` unless `need_output=False`."""
        self._check(inference_state, frame_idx, obj_id)
        masks = inference_state.session.clear_prompts(frame_idx, obj_id, need_output)
        if not need_output:
            return None
        return frame_idx, inference_state.obj_ids, masks

    def reset_state(self, inference_state: InferenceState) -> None:
        """Forget every object, input and output (the video stays open)."""
        inference_state.session.reset()
        inference_state.record = TreeRecord()

    def remove_object(
        self,
        inference_state: InferenceState,
        obj_id: int,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list[int], list[tuple[int, Any]]]:
        """Drop an object; returns `(obj_ids, updated_frames)`, the other objects' logits on
        each frame the removed one had inputs on (`[(frame_idx, video_res_masks), ...]`)."""
        ids, updated = inference_state.session.remove_object(obj_id, strict, need_output)
        return list(ids), list(updated)

    # --- checks --------------------------------------------------------------------------

    @staticmethod
    def _check(state: InferenceState, frame: int, obj: int) -> None:
        check_frame(frame, state.num_frames)
        if not isinstance(obj, int) or isinstance(obj, bool):
            raise InputError(f"object ids are integers (the tree records them), got {obj!r}")


__all__ = [
    "STATE_KEYS",
    "InferenceState",
    "ResumedMemory",
    "SAM2VideoPredictor",
    "build_sam2_video_predictor",
]
