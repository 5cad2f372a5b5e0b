"""The SAM 3 backend: SAM 3's video tracker, one encoder pass per frame, every pathway batched.

SAM 3's tracker is SAM 2's design on a new trunk, and this backend drives it as treemem's SAM 2
backend drives sam2: `encode` runs the ViT and the SAM 2-style neck once per frame (not the
detector's neck, which tracking does not read); `propose` groups the distinct memory plans
(identical pathways are computed once) by memory layout and runs memory attention (key
weights through `attention.memory_attention`) and the mask decoder for each group as one
batch; `commit` encodes the kept candidates' memories in one batch, identical children sharing
one memory; stored memories live until the engine releases their nodes.

It calls the package's modules and a few of its tracker's methods that touch no device
(`_use_mask_as_output`, `_encode_new_memory`, `_prepare_backbone_features`), never the paths
that hard-code CUDA (the predictor's state handling, `_get_tpos_enc`'s pinned memory, the
memory assembly's `.cuda()`): those steps are done here on the model's own device, so the
same code runs on a CPU and on CUDA.

Bit-exactness with SAM 3's own tracking predictor (one object) is a design constraint: memory
features are stored in bfloat16 as it stores them; object pointers and the pointer position
encoding are computed one row at a time as it computes them for one object; a mask prompt
follows its path (the prompt resized to the model's mask input for the pointer, and the
memory encoded from the video-resolution mask brought to the low-resolution grid).

Several objects: SAM 3's predictor runs all objects in one batch, so its memory-selection
score is one number for all of them (the mean over the batch) and it applies a non-overlap
rule across objects to the prompt frame's masks before encoding them. Here every object is
tracked on its own: each pathway's score is its own object's, no object's mask changes another
object's memory, and objects meet only when the run layer composes the output id map (the
highest logit wins a pixel). With one object the two agree exactly.

Images are resized to a square (PIL), scaled to [0, 1] and normalised with mean = std = 0.5,
as SAM 3's video model does (its standalone tracker's frame loader uses ImageNet statistics;
the released weights are trained with 0.5).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from sam3.model.sam3_tracker_base import NO_OBJ_SCORE
from sam3.model.sam3_tracker_utils import get_1d_sine_pe

from treemem.backends.frames import FrameImages
from treemem.backends.sam3.attention import memory_attention
from treemem.backends.sam3.loading import Sam3Tracker
from treemem.geometry import boxes_from_occupancy
from treemem.types import (
    Commit,
    ConfigError,
    Float32Array,
    InputError,
    MemoryContractError,
    MemoryPlan,
    PathwayQuery,
    Prompt,
    PromptResult,
    ProposalOptions,
    Proposals,
)

FrameReader = Callable[[int], np.ndarray]
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
SUPPORTED = frozenset({"boxes", "presence_threshold"})
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _model_work(method: _Method) -> _Method:
    """Run a backend method in inference mode and under the backend's autocast, if any."""

    @functools.wraps(method)
    def wrapped(self: Sam3Backend, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(), self._autocast():
            return method(self, *args, **kwargs)

    return cast(_Method, wrapped)


def check_autocast(device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a dtype torch's autocast for `device` does not run (torch would warn and run
    fp32 silently)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device.type, dtype=dtype):
                enabled = torch.is_autocast_enabled(device.type)
        except RuntimeError:
            enabled = False
    if not enabled:
        raise ConfigError(
            f"torch's {device.type} autocast does not support {dtype} "
            f"(torch {torch.__version__}); use fp32 or bf16"
        )


@dataclass(frozen=True)
class FrameFeatures:
    """The trunk and SAM 2-style neck's output for one frame (batch 1), flattened as SAM 3's
    tracker flattens it: three levels, the two finer ones already projected for the decoder."""

    frame: int
    vision_feats: list[torch.Tensor]  # per level (HW, 1, C)
    vision_pos: list[torch.Tensor]
    feat_sizes: list[tuple[int, int]]

    @property
    def high_res(self) -> list[torch.Tensor]:
        return [
            x.permute(1, 2, 0).view(x.size(1), x.size(2), *size)
            for x, size in zip(self.vision_feats[:-1], self.feat_sizes[:-1], strict=True)
        ]


@dataclass
class StoredMemory:
    """One committed candidate or prompt: what later frames read, and its mask for output.

    Features are stored in bfloat16, as SAM 3 stores them; the float32 token layout memory
    attention reads is made on first use and kept while the memory lives."""

    features: torch.Tensor  # (1, C_mem, H, W) bfloat16
    pointer: torch.Tensor  # (1, C)
    low_res_mask: torch.Tensor  # (1, 1, h, w) logits
    content: int
    _tokens: torch.Tensor | None = None

    def tokens(self, device: torch.device) -> torch.Tensor:
        """(HW, 1, C_mem) float32 tokens on `device`."""
        if self._tokens is None or self._tokens.device != device:
            self._tokens = self.features.to(device).flatten(2).permute(2, 0, 1).float()
        return self._tokens


@dataclass
class _Batch:
    """One `propose` call's outputs (`Proposals.batch`), for `commit` to pick survivors from.
    `owner` is the proposing backend's token, so proposals of another backend are refused."""

    owner: object
    features: FrameFeatures
    row_to_unique: list[int]
    low_res: torch.Tensor  # (U, K, h, w)
    tokens: torch.Tensor  # (U, K, C)
    occlusion: torch.Tensor  # (U, 1)
    present: list[bool]  # occlusion > threshold per unique plan, read on the host once
    presence_threshold: float


class Sam3Backend:
    """A `Sam3Tracker` (`treemem.backends.sam3.load_model`) driven by treemem's engine."""

    num_candidates = 3

    def __init__(
        self,
        model: Sam3Tracker,
        read_frame: FrameReader,
        num_frames: int,
        frame_size: tuple[int, int],
        *,
        offload: bool = False,
        autocast: torch.dtype | None = None,
    ) -> None:
        """`offload`: keep stored memories in CPU memory; `autocast`: torch.bfloat16 or
        torch.float16 to run the model's work under `torch.autocast` (SAM 3's own predictor
        runs under bfloat16 autocast on CUDA); None (default) is fp32."""
        self.model = model
        self.tracker: Any = model.tracker
        self._num_frames = num_frames
        self._frame_size = frame_size
        self.device = next(model.parameters()).device
        if autocast is not None:
            check_autocast(self.device, autocast)
        self.autocast = autocast
        self.storage = torch.device("cpu") if offload else self.device
        self._node_content: dict[int, int] = {}
        self._store: dict[int, StoredMemory] = {}
        self._content_refs: dict[int, int] = {}
        self._next_content = 0
        self._maskmem_pos: torch.Tensor | None = None
        self._pointer_pos_cache: dict[tuple[int, ...], torch.Tensor] = {}
        self._spatial_pos_cache: dict[int, torch.Tensor] = {}
        self._last: FrameFeatures | None = None
        self.images = FrameImages(read_frame, frame_size, self.tracker.image_size, IMAGE_MEAN,
                                  IMAGE_STD, self.device, num_frames)
        self._token = object()
        self.peak_stored = 0
        """The most distinct memories held at once, for memory checks."""

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    @property
    def stored_memories(self) -> int:
        """Distinct encoded memories held now (identical pathways share one)."""
        return len(self._store)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the tensors the held memories keep (features, tokens, pointers, masks)."""
        return sum(
            t.numel() * t.element_size()
            for m in self._store.values()
            for t in (m.features, m.pointer, m.low_res_mask, m._tokens)
            if t is not None
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    # --- frames --------------------------------------------------------------------------------

    @_model_work
    def encode(self, frame: int) -> FrameFeatures:
        if self._last is not None and self._last.frame == frame:
            return self._last
        neck = self.model.vision
        top = neck.trunk(self.images.take(frame))[-1]
        # SAM 3's video model drops the coarsest level (its backbone's scalp=1).
        levels: list[torch.Tensor] = [conv(top) for conv in list(neck.sam2_convs)[:-1]]
        positions = [neck.position_encoding(level).to(level.dtype) for level in levels]
        decoder = self.tracker.sam_mask_decoder
        levels[0], levels[1] = decoder.conv_s0(levels[0]), decoder.conv_s1(levels[1])
        _, feats, pos, sizes = self.tracker._prepare_backbone_features(
            {"backbone_fpn": levels, "vision_pos_enc": positions}
        )
        self._last = FrameFeatures(frame, feats, pos, sizes)
        return self._last

    # --- prompts -------------------------------------------------------------------------------

    @_model_work
    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        """See `treemem.backend.Backend.prompt`. A mask prompt is its own output, as in SAM
        3's predictor; clicks and boxes go through the mask decoder, whose output follows
        `options.presence_threshold` as tracking frames do. The memory encoder keeps SAM 3's
        rule (absent iff the occlusion logit is <= 0)."""
        options.check("sam3", SUPPORTED)
        assert isinstance(features, FrameFeatures)
        height, width = self._frame_size
        box = None
        if prompt.mask is not None:
            if prompt.mask.shape != (height, width):
                raise InputError(
                    f"mask for object {prompt.obj} is {prompt.mask.shape[1]}x"
                    f"{prompt.mask.shape[0]}, the video is {width}x{height}: "
                    "give a mask of the video's size"
                )
            low_res, pointer, iou, occlusion = self._mask_prompt(features, prompt.mask)
        else:
            low_res, pointer, iou, occlusion, box = self._point_prompt(
                features, self._point_inputs(prompt), options.presence_threshold
            )
        high_res = F.interpolate(
            low_res, size=(self.tracker.image_size,) * 2, mode="bilinear", align_corners=False
        )
        memory, pos = self.tracker._encode_new_memory(
            image=None,
            current_vision_feats=features.vision_feats,
            feat_sizes=features.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=occlusion,
            is_mask_from_pts=True,
        )
        self._remember_pos(pos)
        content = self._new_content()
        self._store[content] = StoredMemory(
            memory.to(torch.bfloat16).to(self.storage), pointer, low_res.to(self.storage), content
        )
        self._hold(node, content)
        self.peak_stored = max(self.peak_stored, len(self._store))
        return PromptResult(iou=iou, occlusion=float(occlusion.item()), box=box)

    def _mask_prompt(
        self, features: FrameFeatures, mask_array: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """SAM 3's mask prompt: the pointer and occlusion logit from the mask resized to the
        model's mask input (`_use_mask_as_output`), the mask itself as ±1024 logits at video
        resolution brought to the low-resolution grid (antialiased). Returns (low-res mask
        (1, 1, h, w), pointer (1, C), IoU (SAM 3's dummy 1), occlusion logit (1, 1))."""
        tracker = self.tracker
        mask = torch.from_numpy(np.asarray(mask_array, dtype=bool))[None, None]
        mask = mask.float().to(self.device)
        side = tracker.input_mask_size
        model_mask = mask
        if mask.shape[-2:] != (side, side):
            model_mask = F.interpolate(
                mask, size=(side, side), align_corners=False, mode="bilinear", antialias=True
            )
        pix_feat = features.vision_feats[-1].permute(1, 2, 0)
        pix_feat = pix_feat.view(-1, tracker.hidden_dim, *features.feat_sizes[-1])
        outputs = tracker._use_mask_as_output(pix_feat, features.high_res, model_mask)
        pointer, occlusion = outputs[5], outputs[6]
        video_logits = torch.where(mask > 0.5, -NO_OBJ_SCORE, NO_OBJ_SCORE)
        low_res = F.interpolate(
            video_logits,
            size=(tracker.low_res_mask_size,) * 2,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        return low_res, pointer, 1.0, occlusion

    def _point_prompt(
        self,
        features: FrameFeatures,
        point_inputs: dict[str, torch.Tensor],
        presence_threshold: float,
    ) -> tuple[
        torch.Tensor, torch.Tensor, float, torch.Tensor, tuple[float, float, float, float] | None
    ]:
        """Clicks or a box on an initial conditioning frame, as SAM 3's tracker decodes them
        without memory: (low-res mask, pointer, IoU, occlusion logit, box). A single click
        chooses among 3 candidates by predicted IoU and reports its box (where SAMURAI's
        filter starts); a box or several clicks give one mask and no box."""
        tracker = self.tracker
        height, width = features.feat_sizes[-1]
        pix_feat = features.vision_feats[-1] + tracker.no_mem_embed
        pix_feat = pix_feat.permute(1, 2, 0).view(1, tracker.hidden_dim, height, width)
        multimask = bool(tracker._use_multimask(True, point_inputs))
        low_res, ious, tokens, occlusion = self._heads(
            pix_feat, features.high_res, point_inputs, multimask, presence_threshold
        )
        best = int(torch.argmax(ious[0]).item()) if multimask else 0
        chosen = low_res[:, best : best + 1]
        token = tokens[:, best] if tokens.shape[1] > 1 else tokens[:, 0]
        pointer = self._pointer(token, occlusion, presence_threshold)
        box = None
        if multimask:
            x1, y1, x2, y2 = candidate_boxes(chosen, tracker.image_size)[0, 0].tolist()
            box = (x1, y1, x2, y2)
        return chosen, pointer, float(ious[0, best].item()), occlusion, box

    def _point_inputs(self, prompt: Prompt) -> dict[str, torch.Tensor]:
        height, width = self._frame_size
        points: list[tuple[float, float]] = []
        labels: list[int] = []
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            points += [(x0, y0), (x1, y1)]
            labels += [2, 3]
        points += list(prompt.points)
        labels += list(prompt.labels)
        if not points:
            raise InputError(f"prompt for object {prompt.obj} has no mask, box or points")
        for x, y in points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise InputError(
                    f"point ({x}, {y}) of object {prompt.obj} is outside the {width}x{height} frame"
                )
        scale = torch.tensor([width, height], dtype=torch.float32)
        coords = torch.tensor(points, dtype=torch.float32) / scale * self.tracker.image_size
        return {
            "point_coords": coords[None].to(self.device),
            "point_labels": torch.tensor(labels, dtype=torch.int32)[None].to(self.device),
        }

    # --- tracking ------------------------------------------------------------------------------

    def _memory(self, node: int) -> StoredMemory:
        content = self._node_content.get(node)
        memory = None if content is None else self._store.get(content)
        if memory is None:
            raise MemoryContractError(
                f"memory of node {node} was released or never stored: the memory-selection "
                "strategy read an entry it did not keep in its history"
            )
        return memory

    def _signature(self, plan: MemoryPlan) -> tuple[Any, ...]:
        spatial = tuple((self._memory(r.node).content, r.position, r.weight) for r in plan.spatial)
        pointers = tuple(
            (self._memory(r.node).content, r.position, r.weight) for r in plan.pointers
        )
        return (spatial, pointers, plan.pointer_span)

    @_model_work
    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        """See `treemem.backend.Backend.propose`: `presence_threshold` empties the masks and
        sets the no-object pointer for rows with occlusion logit <= it (SAM 3's rule is 0);
        the memory encoder keeps SAM 3's own rule (absent iff <= 0)."""
        options.check("sam3", SUPPORTED)
        assert isinstance(features, FrameFeatures)
        index: dict[tuple[Any, ...], int] = {}
        plans: list[MemoryPlan] = []
        row_to_unique = []
        for query in queries:
            signature = self._signature(query.plan)
            if signature not in index:
                index[signature] = len(plans)
                plans.append(query.plan)
            row_to_unique.append(index[signature])
        groups: dict[tuple[int, int], list[int]] = {}
        for u, plan in enumerate(plans):
            groups.setdefault((len(plan.spatial), len(plan.pointers)), []).append(u)
        parts: list[tuple[torch.Tensor, ...] | None] = [None] * len(plans)
        for members in groups.values():
            out = self._track([plans[u] for u in members], features, options.presence_threshold)
            for i, u in enumerate(members):
                parts[u] = tuple(t[i : i + 1] for t in out)
        low_res, ious, tokens, occlusion = (
            torch.cat([p[j] for p in parts if p is not None]) for j in range(4)
        )
        unique_iou = ious.float().cpu().numpy()
        unique_occ = occlusion[:, 0].float().cpu().numpy()
        batch = _Batch(
            self._token, features, row_to_unique, low_res, tokens, occlusion,
            (unique_occ > options.presence_threshold).tolist(), options.presence_threshold,
        )
        rows = np.asarray(row_to_unique)
        boxes = None
        if options.boxes:
            boxes = candidate_boxes(low_res, self.tracker.image_size)[rows]
        return Proposals(
            unique_iou[rows].astype(np.float32), unique_occ[rows].astype(np.float32), boxes,
            batch=batch,
        )

    def _track(
        self, plans: list[MemoryPlan], features: FrameFeatures, presence_threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory attention + mask decoder for plans of one layout, as one batch."""
        tracker = self.tracker
        batch = len(plans)
        memory, memory_pos, weight, num_pointer_tokens = self._assemble(plans)
        conditioned = memory_attention(
            tracker.transformer.encoder,
            features.vision_feats[-1].expand(-1, batch, -1),
            features.vision_pos[-1].expand(-1, batch, -1),
            memory,
            memory_pos,
            num_pointer_tokens,
            weight,
        )
        height, width = features.feat_sizes[-1]
        pix_feat = conditioned.permute(1, 2, 0).view(batch, tracker.hidden_dim, height, width)
        high_res = [x.expand(batch, -1, -1, -1) for x in features.high_res]
        return self._heads(pix_feat, high_res, None, True, presence_threshold)

    def _heads(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_inputs: dict[str, torch.Tensor] | None,
        multimask: bool,
        presence_threshold: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on memory-conditioned features (B rows), as SAM 3's
        `_forward_sam_heads` up to its choice: (low-res masks (B, K, h, w) float32, IoUs
        (B, K), output tokens (B, K, C), occlusion logits (B, 1)). Masks of rows whose
        occlusion logit is <= `presence_threshold` are NO_OBJ_SCORE (SAM 3's rule is 0)."""
        tracker = self.tracker
        batch = pix_feat.shape[0]
        if point_inputs is None:
            coords = torch.zeros(batch, 1, 2, device=self.device)
            labels = -torch.ones(batch, 1, dtype=torch.int32, device=self.device)
        else:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
        sparse, dense = tracker.sam_prompt_encoder(
            points=(coords, labels), boxes=None, masks=None
        )
        low_res, ious, tokens, occlusion = tracker.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=tracker.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=high_res,
        )
        present = occlusion > presence_threshold
        low_res = torch.where(present[:, None, None], low_res, NO_OBJ_SCORE)
        return low_res.float(), ious, tokens, occlusion

    def _pointer(
        self, token: torch.Tensor, occlusion: torch.Tensor, presence_threshold: float
    ) -> torch.Tensor:
        """(1, C) object pointer of one output token (1, C), as SAM 3 makes it: the no-object
        pointer where the occlusion logit (1, 1) is <= `presence_threshold` (SAM 3: 0)."""
        tracker = self.tracker
        present = (occlusion > presence_threshold).float()
        pointer: torch.Tensor = present * tracker.obj_ptr_proj(token)
        return pointer + (1 - present) * tracker.no_obj_ptr

    def _assemble(
        self, plans: list[MemoryPlan]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """Memory tokens (M, B, C_mem), their positional encodings, key weights (M, B, 1)
        or None when every weight is 1, and the number of pointer tokens."""
        tracker = self.tracker
        split = tracker.hidden_dim // tracker.mem_dim
        columns, positions, weights = [], [], []
        num_pointer_tokens = 0
        for plan in plans:
            feats, pos, weight = [], [], []
            for ref in plan.spatial:
                tokens = self._memory(ref.node).tokens(self.device)
                feats.append(tokens)
                pos.append(self._spatial_position(ref.position))
                weight.append(torch.full((tokens.shape[0],), ref.weight))
            if plan.pointers:
                pointers = torch.stack([self._memory(r.node).pointer for r in plan.pointers])
                pointer_pos = self._pointer_positions(
                    tuple(r.position for r in plan.pointers), plan.pointer_span
                )
                if split > 1:
                    pointers = pointers.reshape(-1, 1, split, tracker.mem_dim)
                    pointers = pointers.permute(0, 2, 1, 3).flatten(0, 1)
                    pointer_pos = pointer_pos.repeat_interleave(split, dim=0)
                feats.append(pointers.to(self.device))
                pos.append(pointer_pos)
                weight.append(
                    torch.tensor([r.weight for r in plan.pointers]).repeat_interleave(split)
                )
                num_pointer_tokens = pointers.shape[0]
            columns.append(torch.cat(feats, dim=0))
            positions.append(torch.cat(pos, dim=0))
            weights.append(torch.cat(weight))
        memory = torch.cat(columns, dim=1)
        memory_pos = torch.cat(positions, dim=1)
        all_weights = torch.stack(weights, dim=1)
        if bool((all_weights == 1.0).all()):
            return memory, memory_pos, None, num_pointer_tokens
        key_weight = all_weights.to(device=self.device, dtype=memory.dtype)[..., None]
        return memory, memory_pos, key_weight, num_pointer_tokens

    def _spatial_position(self, position: int) -> torch.Tensor:
        """(HW, 1, C_mem) positional encoding of a spatial entry, as SAM 3 adds it."""
        cached = self._spatial_pos_cache.get(position)
        if cached is None:
            assert self._maskmem_pos is not None
            slots = self.tracker.num_maskmem
            if not 0 <= position < slots:
                raise MemoryContractError(
                    f"spatial memory position {position} is outside SAM 3's 0..{slots - 1}"
                )
            index = slots - 1 if position == 0 else position - 1
            cached = self._maskmem_pos + self.tracker.maskmem_tpos_enc[index]
            self._spatial_pos_cache[position] = cached
        return cached

    def _pointer_positions(self, positions: tuple[int, ...], span: int | None) -> torch.Tensor:
        """(n, 1, C_mem) pointer position encodings, as SAM 3's `_get_tpos_enc` computes them
        (on the model's device instead of through pinned memory), normalised over `span`
        frames (None: the video's length, as SAM 3's predictor does)."""
        key = (*positions, -1 if span is None else span)
        cached = self._pointer_pos_cache.get(key)
        if cached is None:
            tracker = self.tracker
            frames = self._num_frames if span is None else span
            t_diff_max = min(frames, tracker.max_obj_ptrs_in_encoder) - 1
            relative = torch.tensor(positions, device=self.device) / t_diff_max
            encoded = get_1d_sine_pe(relative, dim=tracker.hidden_dim)
            cached = tracker.obj_ptr_tpos_proj(encoded).unsqueeze(1)
            self._pointer_pos_cache[key] = cached
        return cached

    def _remember_pos(self, pos: list[torch.Tensor]) -> None:
        if self._maskmem_pos is None:
            self._maskmem_pos = pos[-1][0:1].flatten(2).permute(2, 0, 1).clone()

    # --- commit --------------------------------------------------------------------------------

    @_model_work
    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        assert isinstance(features, FrameFeatures)
        pending = proposals.batch
        if not isinstance(pending, _Batch) or pending.owner is not self._token:
            raise MemoryContractError(
                "commit with proposals that did not come from this backend's propose"
            )
        if pending.features.frame != features.frame:
            raise MemoryContractError(
                f"commit on frame {features.frame} with proposals of frame "
                f"{pending.features.frame}: commit the proposals made for the frame being "
                "committed"
            )
        # Every candidate of an absent object is the same empty mask and no-object pointer.
        contents: dict[tuple[int, int], int] = {}
        work: list[tuple[int, int, int]] = []
        for commit in commits:
            unique = pending.row_to_unique[commit.row]
            key = (unique, commit.candidate if pending.present[unique] else -1)
            if key not in contents:
                contents[key] = self._new_content()
                work.append((contents[key], unique, commit.candidate))
            self._hold(commit.node, contents[key])
        self._store.update(self._encode(features, pending, work))
        self.peak_stored = max(self.peak_stored, len(self._store))

    def _new_content(self) -> int:
        self._next_content += 1
        return self._next_content

    def _hold(self, node: int, content: int) -> None:
        self._node_content[node] = content
        self._content_refs[content] = self._content_refs.get(content, 0) + 1

    def _encode(
        self, features: FrameFeatures, pending: _Batch, work: list[tuple[int, int, int]]
    ) -> dict[int, StoredMemory]:
        """Memory encoder for the new contents, one batch; pointers one row at a time."""
        if not work:
            return {}
        tracker = self.tracker
        uniques = torch.tensor([u for _, u, _ in work])
        candidates = torch.tensor([k for _, _, k in work])
        low_res = pending.low_res[uniques, candidates][:, None]
        high_res = F.interpolate(
            low_res, size=(tracker.image_size,) * 2, mode="bilinear", align_corners=False
        )
        batch = len(work)
        memory, pos = tracker._encode_new_memory(
            image=None,
            current_vision_feats=[x.expand(-1, batch, -1) for x in features.vision_feats],
            feat_sizes=features.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=pending.occlusion[uniques],
            is_mask_from_pts=False,
        )
        self._remember_pos(pos)
        memory = memory.to(torch.bfloat16).to(self.storage)
        out = {}
        for i, (content, unique, candidate) in enumerate(work):
            pointer = self._pointer(
                pending.tokens[unique, candidate][None],
                pending.occlusion[unique : unique + 1],
                pending.presence_threshold,
            )
            out[content] = StoredMemory(
                memory[i : i + 1], pointer, low_res[i : i + 1].to(self.storage), content
            )
        return out

    # --- output and release --------------------------------------------------------------------

    @_model_work
    def mask_logits(self, node: int) -> Float32Array:
        """Video-resolution logits: the low-resolution mask upsampled bilinearly, as SAM 3's
        predictor outputs it."""
        full = self.logits(node).to(self.device)
        if full.shape[-2:] != self._frame_size:
            full = F.interpolate(full, size=self._frame_size, mode="bilinear",
                                 align_corners=False)
        result: Float32Array = full[0, 0].float().cpu().numpy()
        return result

    def logits(self, node: int) -> torch.Tensor:
        """The node's low-resolution mask logits (1, 1, h, w), for tests and overlays."""
        return self._memory(node).low_res_mask

    def release(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            content = self._node_content.pop(node, None)
            if content is None:
                raise MemoryContractError(f"released node {node}, which is not held")
            self._content_refs[content] -= 1
            if self._content_refs[content] == 0:
                del self._content_refs[content]
                del self._store[content]


def candidate_boxes(low_res: torch.Tensor, image_size: int) -> np.ndarray:
    """(U, K, h, w) mask logits -> (U, K, 4) float32 boxes x1, y1, x2, y2 on the model's
    square input grid: upsampled as SAM 3 does, pixels with logit > 0, max inclusive, an
    empty mask [0, 0, 0, 0] (SAMURAI's boxes)."""
    high = F.interpolate(
        low_res.float(), size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    inside = high > 0
    rows, cols = inside.any(dim=-1).cpu().numpy(), inside.any(dim=-2).cpu().numpy()
    return boxes_from_occupancy(rows, cols)


def autocast_dtype(name: str) -> torch.dtype | None:
    """`--dtype` (fp32, bf16, fp16) -> the autocast dtype (None: fp32, no autocast)."""
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in dtypes:
        raise ConfigError(f"unknown dtype {name!r}; use fp32, bf16 or fp16")
    return dtypes[name]
