"""The SAM 2 backend: one image-encoder pass per frame, every pathway batched.

Per frame, `propose` groups the distinct memory plans (identical pathways, such as SAM2Long's
clones, are computed once) by memory layout, and runs memory attention and the mask decoder
for each group as one batch. `commit` encodes the kept candidates' memories in one batch;
identical children (same plan, same candidate, or any candidate of an absent object) share
one memory. Stored memories live until the engine releases their nodes. A promoted commit
(`Commit.promote`) is encoded from its binarised mask, as sam2 encodes a prompt, in a second
batch of its own; mask statistics (`ProposalOptions.mask_stats`) are measured on the model's
device (`treemem.backends.sam2.masks`).

Bit-exactness with sam2's own predictor is a design constraint: memory features are stored in
bfloat16 as sam2 stores them, the pieces sam2 computes one row at a time (object pointers, the
pointer position encoding) are computed one row at a time here too, because a matrix product
of one row takes a different kernel than a batch of rows.

Precision: `autocast` (bfloat16 or float16) runs the model's work (encode, prompt, propose,
commit, the mask-logit upsampling) inside `torch.autocast(device_type, dtype)`, as sam2's
`tools/vos_inference.py` runs its predictor; the mask logits handed out stay float32. Without
it (fp32) no autocast context is entered at all.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.modeling.sam2_utils import get_1d_sine_pe

from treemem.backends.frames import FrameImages
from treemem.backends.sam2.attention import weighted_memory_attention
from treemem.backends.sam2.compiled import compile_model, compiled_memory_attention
from treemem.backends.sam2.masks import mask_stats
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
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
_Method = TypeVar("_Method", bound=Callable[..., Any])
_EXPORT_KIND = "treemem.sam2"
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
SUPPORTED_OPTIONS = frozenset({"boxes", "presence_threshold", "mask_stats", "promotion"})


def candidate_boxes(low_res: torch.Tensor, image_size: int) -> np.ndarray:
    """(U, K, h, w) mask logits -> (U, K, 4) float32 boxes x1, y1, x2, y2 on the model's
    square input grid: upsampled as sam2 does, pixels with logit > 0, max inclusive, an
    empty mask [0, 0, 0, 0] (SAMURAI's boxes)."""
    high = F.interpolate(
        low_res.float(), size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    inside = high > 0
    # Reduce on the device; only the row and column occupancy crosses to the host.
    rows, cols = inside.any(dim=-1).cpu().numpy(), inside.any(dim=-2).cpu().numpy()
    return boxes_from_occupancy(rows, cols)


def autocast_dtype(name: str) -> torch.dtype | None:
    """`--dtype` (fp32, bf16, fp16) -> the autocast dtype (None: fp32, no autocast)."""
    if name not in AUTOCAST_DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use fp32, bf16 or fp16")
    return AUTOCAST_DTYPES[name]


def check_autocast(device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a dtype torch's autocast for `device` does not run (torch warns and disables
    autocast for it, which would silently run fp32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device.type, dtype=dtype):
                enabled = torch.is_autocast_enabled(device.type)
        except RuntimeError:
            enabled = False
    if not enabled:
        name = next((k for k, v in AUTOCAST_DTYPES.items() if v == dtype), str(dtype))
        raise ConfigError(
            f"torch's {device.type} autocast does not support {name} (torch {torch.__version__});"
            " use fp32 or bf16"
        )


def _model_work(method: _Method) -> _Method:
    """Run a backend method in inference mode and under the backend's autocast, if any."""

    @functools.wraps(method)
    def wrapped(self: Sam2Backend, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(), self._autocast():
            return method(self, *args, **kwargs)

    return cast(_Method, wrapped)


@dataclass(frozen=True)
class FrameFeatures:
    """The image encoder's output for one frame (batch 1), flattened as sam2 does."""

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
    """One committed candidate: what later frames read, and its mask for output.

    Features are stored in bfloat16, as sam2 stores them; the float32 token layout memory
    attention reads is made once, on first use, and kept while the memory lives.
    """

    features: torch.Tensor  # (1, C_mem, H, W) bfloat16
    pointer: torch.Tensor  # (1, C)
    low_res_mask: torch.Tensor  # (1, 1, h, w) logits
    content: int
    _tokens: torch.Tensor | None = None

    def tokens(self, device: torch.device) -> torch.Tensor:
        """(HW, 1, C_mem) float32 tokens on `device`."""
        if self._tokens is None or self._tokens.device != device:
            stored = self.features.to(device)
            self._tokens = stored.flatten(2).permute(2, 0, 1).float()
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
    signatures: list[tuple[Any, ...]]
    present: list[bool]  # occlusion > threshold per unique plan, read on the host once
    presence_threshold: float = 0.0


class Sam2Backend:
    """A sam2 `SAM2Base` model driven by treemem's engine (see module docstring)."""

    num_candidates = 3

    def __init__(
        self,
        model: Any,
        read_frame: FrameReader,
        num_frames: int | None,
        frame_size: tuple[int, int],
        *,
        offload: bool = False,
        autocast: torch.dtype | None = None,
        compile: bool = False,
        rows_alone: bool = False,
    ) -> None:
        """`num_frames` None: a live source of unknown length, whose frames are read as
        they arrive and never ahead (see `pointer_length` for what SAM 2 uses the length
        for). `autocast`: torch.bfloat16 or torch.float16 to run the model under
        `torch.autocast` (see the module docstring); None (default) is fp32. `compile`: run
        the model's components through `torch.compile` (`compiled.py`; compiles `model` in
        place, as sam2's VOS-optimised predictor does).

        `rows_alone`: run every distinct row through memory attention, the mask decoder and
        the memory encoder as a batch of one, the shapes sam2 1.1.0's predictor runs each
        object in. A batched matrix product may round differently from one of one row (seen:
        up to 1.5e-7 in the logits of two objects), so this is what makes several objects bit
        for bit equal to sam2's predictor; it costs the batching (one pass per distinct
        pathway instead of one per memory layout)."""
        self.model = model
        self._num_frames = num_frames
        self.pointer_length = model.max_obj_ptrs_in_encoder if num_frames is None else num_frames
        """The video length SAM 2 normalises object-pointer positions by: its
        `t_diff_max = min(num_frames, max_obj_ptrs_in_encoder) - 1`. A live source has no
        length, so it stands in as `max_obj_ptrs_in_encoder` (16): the value sam2 uses for
        every video at least that long, so a stream equals the file run on such videos; on a
        shorter one sam2 divides by (frames - 1) instead, which a stream cannot know."""
        self._frame_size = frame_size
        self.device = next(model.parameters()).device
        if autocast is not None:
            check_autocast(self.device, autocast)
        self.autocast = autocast
        self._attend: Callable[..., torch.Tensor] = weighted_memory_attention
        if compile:
            compile_model(model)
            self._attend = compiled_memory_attention(self.device)
        self.storage = torch.device("cpu") if offload else self.device
        self._node_content: dict[int, int] = {}
        self._store: dict[int, StoredMemory] = {}
        self._content_refs: dict[int, int] = {}
        self._next_content = 0
        self._maskmem_pos: torch.Tensor | None = None
        self._pointer_pos_cache: dict[tuple[int, ...], torch.Tensor] = {}
        self._spatial_pos_cache: dict[int, torch.Tensor] = {}
        self._last: FrameFeatures | None = None
        self.images = FrameImages(read_frame, frame_size, model.image_size, IMAGE_MEAN, IMAGE_STD,
                                  self.device, num_frames)
        self._token = object()
        self.distinct_rows: list[int] = []
        self.rows_alone = rows_alone

    @property
    def num_frames(self) -> int:
        if self._num_frames is None:
            raise InputError("a live source has no length: its frames end when the stream does")
        return self._num_frames

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    # --- frames --------------------------------------------------------------------------------

    @_model_work
    def encode(self, frame: int) -> FrameFeatures:
        if self._last is not None and self._last.frame == frame:
            return self._last
        backbone = self.model.forward_image(self.images.take(frame))
        _, feats, pos, sizes = self.model._prepare_backbone_features(backbone)
        self._last = FrameFeatures(frame, feats, pos, sizes)
        return self._last

    # --- prompts -------------------------------------------------------------------------------

    @_model_work
    def prompt(
        self,
        features: object,
        prompt: Prompt,
        node: int,
        options: ProposalOptions,
    ) -> PromptResult:
        """See `treemem.backend.Backend.prompt`. A mask prompt is its own output (sam2's
        `use_mask_input_as_output_without_sam`); clicks and boxes go through the mask decoder,
        whose output follows `options.presence_threshold` as tracking frames do (masks emptied
        and the no-object pointer at occlusion logit <= it), so SAMURAI's -1 holds on its
        prompt frame too. The memory encoder keeps sam2's own rule (absent iff <= 0)."""
        options.check("sam2", SUPPORTED_OPTIONS)
        assert isinstance(features, FrameFeatures)
        model = self.model
        height, width = self._frame_size
        if prompt.mask is not None:
            if prompt.mask.shape != (height, width):
                raise InputError(
                    f"mask for object {prompt.obj} is {prompt.mask.shape[1]}x"
                    f"{prompt.mask.shape[0]}, the video is {width}x{height}: "
                    "give a mask of the video's size"
                )
            low_res, pointer, iou, occlusion = self._mask_prompt(features, prompt.mask)
            box = None
        else:
            low_res, pointer, iou, occlusion, box = self._point_prompt(
                features, self._point_inputs(prompt), options.presence_threshold
            )
        high_res = F.interpolate(
            low_res, size=(model.image_size,) * 2, mode="bilinear", align_corners=False
        )
        memory, pos = model._encode_new_memory(
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
        return PromptResult(iou=iou, occlusion=float(occlusion.item()), box=box)

    def _mask_prompt(
        self, features: FrameFeatures, mask_array: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """sam2's mask-as-output: (low-res mask (1, 1, h, w), pointer (1, C), IoU (sam2's
        dummy 1), occlusion logit (1, 1))."""
        model = self.model
        mask = torch.tensor(mask_array, dtype=torch.bool)[None, None].float().to(self.device)
        size = model.image_size
        if mask.shape[-2:] != (size, size):
            mask = F.interpolate(
                mask, size=(size, size), align_corners=False, mode="bilinear", antialias=True
            )
            mask = (mask >= 0.5).float()
        _, sam_outputs, _, _ = model._track_step(
            frame_idx=features.frame,
            is_init_cond_frame=True,
            current_vision_feats=features.vision_feats,
            current_vision_pos_embeds=features.vision_pos,
            feat_sizes=features.feat_sizes,
            point_inputs=None,
            mask_inputs=mask,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=self.pointer_length,
            track_in_reverse=False,
            prev_sam_mask_logits=None,
        )
        _, _, ious, low_res, _, pointer, occlusion = sam_outputs
        return low_res, pointer, float(ious.max().item()), occlusion

    def _point_prompt(
        self,
        features: FrameFeatures,
        point_inputs: dict[str, torch.Tensor],
        presence_threshold: float,
    ) -> tuple[
        torch.Tensor, torch.Tensor, float, torch.Tensor, tuple[float, float, float, float] | None
    ]:
        """Clicks or a box on an initial conditioning frame, as sam2's `_forward_sam_heads`
        with the presence threshold given: (low-res mask, pointer, IoU, occlusion logit, box).

        A single click chooses among 3 candidates (sam2's multimask output) by predicted IoU;
        its box is reported, where SAMURAI's filter starts. A box or several clicks give one
        mask and no box (the filter starts on the next frame)."""
        model = self.model
        pix_feat = model._prepare_memory_conditioned_features(
            frame_idx=features.frame,
            is_init_cond_frame=True,
            current_vision_feats=features.vision_feats[-1:],
            current_vision_pos_embeds=features.vision_pos[-1:],
            feat_sizes=features.feat_sizes[-1:],
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=self.pointer_length,
            track_in_reverse=False,
        )
        multimask = bool(model._use_multimask(True, point_inputs))
        low_res, ious, tokens, occlusion = self._heads(
            pix_feat, features.high_res, point_inputs, multimask, presence_threshold
        )
        best = int(torch.argmax(ious[0]).item()) if multimask else 0
        chosen = low_res[:, best : best + 1]
        token = tokens[:, best] if tokens.shape[1] > 1 else tokens[:, 0]
        pointer = self._pointer(token, occlusion, presence_threshold)
        box = None
        if multimask:
            x1, y1, x2, y2 = candidate_boxes(chosen, model.image_size)[0, 0].tolist()
            box = (x1, y1, x2, y2)
        # A mask prompt's IoU is sam2's dummy 1; for clicks, the chosen mask's predicted IoU.
        return chosen, pointer, float(ious.max().item()), occlusion, box

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
        coords = torch.tensor(points, dtype=torch.float32)
        for x, y in points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise InputError(
                    f"point ({x}, {y}) of object {prompt.obj} is outside the {width}x{height} frame"
                )
        scale = torch.tensor([width, height], dtype=torch.float32)
        coords = coords / scale * self.model.image_size
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
        sets the no-object pointer for rows with occlusion logit <= it (sam2's rule is 0);
        the memory encoder keeps sam2's own rule (absent iff <= 0)."""
        options.check("sam2", SUPPORTED_OPTIONS)
        presence_threshold = options.presence_threshold
        assert isinstance(features, FrameFeatures)
        signatures: list[tuple[Any, ...]] = []
        plans: list[MemoryPlan] = []
        index: dict[tuple[Any, ...], int] = {}
        row_to_unique = []
        for query in queries:
            signature = self._signature(query.plan)
            if signature not in index:
                index[signature] = len(signatures)
                signatures.append(signature)
                plans.append(query.plan)
            row_to_unique.append(index[signature])
        self.distinct_rows.append(len(plans))
        groups: dict[tuple[int, int], list[int]] = {}
        for u, plan in enumerate(plans):
            layout = (u,) if self.rows_alone else (len(plan.spatial), len(plan.pointers))
            groups.setdefault(layout, []).append(u)
        low_res: list[torch.Tensor | None] = [None] * len(plans)
        ious: list[torch.Tensor | None] = [None] * len(plans)
        tokens: list[torch.Tensor | None] = [None] * len(plans)
        occlusion: list[torch.Tensor | None] = [None] * len(plans)
        for members in groups.values():
            out = self._track([plans[u] for u in members], features, presence_threshold)
            for i, u in enumerate(members):
                low_res[u], ious[u] = out[0][i : i + 1], out[1][i : i + 1]
                tokens[u], occlusion[u] = out[2][i : i + 1], out[3][i : i + 1]
        unique_occlusion = torch.cat([t for t in occlusion if t is not None])
        unique_iou = torch.cat([t for t in ious if t is not None]).float().cpu().numpy()
        unique_occ = unique_occlusion[:, 0].float().cpu().numpy()
        batch = _Batch(
            self._token,
            features,
            row_to_unique,
            torch.cat([t for t in low_res if t is not None]),
            torch.cat([t for t in tokens if t is not None]),
            unique_occlusion,
            signatures,
            (unique_occ > presence_threshold).tolist(),
            presence_threshold,
        )
        rows = np.asarray(row_to_unique)
        unique_boxes = None
        if options.boxes:
            unique_boxes = candidate_boxes(batch.low_res, self.model.image_size)
        stats = mask_stats(batch.low_res, self._frame_size) if options.mask_stats else None
        return Proposals(
            unique_iou[rows].astype(np.float32),
            unique_occ[rows].astype(np.float32),
            None if unique_boxes is None else unique_boxes[rows],
            batch=batch,
            stats=None if stats is None else stats.rows(rows),
        )

    def _track(
        self, plans: list[MemoryPlan], features: FrameFeatures, presence_threshold: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory attention + mask decoder for plans of one layout, as one batch."""
        model = self.model
        batch = len(plans)
        memory, memory_pos, weight, num_pointer_tokens = self._assemble(plans)
        current = features.vision_feats[-1].expand(-1, batch, -1)
        current_pos = features.vision_pos[-1].expand(-1, batch, -1)
        conditioned = self._attend(
            model.memory_attention,
            current,
            current_pos,
            memory,
            memory_pos,
            num_pointer_tokens,
            weight,
        )
        height, width = features.feat_sizes[-1]
        pix_feat = conditioned.permute(1, 2, 0).view(batch, model.hidden_dim, height, width)
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
        """Prompt encoder + mask decoder on memory-conditioned features (B rows), as sam2's
        `_forward_sam_heads` up to its choice: (low-res masks (B, K, h, w) float32, IoUs
        (B, K), output tokens (B, K, C), occlusion logits (B, 1)). Masks of rows whose
        occlusion logit is <= `presence_threshold` are NO_OBJ_SCORE (sam2's rule is 0)."""
        model = self.model
        batch = pix_feat.shape[0]
        if point_inputs is None:
            coords = torch.zeros(batch, 1, 2, device=self.device)
            labels = -torch.ones(batch, 1, dtype=torch.int32, device=self.device)
        else:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, ious, tokens, occlusion = model.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=high_res,
        )
        if model.pred_obj_scores:
            present = occlusion > presence_threshold
            low_res = torch.where(present[:, None, None], low_res, NO_OBJ_SCORE)
        return low_res.float(), ious, tokens, occlusion

    def _pointer(
        self, token: torch.Tensor, occlusion: torch.Tensor, presence_threshold: float
    ) -> torch.Tensor:
        """(1, C) object pointer of one output token (1, C), as sam2 makes it: the no-object
        pointer where the occlusion logit (1, 1) is <= `presence_threshold` (sam2: 0)."""
        model = self.model
        pointer: torch.Tensor = model.obj_ptr_proj(token)
        if model.pred_obj_scores:
            present = (occlusion > presence_threshold).float()
            if model.fixed_no_obj_ptr:
                pointer = present * pointer
            pointer = pointer + (1 - present) * model.no_obj_ptr
        return pointer

    def _assemble(
        self, plans: list[MemoryPlan]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """Memory tokens (M, B, C_mem), their positional encodings, key weights (M, B, 1)
        or None when every weight is 1, and the number of pointer tokens."""
        model = self.model
        assert self._maskmem_pos is not None
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
                pointers = torch.stack([self._memory(r.node).pointer for r in plan.pointers], dim=0)
                pointer_pos = self._pointer_positions(
                    tuple(r.position for r in plan.pointers), plan.pointer_span
                )
                split = model.hidden_dim // model.mem_dim
                if split > 1:
                    pointers = pointers.reshape(-1, 1, split, model.mem_dim)
                    pointers = pointers.permute(0, 2, 1, 3).flatten(0, 1)
                    pointer_pos = pointer_pos.repeat_interleave(split, dim=0)
                feats.append(pointers)
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
        """(HW, 1, C_mem) positional encoding of a spatial entry, as sam2 adds it."""
        cached = self._spatial_pos_cache.get(position)
        if cached is None:
            assert self._maskmem_pos is not None
            tpos = self.model.maskmem_tpos_enc[self._tpos_index(position)]
            cached = self._spatial_pos_cache[position] = self._maskmem_pos + tpos
        return cached

    def _tpos_index(self, position: int) -> int:
        slots = self.model.num_maskmem
        if not 0 <= position < slots:
            raise MemoryContractError(
                f"spatial memory position {position} is outside SAM 2's 0..{slots - 1}"
            )
        return slots - 1 if position == 0 else position - 1

    def _pointer_positions(self, positions: tuple[int, ...], span: int | None) -> torch.Tensor:
        """(n, 1, C_mem) pointer position encodings, computed exactly as sam2 does, over
        `span` frames (None: `pointer_length`, the video's length as in sam2's predictor)."""
        key = (*positions, -1 if span is None else span)
        cached = self._pointer_pos_cache.get(key)
        if cached is not None:
            return cached
        model = self.model
        if model.add_tpos_enc_to_obj_ptrs:
            frames = self.pointer_length if span is None else span
            t_diff_max = min(frames, model.max_obj_ptrs_in_encoder) - 1
            dim = model.hidden_dim if model.proj_tpos_enc_in_obj_ptrs else model.mem_dim
            encoded = get_1d_sine_pe(
                torch.tensor(positions, device=self.device) / t_diff_max, dim=dim
            )
            encoded = model.obj_ptr_tpos_proj(encoded).unsqueeze(1)
        else:
            encoded = torch.zeros(len(positions), 1, model.mem_dim, device=self.device)
        self._pointer_pos_cache[key] = encoded
        return encoded

    def _remember_pos(self, pos: list[torch.Tensor]) -> None:
        if self._maskmem_pos is None:
            self._maskmem_pos = pos[-1][0:1].flatten(2).permute(2, 0, 1).clone()

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
        model = self.model
        # Every candidate of an absent object is the same empty mask and no-object pointer.
        absent_alias = bool(model.pred_obj_scores and model.fixed_no_obj_ptr)
        contents: dict[tuple[int, int, bool], int] = {}
        work: list[tuple[int, int, int]] = []
        promoted: list[tuple[int, int, int]] = []
        for commit in commits:
            unique = pending.row_to_unique[commit.row]
            present = pending.present[unique]
            key = (unique, commit.candidate if present or not absent_alias else -1, commit.promote)
            if key not in contents:
                contents[key] = self._new_content()
                (promoted if commit.promote else work).append(
                    (contents[key], unique, commit.candidate)
                )
            self._hold(commit.node, contents[key])
        for batch in ([[item] for item in work] if self.rows_alone else [work]):
            self._store.update(self._encode(features, pending, batch))
        self._store.update(self._encode(features, pending, promoted, as_prompt=True))

    def _new_content(self) -> int:
        self._next_content += 1
        return self._next_content

    def _hold(self, node: int, content: int) -> None:
        self._node_content[node] = content
        self._content_refs[content] = self._content_refs.get(content, 0) + 1

    def _encode(
        self,
        features: FrameFeatures,
        pending: _Batch,
        work: list[tuple[int, int, int]],
        *,
        as_prompt: bool = False,
    ) -> dict[int, StoredMemory]:
        """Memory encoder for the new contents, one batch; pointers one row at a time.

        `as_prompt` encodes the masks as sam2 encodes a prompt's (binarised, not through a
        sigmoid): a promoted frame's conditioning memory. Pointers and masks stay as tracked."""
        if not work:
            return {}
        model = self.model
        uniques = torch.tensor([u for _, u, _ in work])
        candidates = torch.tensor([k for _, _, k in work])
        low_res = pending.low_res[uniques, candidates][:, None]
        occlusion = pending.occlusion[uniques]
        high_res = F.interpolate(
            low_res, size=(model.image_size,) * 2, mode="bilinear", align_corners=False
        )
        batch = len(work)
        current = [x.expand(-1, batch, -1) for x in features.vision_feats]
        memory, pos = model._encode_new_memory(
            current_vision_feats=current,
            feat_sizes=features.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=occlusion,
            is_mask_from_pts=as_prompt,
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
        """sam2's video-resolution logits: the low-resolution mask upsampled bilinearly."""
        low_res = self._memory(node).low_res_mask.to(self.device)
        full = F.interpolate(low_res, size=self._frame_size, mode="bilinear", align_corners=False)
        result: Float32Array = full[0, 0].float().cpu().numpy()
        return result

    def logits(self, node: int) -> torch.Tensor:
        """The node's low-resolution mask logits (1, 1, h, w), for tests and overlays."""
        return self._memory(node).low_res_mask

    def pointer(self, node: int) -> torch.Tensor:
        """The node's object pointer (1, C), for tests that compare it with a reference."""
        return self._memory(node).pointer

    def release(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            content = self._node_content.pop(node, None)
            if content is None:
                raise MemoryContractError(f"released node {node}, which is not held")
            self._content_refs[content] -= 1
            if self._content_refs[content] == 0:
                del self._content_refs[content]
                del self._store[content]

    # --- snapshots (treemem.backend.MemoryExport) ---------------------------------------------

    def export_memories(self) -> bytes:
        """Every held node and the memory it shares, with `torch.save`: bfloat16 features,
        pointers and low-resolution masks keep their dtype and bits. Each tensor is cloned,
        so a memory sliced from a commit batch saves its own row, not the whole batch."""
        memories = {
            content: {
                "features": stored.features.clone(),
                "pointer": stored.pointer.clone(),
                "low_res_mask": stored.low_res_mask.clone(),
            }
            for content, stored in self._store.items()
        }
        buffer = io.BytesIO()
        torch.save(
            {
                "kind": _EXPORT_KIND,
                "frame_size": list(self._frame_size),
                "maskmem_pos": self._maskmem_pos,
                "nodes": dict(self._node_content),
                "memories": memories,
            },
            buffer,
        )
        return buffer.getvalue()

    def import_memories(self, data: bytes) -> None:
        """The memories `export_memories` wrote, held again under their nodes (identical
        pathways still share one memory); tensors go back to this backend's devices."""
        try:
            saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            kind = saved["kind"]
        except Exception as error:  # torch raises several types for foreign bytes
            raise MemoryContractError(f"not a SAM 2 backend's memories ({error})") from None
        if kind != _EXPORT_KIND:
            raise MemoryContractError(f"memories of a {kind!r} backend, not SAM 2's")
        if tuple(saved["frame_size"]) != self._frame_size:
            raise MemoryContractError(
                f"memories of a {saved['frame_size']} video, this one is {list(self._frame_size)}"
            )
        held = sorted(set(saved["nodes"]) & set(self._node_content))
        if held:
            raise MemoryContractError(f"import of node {held[0]}, which is already held")
        if self._maskmem_pos is None and saved["maskmem_pos"] is not None:
            self._maskmem_pos = saved["maskmem_pos"].to(self.device)
        renamed: dict[int, int] = {}
        for old, tensors in saved["memories"].items():
            content = renamed[old] = self._new_content()
            self._store[content] = StoredMemory(
                tensors["features"].to(self.storage),
                tensors["pointer"].to(self.device),
                tensors["low_res_mask"].to(self.storage),
                content,
            )
        for node, old in saved["nodes"].items():
            self._hold(node, renamed[old])

    @property
    def stored_memories(self) -> int:
        """Distinct encoded memories held now (identical pathways share one)."""
        return len(self._store)
