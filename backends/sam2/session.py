"""The tensor side of treemem's drop-in for sam2 1.1.0's video predictor (`treemem.sam2`).

sam2's predictor keeps, per object, the inputs given on each frame and one output per frame
(mask logits, object pointer, memory features), and answers a click at once from them. This
module keeps the same state with the same rules, so a click gives what sam2's gives:

- A click or mask on a frame runs sam2's own `_track_step` on that frame, with the object's
  outputs as its memory bank: without memory on a frame the object was not tracked on (an
  initial conditioning frame), with it on a tracked frame, and with the frame's current mask
  logits as mask input along with all the frame's points.
- Propagation is the search's (`Sam2SessionBackend` is the SAM 2 backend the engine drives):
  its prompts are the conditioning outputs decoded at click time, stored as they are, and the
  memory of every decided mask is kept, as sam2 keeps every tracked frame's output, so the
  next click reads it.

The outputs are sam2's: video-resolution float logits `(num_objects, 1, H, W)` on the model's
device, objects in the order they were first prompted, NO_OBJ_SCORE for an object with no
output on a frame, sam2's hole filling and non-overlap rule where the model enables them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.utils.misc import concat_points, fill_holes_in_mask_scores

from treemem.backends.sam2.backend import (
    FrameReader,
    Sam2Backend,
    StoredMemory,
    _model_work,
    candidate_boxes,
)
from treemem.types import (
    Direction,
    Float32Array,
    InputError,
    MemoryEntry,
    Prompt,
    PromptResult,
    ProposalOptions,
)

CARRIED_FRAMES = 30
"""How far back (in tracking order) a propagation reads the outputs kept before its start:
sam2 reads 6 frames of spatial memory and 15 of object pointers; SAM2Long's selection looks
further back for valid frames."""


@dataclass(frozen=True, eq=False)
class SearchPlan:
    """What one propagation's search is given (see `Sam2Session.plan_search`): the backend,
    the prompts, and per object the kept outputs read as memory (entries of carried nodes
    the backend holds) and the (object, frame) of the prompts that resume a tracked frame."""

    backend: Sam2SessionBackend
    prompts: list[Prompt]
    conditioning: Mapping[int, tuple[MemoryEntry, ...]]
    recent: Mapping[int, tuple[MemoryEntry, ...]]
    resumed: frozenset[tuple[int, int]]


@dataclass
class FrameOutput:
    """One object's output on one frame, what sam2 stores per frame.

    pred_masks: (1, 1, h, w) float32 low-resolution logits (hole-filled where the model fills
    holes); obj_ptr: (1, C); object_score_logits: (1, 1), None for a tracked frame (only an
    interacted frame's memory is encoded again); maskmem_features: (1, C_mem, h', w')
    bfloat16, None until encoded; iou, occlusion (the occlusion logit) and box: what the
    engine's tree records for the frame, which memory selection reads.
    """

    pred_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor | None = None
    maskmem_features: torch.Tensor | None = None
    iou: float = 1.0
    occlusion: float = 0.0
    box: tuple[float, float, float, float] | None = None

    def as_sam2(self, maskmem_pos: list[torch.Tensor] | None) -> dict[str, Any]:
        """sam2's compact output dict, as its memory attention reads it."""
        return {
            "maskmem_features": self.maskmem_features,
            "maskmem_pos_enc": maskmem_pos,
            "pred_masks": self.pred_masks,
            "obj_ptr": self.obj_ptr,
            "object_score_logits": self.object_score_logits,
        }


@dataclass
class ObjectState:
    """One object's inputs and outputs per frame (sam2's `*_per_obj` entries)."""

    point_inputs: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    mask_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)
    """Frame -> whether it was last tracked in reverse."""
    records: dict[int, Prompt] = field(default_factory=dict)
    """Frame -> the prompt as the engine's tree records it."""


class Sam2SessionBackend(Sam2Backend):
    """The SAM 2 backend of one propagation of the drop-in predictor.

    A prompt whose output was decoded at click time (`decoded`) is stored as that output,
    memory included, instead of being decoded again: sam2 encodes an interacted frame's
    memory from the mask the user saw. `carried` (node -> output, negative node ids the
    engine never uses) are outputs kept from earlier searches that this search reads as
    memory; they are held for the backend's life. The memory and mask of every node whose
    mask is read (the decided masks) are kept after the engine releases the node, in `kept`.
    """

    def __init__(
        self,
        model: Any,
        read_frame: FrameReader,
        num_frames: int,
        frame_size: tuple[int, int],
        decoded: Mapping[tuple[int, int], FrameOutput],
        maskmem_pos: list[torch.Tensor],
        carried: Mapping[int, FrameOutput] | None = None,
        *,
        offload: bool = False,
        rows_alone: bool = False,
    ) -> None:
        super().__init__(
            model, read_frame, num_frames, frame_size, offload=offload, rows_alone=rows_alone
        )
        self.decoded = decoded
        self.kept: dict[int, StoredMemory] = {}
        self.prompt_keys: dict[int, tuple[int, int]] = {}
        """Prompt node -> (object, frame), filled as the engine stores its prompts."""
        self._remember_pos(maskmem_pos)
        for node, out in (carried or {}).items():
            self._store_output(node, out)

    def _store_output(self, node: int, out: FrameOutput) -> None:
        if out.maskmem_features is None:
            raise InputError("an output reached the search before its memory was encoded")
        content = self._new_content()
        self._store[content] = StoredMemory(
            out.maskmem_features, out.obj_ptr, out.pred_masks.to(self.storage), content
        )
        self._hold(node, content)

    @_model_work
    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        self.prompt_keys[node] = (prompt.obj, prompt.frame)
        out = self.decoded.get((prompt.obj, prompt.frame))
        if out is None:
            return super().prompt(features, prompt, node, options)
        options.check("sam2", {"boxes", "presence_threshold"})
        self._store_output(node, out)
        return PromptResult(iou=out.iou, occlusion=out.occlusion, box=out.box)

    def mask_logits(self, node: int) -> Float32Array:
        self.kept[node] = self._memory(node)
        return super().mask_logits(node)


class Sam2Session:
    """One video's prompts and outputs, as sam2's `inference_state` holds them.

    `reader` is a SAM 2 backend over the video, used to read and encode frames for clicks
    (it keeps the last frame's features, as sam2 caches them for repeated clicks).
    """

    def __init__(
        self, model: Any, reader: Sam2Backend, *, offload_state: bool, rows_alone: bool
    ) -> None:
        self.model = model
        self.reader = reader
        self.device: torch.device = reader.device
        self.storage = torch.device("cpu") if offload_state else self.device
        self.offload_state = offload_state
        self.rows_alone = rows_alone
        self.objects: dict[int, ObjectState] = {}
        self.maskmem_pos: list[torch.Tensor] | None = None

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    @property
    def num_frames(self) -> int:
        return self.reader.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.reader.frame_size

    def _object(self, obj: int) -> ObjectState:
        """The object's state, created on first use (sam2 accepts new ids at any time)."""
        return self.objects.setdefault(obj, ObjectState())

    # --- inputs --------------------------------------------------------------------------

    @torch.inference_mode()
    def add_points(
        self,
        frame: int,
        obj: int,
        points: Any,
        labels: Any,
        clear_old_points: bool,
        normalize_coords: bool,
        box: Any,
    ) -> torch.Tensor:
        """sam2's `add_new_points_or_box` (same checks, same coordinate handling)."""
        state = self._object(obj)
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        if points is None:
            points = torch.zeros(0, 2, dtype=torch.float32)
        elif not isinstance(points, torch.Tensor):
            points = torch.tensor(points, dtype=torch.float32)
        if labels is None:
            labels = torch.zeros(0, dtype=torch.int32)
        elif not isinstance(labels, torch.Tensor):
            labels = torch.tensor(labels, dtype=torch.int32)
        if points.dim() == 2:
            points = points.unsqueeze(0)
        if labels.dim() == 1:
            labels = labels.unsqueeze(0)
        if box is not None:
            if not clear_old_points:
                raise ValueError(
                    "cannot add box without clearing old points, since box prompt must be "
                    "provided before any point prompt (please use clear_old_points=True instead)"
                )
            if not isinstance(box, torch.Tensor):
                box = torch.tensor(box, dtype=torch.float32, device=points.device)
            points = torch.cat([box.reshape(1, 2, 2), points], dim=1)
            box_labels = torch.tensor([2, 3], dtype=torch.int32, device=labels.device)
            labels = torch.cat([box_labels.reshape(1, 2), labels], dim=1)
        height, width = self.frame_size
        if normalize_coords:
            points = points / torch.tensor([width, height]).to(points.device)
        points = (points * self.model.image_size).to(self.device)
        labels = labels.to(self.device)
        old = state.point_inputs.get(frame) if not clear_old_points else None
        point_inputs = concat_points(old, points, labels)
        state.point_inputs[frame] = point_inputs
        state.mask_inputs.pop(frame, None)
        state.records[frame] = self._point_record(obj, frame, point_inputs)
        return self._interact(frame, obj, state, point_inputs, None)

    @torch.inference_mode()
    def add_mask(self, frame: int, obj: int, mask: Any) -> torch.Tensor:
        """sam2's `add_new_mask`: an (H, W) mask, resized to the model's input as sam2 does."""
        state = self._object(obj)
        if not isinstance(mask, torch.Tensor):
            mask = torch.tensor(np.asarray(mask), dtype=torch.bool)
        if mask.dim() != 2:
            raise InputError(f"a mask prompt is (H, W), got shape {tuple(mask.shape)}")
        original = mask[None, None].float().to(self.device)
        size = self.model.image_size
        if tuple(mask.shape) != (size, size):
            resized = F.interpolate(
                original, size=(size, size), align_corners=False, mode="bilinear",
                antialias=True,
            )
            mask_inputs = (resized >= 0.5).float()
        else:
            mask_inputs = original
        state.mask_inputs[frame] = mask_inputs
        state.point_inputs.pop(frame, None)
        state.records[frame] = Prompt(obj, frame, mask=mask.cpu().numpy().astype(bool))
        return self._interact(frame, obj, state, None, mask_inputs)

    def _point_record(self, obj: int, frame: int, inputs: dict[str, torch.Tensor]) -> Prompt:
        """The clicks in video pixels, for the tree record (labels 2, 3 are a box)."""
        height, width = self.frame_size
        scale = torch.tensor([width, height], dtype=torch.float32) / self.model.image_size
        coords = (inputs["point_coords"][0].float().cpu() * scale).tolist()
        labels = inputs["point_labels"][0].cpu().tolist()
        corners = [tuple(c) for c, label in zip(coords, labels, strict=True) if label in (2, 3)]
        box = None
        if len(corners) == 2:
            box = (corners[0][0], corners[0][1], corners[1][0], corners[1][1])
        clicks = [(c, label) for c, label in zip(coords, labels, strict=True) if label in (0, 1)]
        return Prompt(
            obj,
            frame,
            box=box,
            points=tuple((float(c[0]), float(c[1])) for c, _ in clicks),
            labels=tuple(int(label) for _, label in clicks),
        )

    def _interact(
        self,
        frame: int,
        obj: int,
        state: ObjectState,
        point_inputs: dict[str, torch.Tensor] | None,
        mask_inputs: torch.Tensor | None,
    ) -> torch.Tensor:
        """Decode the frame's inputs as sam2 does and return every object's logits there."""
        initial = frame not in state.tracked
        reverse = False if initial else state.tracked[frame]
        is_cond = initial or bool(self.model.add_all_frames_to_correct_as_cond)
        temp = state.temp_cond if is_cond else state.temp_non_cond
        previous = None
        if point_inputs is not None:
            prev_out = temp.get(frame)
            if prev_out is None:
                prev_out = state.cond.get(frame)
            if prev_out is None:
                prev_out = state.non_cond.get(frame)
            if prev_out is not None:
                previous = torch.clamp(prev_out.pred_masks.to(self.device), -32.0, 32.0)
        temp[frame] = self._decode(frame, state, initial, point_inputs, mask_inputs, reverse,
                                   previous)
        return self.consolidated(frame, is_cond)

    def _decode(
        self,
        frame: int,
        state: ObjectState,
        initial: bool,
        point_inputs: dict[str, torch.Tensor] | None,
        mask_inputs: torch.Tensor | None,
        reverse: bool,
        previous: torch.Tensor | None,
    ) -> FrameOutput:
        """sam2's `_track_step` on one frame, the object's outputs as memory bank."""
        model = self.model
        features = self.reader.encode(frame)
        _, sam_outputs, _, _ = model._track_step(
            frame,
            initial,
            features.vision_feats,
            features.vision_pos,
            features.feat_sizes,
            point_inputs,
            mask_inputs,
            self._bank(state),
            self.num_frames,
            reverse,
            previous,
        )
        _, _, ious, low_res, _, pointer, score = sam_outputs
        pred = low_res
        if model.fill_hole_area > 0:
            pred = fill_holes_in_mask_scores(pred, model.fill_hole_area)
        box = None
        if point_inputs is not None and model._use_multimask(initial, point_inputs):
            x1, y1, x2, y2 = candidate_boxes(low_res, model.image_size)[0, 0].tolist()
            box = (x1, y1, x2, y2)
        return FrameOutput(
            pred.to(self.storage), pointer, score, iou=float(ious.max().item()),
            occlusion=float(score.item()), box=box,
        )

    def _bank(self, state: ObjectState) -> dict[str, dict[int, dict[str, Any]]]:
        """The object's consolidated outputs as sam2's `output_dict`."""
        return {
            "cond_frame_outputs": {
                f: out.as_sam2(self.maskmem_pos) for f, out in state.cond.items()
            },
            "non_cond_frame_outputs": {
                f: out.as_sam2(self.maskmem_pos) for f, out in state.non_cond.items()
            },
        }

    # --- outputs -------------------------------------------------------------------------

    def consolidated(self, frame: int, is_cond: bool) -> torch.Tensor:
        """Every object's logits on `frame` at video resolution, (N, 1, H, W), as sam2's
        `_consolidate_temp_output_across_obj(consolidate_at_video_res=True)` makes them."""
        height, width = self.frame_size
        masks = torch.full(
            (len(self.objects), 1, height, width), NO_OBJ_SCORE, dtype=torch.float32,
            device=self.storage,
        )
        for index, state in enumerate(self.objects.values()):
            temp = state.temp_cond if is_cond else state.temp_non_cond
            out = temp.get(frame)
            if out is None:
                out = state.cond.get(frame)
            if out is None:
                out = state.non_cond.get(frame)
            if out is None:
                continue
            if tuple(out.pred_masks.shape[-2:]) == (height, width):
                masks[index : index + 1] = out.pred_masks
            else:
                masks[index : index + 1] = F.interpolate(
                    out.pred_masks, size=(height, width), mode="bilinear", align_corners=False
                )
        return self._video_res(masks)

    def _video_res(self, masks: torch.Tensor) -> torch.Tensor:
        """sam2's `_get_orig_video_res_output`: to the device, to video size, non-overlap."""
        masks = masks.to(self.device)
        if tuple(masks.shape[-2:]) != self.frame_size:
            masks = F.interpolate(masks, size=self.frame_size, mode="bilinear",
                                  align_corners=False)
        if self.model.non_overlap_masks:
            masks = self.model._apply_non_overlapping_constraints(masks)
        return masks

    # --- propagation ---------------------------------------------------------------------

    @torch.inference_mode()
    def preflight(self) -> None:
        """sam2's `propagate_in_video_preflight`: encode the memory of every frame clicked
        since the last propagation and move it to the object's outputs."""
        if not self.objects:
            raise RuntimeError(
                "No input points or masks are provided for any object; please add inputs first."
            )
        for obj, state in self.objects.items():
            for temp, outputs in ((state.temp_non_cond, state.non_cond),
                                  (state.temp_cond, state.cond)):
                for frame, out in temp.items():
                    if out.maskmem_features is None:
                        self._encode_memory(frame, out)
                    outputs[frame] = out
                temp.clear()
            if not state.cond:
                raise RuntimeError(
                    f"No input points or masks are provided for object id {obj}; please add "
                    "inputs first."
                )
            for frame in state.cond:
                state.non_cond.pop(frame, None)

    def _encode_memory(self, frame: int, out: FrameOutput) -> None:
        """sam2's `_run_memory_encoder` on an interacted frame's output."""
        model = self.model
        features = self.reader.encode(frame)
        high_res = F.interpolate(
            out.pred_masks.to(self.device), size=(model.image_size,) * 2, mode="bilinear",
            align_corners=False,
        )
        memory, pos = model._encode_new_memory(
            current_vision_feats=features.vision_feats,
            feat_sizes=features.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=out.object_score_logits,
            is_mask_from_pts=True,
        )
        if self.maskmem_pos is None:
            self.maskmem_pos = [x[0:1].clone() for x in pos]
        out.maskmem_features = memory.to(torch.bfloat16).to(self.storage)

    def cond_frames(self) -> list[int]:
        return sorted({f for state in self.objects.values() for f in state.cond})

    @torch.inference_mode()
    def plan_search(self, start: int, step: int = 1) -> SearchPlan:
        """One propagation's search, starting at `start` in tracking order (`step` 1 forward,
        -1 backward), continued from the kept outputs as sam2 continues from its stored ones.

        An object is resumed from its output on the frame before `start` (a prompt the
        memory selection reads as that tracked frame, `resumed`) unless it has a prompt on
        `start`; its conditioning frames before that and its tracked outputs of the
        `CARRIED_FRAMES` frames before are read as memory (`conditioning`, `recent`).
        Conditioning frames from `start` on are prompts of the search."""
        prompts: list[Prompt] = []
        decoded: dict[tuple[int, int], FrameOutput] = {}
        carried: dict[int, FrameOutput] = {}
        conditioning: dict[int, tuple[MemoryEntry, ...]] = {}
        recent: dict[int, tuple[MemoryEntry, ...]] = {}
        resumed: set[tuple[int, int]] = set()

        direction: Direction = "forward" if step > 0 else "backward"

        def carry(out: FrameOutput, frame: int, is_cond: bool) -> MemoryEntry:
            # The search's direction, whichever way the output was tracked: sam2 reads the
            # frames on the side already passed (t - 1, ... forward; t + 1, ... backward).
            node = -1 - len(carried)
            carried[node] = out
            return MemoryEntry(
                node, frame, out.iou, out.occlusion, conditioning=is_cond, direction=direction
            )

        def ahead(frame: int) -> int:
            """How many frames before `start` `frame` is, in tracking order."""
            return (start - frame) * step

        before = start - step
        for obj, state in self.objects.items():
            resume = start not in state.cond and (before in state.cond or before in state.non_cond)
            past_cond = []
            for frame, out in state.cond.items():
                if ahead(frame) <= 0 or (resume and frame == before):
                    prompts.append(state.records[frame])
                    decoded[(obj, frame)] = out
                else:
                    past_cond.append(carry(out, frame, True))
            if resume and before not in state.cond:
                out = state.non_cond[before]
                prompts.append(Prompt(obj, before, mask=self._video_mask(out)))
                decoded[(obj, before)] = out
                resumed.add((obj, before))
            tracked = sorted(
                (
                    f for f in state.non_cond
                    if 0 < ahead(f) <= CARRIED_FRAMES and (obj, f) not in resumed
                ),
                key=lambda f: -ahead(f),
            )
            conditioning[obj] = tuple(past_cond)
            recent[obj] = tuple(carry(state.non_cond[f], f, False) for f in tracked)
        assert self.maskmem_pos is not None, "preflight encodes a memory first"
        backend = Sam2SessionBackend(
            self.model, self.reader.read_frame, self.num_frames, self.frame_size, decoded,
            self.maskmem_pos, carried, offload=self.offload_state, rows_alone=self.rows_alone,
        )
        return SearchPlan(backend, prompts, conditioning, recent, frozenset(resumed))

    def _video_mask(self, out: FrameOutput) -> np.ndarray:
        """An output's mask at video resolution (for the tree record of a resumed frame)."""
        logits = F.interpolate(
            out.pred_masks.to(self.device), size=self.frame_size, mode="bilinear",
            align_corners=False,
        )
        mask: np.ndarray = (logits[0, 0] > 0).cpu().numpy()
        return mask

    @torch.inference_mode()
    def tracked_output(
        self,
        frame: int,
        nodes: Mapping[int, tuple[int, float, float]],
        backend: Sam2SessionBackend | None,
        reverse: bool,
    ) -> torch.Tensor:
        """Record `frame`'s decided masks (object -> (node, iou, occlusion logit), as the
        tree records them) as the objects' outputs and return
        every object's logits there, (N, 1, H, W), as sam2's `propagate_in_video` yields them.

        An object with neither a prompt on the frame nor a decision (not tracked there in
        this search) shows its earlier output there, if any, else NO_OBJ_SCORE."""
        model = self.model
        masks = []
        for obj, state in self.objects.items():
            if frame in state.cond:
                pred = state.cond[frame].pred_masks.to(self.device)
                state.tracked[frame] = reverse
            elif obj in nodes and backend is not None:
                node, iou, occlusion = nodes[obj]
                kept = backend.kept[node]
                pred = kept.low_res_mask.to(self.device)
                if model.fill_hole_area > 0:
                    pred = fill_holes_in_mask_scores(pred, model.fill_hole_area)
                state.non_cond[frame] = FrameOutput(
                    pred.to(self.storage), kept.pointer, maskmem_features=kept.features,
                    iou=iou, occlusion=occlusion,
                )
                state.tracked[frame] = reverse
            elif frame in state.non_cond:
                pred = state.non_cond[frame].pred_masks.to(self.device)
            else:
                side = model.image_size // 4
                pred = torch.full((1, 1, side, side), NO_OBJ_SCORE, device=self.device)
            masks.append(pred)
        stacked = torch.cat(masks, dim=0) if len(masks) > 1 else masks[0]
        return self._video_res(stacked)

    # --- clearing ------------------------------------------------------------------------

    @torch.inference_mode()
    def clear_prompts(self, frame: int, obj: int, need_output: bool) -> torch.Tensor | None:
        """sam2's `clear_all_prompts_in_frame`: the frame's conditioning output, if any,
        becomes a tracked output."""
        state = self._object(obj)
        state.point_inputs.pop(frame, None)
        state.mask_inputs.pop(frame, None)
        state.records.pop(frame, None)
        state.temp_cond.pop(frame, None)
        state.temp_non_cond.pop(frame, None)
        out = state.cond.pop(frame, None)
        if out is not None:
            state.non_cond[frame] = out
            state.tracked.pop(frame, None)
        if not need_output:
            return None
        is_cond = any(frame in s.temp_cond for s in self.objects.values())
        return self.consolidated(frame, is_cond)

    @torch.inference_mode()
    def remove_object(
        self, obj: int, strict: bool, need_output: bool
    ) -> tuple[list[int], list[tuple[int, torch.Tensor]]]:
        """sam2's `remove_object`: clear its inputs, drop it, return the other objects'
        logits on the frames it had inputs on."""
        updated: list[tuple[int, torch.Tensor]] = []
        if obj not in self.objects:
            if not strict:
                return self.obj_ids, updated
            raise RuntimeError(
                f"Cannot remove object id {obj} as it doesn't exist. All existing object ids: "
                f"{self.obj_ids}."
            )
        if len(self.objects) == 1:
            self.reset()
            return self.obj_ids, updated
        state = self.objects[obj]
        input_frames = set()
        input_frames.update(state.point_inputs)
        input_frames.update(state.mask_inputs)
        for frame in input_frames:
            self.clear_prompts(frame, obj, need_output=False)
        del self.objects[obj]
        if need_output:
            for frame in input_frames:
                is_cond = any(frame in s.temp_cond for s in self.objects.values())
                updated.append((frame, self.consolidated(frame, is_cond)))
        return self.obj_ids, updated

    def reset(self) -> None:
        """sam2's `reset_state`: forget every object, input and output."""
        self.objects.clear()

