"""A numpy-only backend that behaves like a noisy memory-based tracker over a synthetic video.

It reads the video's layers (each object's visible mask, its look-alike's, how much of each
is visible and hidden) and plays SAM 2's part in the search:

- Memory. Every committed node keeps its mask, labelled by what it covers: the object, its
  look-alike, or nothing. A pathway follows whichever of the two its memory plan votes for:
  each spatial memory votes for its label with weight `decay ** (position - 1)` (the prompt
  frame `prompt_vote`), times its key weight and mask quality. So one wrong commit is
  outvoted by the frames before it, but a few in a row make the pathway follow the
  look-alike from then on: greedy error accumulation.
- Candidates (K = 3 per row): 0 the followed object's visible mask, jittered by a pixel;
  1 the other one's (the look-alike, or the object when following the look-alike), or the
  followed mask shifted away when the other is not in view; 2 half of candidate 0.
- Predicted IoUs track visibility and are misleading exactly when it hurts: while the
  followed object is hidden or leaving, the look-alike scores higher. The look-alike never
  quite matches the prompt (`lookalike_match`), so a pathway on the object out-scores one on
  the look-alike over time, which is what lets the tree recover.
- Occlusion logit: clearly positive when the followed object is in view, clearly negative
  when it is out of frame, and pulled towards 0 (uncertain) while an occluder covers it.
  A row with logit <= the presence threshold (0, as SAM 2; a strategy set may lower it) gets
  three empty masks.
- Promotion: a promoted commit (`Commit.promote`) keeps its mask and label; its memory gets
  a content key of its own (it is encoded as a prompt is, so plans reading it differ), and
  the memory plan decides how strongly it votes (at position 0, as a prompt).
- Mask statistics are `treemem.geometry.mask_stats` of the candidate masks, whose own
  resolution is the video's.

Determinism: each row's noise comes from a counter-based hash of (seed, frame, the content
of its memory plan), so a pathway's proposals depend on what it remembers, never on its row
position or on the other rows of the batch; clones get identical proposals.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from treemem.backends.synthetic_video import SyntheticVideo
from treemem.geometry import mask_boxes, mask_stats
from treemem.types import (
    BoolArray,
    Commit,
    Float32Array,
    InputError,
    MemoryContractError,
    PathwayQuery,
    Prompt,
    PromptResult,
    ProposalOptions,
    Proposals,
    TreememError,
)

U64Array = npt.NDArray[np.uint64]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NUM_CANDIDATES = 3
OBJECT, LOOKALIKE, NOTHING = 0, 1, -1
_MASK64 = (1 << 64) - 1
_PROMPT_TAG = 0x5052_4F4D_5054  # "PROMPT"
_PROMOTED_TAG = 0x5052_4F4D_4F54  # "PROMOT"
SUPPORTED_OPTIONS = frozenset({"boxes", "presence_threshold", "mask_stats", "promotion"})
_EXPORT_KIND = "treemem.synthetic"


def _mix(value: int) -> int:
    """splitmix64 finaliser on a Python int (64-bit)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _fold(*values: int) -> int:
    key = 0
    for value in values:
        key = _mix(key ^ (value & _MASK64))
    return key


def _uniforms(keys: U64Array, count: int) -> F64Array:
    """(N, count) uniforms in [0, 1), a pure function of each row's key (splitmix64)."""
    with np.errstate(over="ignore"):
        z = keys[:, None] + np.arange(1, count + 1, dtype=np.uint64)[None, :] * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.asarray((z >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def _normals(uniforms: F64Array) -> F64Array:
    """Box-Muller: (N, 2m) uniforms -> (N, m) standard normals."""
    u1 = 1.0 - uniforms[:, 0::2]
    u2 = uniforms[:, 1::2]
    return np.asarray(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2))


def _shift(masks: BoolArray, dy: IntArray, dx: IntArray) -> BoolArray:
    """(N, H, W) masks, each moved by its own (dy, dx); what leaves the frame is lost."""
    n, height, width = masks.shape
    ys = np.arange(height)[None, :, None] - dy[:, None, None]
    xs = np.arange(width)[None, None, :] - dx[:, None, None]
    valid = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    rows = np.arange(n)[:, None, None]
    gathered = masks[rows, np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)]
    return np.asarray(gathered & valid)


def _dilate(masks: BoolArray) -> BoolArray:
    out = masks.copy()
    out[:, 1:] |= masks[:, :-1]
    out[:, :-1] |= masks[:, 1:]
    out[:, :, 1:] |= masks[:, :, :-1]
    out[:, :, :-1] |= masks[:, :, 1:]
    return out


def _erode(masks: BoolArray) -> BoolArray:
    return np.asarray(~_dilate(~masks))


def _jitter(masks: BoolArray, uniforms: F64Array) -> BoolArray:
    """Move each mask by up to one pixel and maybe grow or shrink it by one: uniforms (N, 3)."""
    dy = np.floor(uniforms[:, 0] * 3).astype(np.int64) - 1
    dx = np.floor(uniforms[:, 1] * 3).astype(np.int64) - 1
    moved = _shift(masks, dy, dx)
    op = uniforms[:, 2][:, None, None]
    return np.asarray(np.where(op < 0.25, _dilate(moved), np.where(op < 0.5, _erode(moved), moved)))


def _half(masks: BoolArray, angle: F64Array) -> BoolArray:
    """The part of each mask on one side of a line through its centroid."""
    _, height, width = masks.shape
    ys = np.arange(height, dtype=np.float64)[None, :, None]
    xs = np.arange(width, dtype=np.float64)[None, None, :]
    area = np.maximum(masks.sum(axis=(1, 2)), 1)
    cy = (masks * ys).sum(axis=(1, 2)) / area
    cx = (masks * xs).sum(axis=(1, 2)) / area
    side = (ys - cy[:, None, None]) * np.sin(angle)[:, None, None] + (
        xs - cx[:, None, None]
    ) * np.cos(angle)[:, None, None]
    return np.asarray(masks & (side >= 0))


def _iou(masks: BoolArray, truth: BoolArray) -> F64Array:
    """(N,) IoU of (N, H, W) masks against (N, H, W) truths, 0 for two empty masks."""
    inter = np.logical_and(masks, truth).sum(axis=(1, 2))
    union = np.logical_or(masks, truth).sum(axis=(1, 2))
    return np.asarray(np.where(union > 0, inter / np.maximum(union, 1), 0.0))


@dataclass(frozen=True)
class _Frame:
    """What `encode` returns: the frame index (the video is already in memory)."""

    index: int


@dataclass(frozen=True)
class _Memory:
    """A committed or prompted node: its mask, what the mask covers, and its content key."""

    mask: BoolArray
    obj: int
    label: int
    quality: float
    key: int


@dataclass(frozen=True)
class _Batch:
    """One `propose` call's candidates (`Proposals.batch`), for `commit` to pick from.

    `owner` is the proposing backend's token, so proposals of another backend are refused."""

    owner: object
    frame: int
    masks: BoolArray  # (N, K, H, W)
    keys: tuple[int, ...]
    objects: IntArray


class SyntheticBackend:
    """A noisy tracker over `video`'s ground truth (see the module docstring).

    `peak_held` is the largest number of node memories held at once, for memory checks.
    Rows are computed one by one in numpy, so a row's proposals are bit-identical in any
    batch (`batch_invariant`: a sweep may batch many configurations' rows together).
    """

    batch_invariant = True

    def __init__(
        self,
        video: SyntheticVideo,
        seed: int = 0,
        *,
        decay: float = 0.6,
        prompt_vote: float = 0.5,
        lookalike_match: float = 0.86,
    ) -> None:
        self.video = video
        self.seed = seed
        self.decay = decay
        self.prompt_vote = prompt_vote
        self.lookalike_match = lookalike_match
        n = video.num_objects
        ids = np.arange(1, n + 1, dtype=np.uint8)[None, :, None, None]
        # (T, n, 2, H, W): per frame and object, [object visible, look-alike visible].
        self._layers = np.stack(
            [video.gt[:, None] == ids, video.lookalike[:, None] == ids], axis=2
        )
        self._visible = np.stack([video.visibility, video.lookalike_visibility], axis=2)
        self._hidden = np.stack([video.occluded, video.lookalike_occluded], axis=2)
        self._memory: dict[int, _Memory] = {}
        self._token = object()
        self.peak_held = 0

    # --- Backend protocol ---------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return self.video.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.video.frame_size

    def encode(self, frame: int) -> object:
        if not 0 <= frame < self.num_frames:
            raise InputError(f"frame {frame} is outside the video (0..{self.num_frames - 1})")
        return _Frame(frame)

    def prompt(
        self,
        features: object,
        prompt: Prompt,
        node: int,
        options: ProposalOptions,
    ) -> PromptResult:
        """A prompt's mask is its own output, present iff non-empty (occlusion logit +-10, so
        any presence threshold between agrees)."""
        options.check("synthetic", SUPPORTED_OPTIONS)
        frame = self._frame(features)
        obj = self._object_index(prompt.obj)
        mask = self._prompt_mask(prompt, frame, obj)
        label, quality = self._label(mask[None], np.array([obj]), frame)
        key = _fold(_PROMPT_TAG, self.seed, prompt.obj, frame, int(mask.sum()))
        self._store(node, _Memory(mask, obj, int(label[0]), float(quality[0]), key))
        return PromptResult(iou=1.0, occlusion=10.0 if mask.any() else -10.0)

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        options.check("synthetic", SUPPORTED_OPTIONS)
        frame = self._frame(features)
        objects = np.array([self._object_index(q.obj) for q in queries], dtype=np.int64)
        followed = np.empty(len(queries), dtype=np.int64)
        keys: list[int] = []
        for row, query in enumerate(queries):
            followed[row], key = self._read_plan(query)
            keys.append(_fold(self.seed, frame, key))
        masks, iou, occlusion = self._candidates(frame, objects, followed, keys)
        masks[occlusion <= options.presence_threshold] = False
        masks.flags.writeable = False
        return Proposals(
            iou.astype(np.float32),
            occlusion.astype(np.float32),
            mask_boxes(masks) if options.boxes else None,
            batch=_Batch(self._token, frame, masks, tuple(keys), objects),
            stats=mask_stats(masks, masks.sum(axis=(-2, -1))) if options.mask_stats else None,
        )

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        frame = self._frame(features)
        pending = proposals.batch
        if not isinstance(pending, _Batch) or pending.owner is not self._token:
            raise MemoryContractError(
                "commit with proposals that did not come from this backend's propose"
            )
        if pending.frame != frame:
            raise MemoryContractError(
                f"commit on frame {frame} with proposals of frame {pending.frame}: commit "
                "the proposals made for the frame being committed"
            )
        if not commits:
            return
        rows = np.array([c.row for c in commits], dtype=np.int64)
        candidates = np.array([c.candidate for c in commits], dtype=np.int64)
        masks = pending.masks[rows, candidates]
        objects = pending.objects[rows]
        labels, qualities = self._label(masks, objects, frame)
        for i, c in enumerate(commits):
            key = _fold(pending.keys[c.row], c.candidate)
            if c.promote:
                key = _fold(_PROMOTED_TAG, key)
            memory = _Memory(
                masks[i].copy(), int(objects[i]), int(labels[i]), float(qualities[i]), key
            )
            self._store(c.node, memory)

    def mask_logits(self, node: int) -> Float32Array:
        """+1 inside the node's mask, -1 outside: the simulated tracker has no per-pixel
        confidence, so where two objects' masks overlap the lower id keeps the pixel."""
        memory = self._memory.get(node)
        if memory is None:
            raise MemoryContractError(f"node {node} has no mask: never committed, or released")
        return np.where(memory.mask, np.float32(1.0), np.float32(-1.0))

    def release(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            if self._memory.pop(node, None) is None:
                raise MemoryContractError(f"released node {node}, which is not held")

    # --- snapshots (treemem.backend.MemoryExport) ------------------------------------------

    def export_memories(self) -> bytes:
        """Every held node as one uncompressed npz (masks bit-packed): exact, no pickle."""
        nodes = sorted(self._memory)
        memories = [self._memory[node] for node in nodes]
        height, width = self.frame_size
        masks = np.zeros((len(nodes), height * width), dtype=bool)
        for i, memory in enumerate(memories):
            masks[i] = memory.mask.ravel()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            kind=np.array(_EXPORT_KIND),
            frame_size=np.array([height, width], dtype=np.int64),
            nodes=np.array(nodes, dtype=np.int64),
            masks=np.packbits(masks, axis=1),
            objects=np.array([m.obj for m in memories], dtype=np.int64),
            labels=np.array([m.label for m in memories], dtype=np.int64),
            qualities=np.array([m.quality for m in memories], dtype=np.float64),
            keys=np.array([m.key for m in memories], dtype=np.uint64),
        )
        return buffer.getvalue()

    def import_memories(self, data: bytes) -> None:
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
            kind = str(archive["kind"])
        except (OSError, ValueError, KeyError) as error:
            raise MemoryContractError(f"not a synthetic backend's memories ({error})") from None
        if kind != _EXPORT_KIND:
            raise MemoryContractError(f"memories of a {kind!r} backend, not the synthetic one")
        height, width = (int(v) for v in archive["frame_size"])
        if (height, width) != self.frame_size:
            raise MemoryContractError(
                f"memories of a {height}x{width} video, this one is "
                f"{self.frame_size[0]}x{self.frame_size[1]}"
            )
        nodes = archive["nodes"].tolist()
        held = sorted(set(nodes) & set(self._memory))
        if held:
            raise MemoryContractError(f"import of node {held[0]}, which is already held")
        masks = np.unpackbits(archive["masks"], axis=1, count=height * width).astype(bool)
        for i, node in enumerate(nodes):
            self._store(node, _Memory(
                masks[i].reshape(height, width),
                int(archive["objects"][i]),
                int(archive["labels"][i]),
                float(archive["qualities"][i]),
                int(archive["keys"][i]),
            ))

    # --- inspection -----------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Node memories held now."""
        return len(self._memory)

    # --- the tracker model ----------------------------------------------------------------

    def _frame(self, features: object) -> int:
        if not isinstance(features, _Frame):
            raise TreememError(f"features {features!r} did not come from this backend's encode")
        return features.index

    def _object_index(self, obj: int) -> int:
        if not 1 <= obj <= self.video.num_objects:
            raise InputError(
                f"object {obj} is not in the synthetic video (objects 1..{self.video.num_objects})"
            )
        return obj - 1

    def _store(self, node: int, memory: _Memory) -> None:
        memory.mask.flags.writeable = False
        self._memory[node] = memory
        self.peak_held = max(self.peak_held, len(self._memory))

    def _prompt_mask(self, prompt: Prompt, frame: int, obj: int) -> BoolArray:
        """A mask prompt as given; a box or points select the scene region they point at."""
        height, width = self.frame_size
        if prompt.mask is not None:
            mask = np.asarray(prompt.mask, dtype=bool)
            if mask.shape != (height, width):
                raise InputError(f"prompt mask is {mask.shape}, the video is {(height, width)}")
            return mask
        regions = self._layers[frame, obj]
        if prompt.box is not None:
            x0, y0, x1, y1 = (round(v) for v in prompt.box)
            inside = regions[:, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].sum(axis=(1, 2))
            if inside.max() == 0:
                return np.zeros((height, width), dtype=bool)
            return np.asarray(regions[int(np.argmax(inside))].copy())
        mask = np.zeros((height, width), dtype=bool)
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            yi, xi = round(y), round(x)
            if label == 1 and 0 <= yi < height and 0 <= xi < width:
                for region in regions:
                    if region[yi, xi]:
                        mask |= region
        return mask

    def _label(self, masks: BoolArray, objects: IntArray, frame: int) -> tuple[IntArray, F64Array]:
        """What each (N, H, W) mask covers (object, look-alike, nothing) and how well (IoU)."""
        layers = self._layers[frame, objects]
        scores = np.stack([_iou(masks, layers[:, 0]), _iou(masks, layers[:, 1])], axis=1)
        best = np.argmax(scores, axis=1)
        quality = scores[np.arange(len(best)), best]
        return np.where(quality > 0.3, best, NOTHING).astype(np.int64), quality

    def _read_plan(self, query: PathwayQuery) -> tuple[int, int]:
        """Which of object / look-alike the plan's memory follows, and the plan's content key."""
        votes = [0.0, 0.0]
        key = _fold(query.obj, len(query.plan.spatial), len(query.plan.pointers))
        if query.plan.pointer_span is not None:
            key = _fold(key, query.plan.pointer_span)
        for kind, refs in ((1, query.plan.spatial), (2, query.plan.pointers)):
            for ref in refs:
                memory = self._memory.get(ref.node)
                if memory is None:
                    raise MemoryContractError(
                        f"object {query.obj}'s memory plan reads node {ref.node}, which is released"
                    )
                key = _fold(key, kind, memory.key, ref.position, round(ref.weight * 2**24))
                if kind == 1 and memory.label != NOTHING:
                    vote = self.decay ** (ref.position - 1)
                    if ref.position == 0:
                        vote = self.prompt_vote
                    votes[memory.label] += vote * ref.weight * memory.quality
        return (LOOKALIKE if votes[LOOKALIKE] > votes[OBJECT] else OBJECT), key

    def _candidates(
        self, frame: int, objects: IntArray, followed: IntArray, keys: list[int]
    ) -> tuple[BoolArray, F64Array, F64Array]:
        """(N, K, H, W) candidate masks, (N, K) predicted IoUs, (N,) occlusion logits."""
        n = objects.shape[0]
        rows = np.arange(n)
        other = 1 - followed
        u = _uniforms(np.array(keys, dtype=np.uint64), 18)
        noise = _normals(u[:, 10:18])
        layers = self._layers[frame, objects]
        visible = self._visible[frame, objects]
        hidden = self._hidden[frame, objects]
        vis_f, vis_o = visible[rows, followed], visible[rows, other]
        hid_f = hidden[rows, followed]
        match = np.where(np.stack([followed, other], axis=1) == OBJECT, 1.0, self.lookalike_match)

        followed_mask = layers[rows, followed]
        first = _jitter(followed_mask, u[:, 0:3])
        other_in_view = vis_o > 0.05
        away = np.where(u[:, 6] < 0.5, -1, 1) * (6 + np.floor(u[:, 7] * 4)).astype(np.int64)
        vertical = u[:, 8] < 0.5
        shifted = _shift(followed_mask, np.where(vertical, away, 0), np.where(vertical, 0, away))
        other_mask = _jitter(layers[rows, other], u[:, 3:6])
        second = np.where(other_in_view[:, None, None], other_mask, shifted)
        third = _half(first, u[:, 9] * 2 * np.pi)

        logit = 8.0 * (vis_f - 0.3) * (1.0 - 0.8 * hid_f) + 0.8 * hid_f * vis_o
        logit = logit + (0.5 + 1.5 * hid_f) * noise[:, 0]
        seen_f = 0.4 + 0.55 * vis_f
        iou_first = match[:, 0] * seen_f + (0.03 + 0.08 * hid_f) * noise[:, 1]
        iou_other = match[:, 1] * (0.4 + 0.55 * vis_o) * (0.72 + 0.26 * (1.0 - vis_f))
        iou_second = np.where(other_in_view, iou_other, 0.6 * iou_first) + 0.04 * noise[:, 2]
        iou_third = 0.45 * iou_first + 0.05 * noise[:, 3]
        iou = np.stack([iou_first, iou_second, iou_third], axis=1)

        absent = logit <= 0
        absent_iou = 0.55 + 0.35 * (1.0 - vis_f) + 0.04 * noise[:, 1]
        absent_ramp = absent_iou[absent, None] * np.array([1.0, 0.8, 0.6])
        iou[absent] = absent_ramp + 0.02 * noise[absent, 2:3]
        masks = np.stack([first, second, third], axis=1)
        return masks, np.clip(iou, 0.0, 1.0), logit
