"""DAM4SAM's distractor-aware memory (Videnovic et al., CVPR 2025) as treemem strategies.

Two pieces, both per pathway (so per object, per re-prompt and per branch of a tree):

- `DistractorGate`, a `Promotion`: the distractor-resolving memory (DRM) rule. A kept mask
  is promoted to conditioning memory when its predicted IoU is high, its area is stable
  (against the median of recent areas), the last promotion is more than `spacing` frames
  back, and another candidate of its row reaches outside it far enough to change its box
  (a look-alike next to the object). State: the area history and the last promoted frame.
- `DistractorAwareFrames`, a `MemorySelection`: the prompt and the newest promoted frames as
  conditioning memory (never the previous frame), then the recent-appearance memory (RAM):
  the previous frame and a stride-`stride` chain of older visible frames, by rank; object
  pointers from the conditioning frames and the last `pointer_frames` visible frames,
  normalised by the frames seen so far.

The method is stated in ../shared/docs/dam4sam-spec.md (written from the reference's code,
which has no licence; nothing here is taken from it); names below follow that page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from treemem.strategy import RecalledMemory
from treemem.types import (
    Float32Array,
    MaskStats,
    MemoryEntry,
    MemoryHistory,
    PromptResult,
    frame_step,
)

Gate = Literal["added", "iou", "size", "empty", "spacing", "no alternative", "box"]
"""Why a kept candidate was or was not promoted, in the order the rule tests it."""


def box_iou(chosen: Float32Array, united: Float32Array) -> float:
    """IoU of a kept mask's box with the box of the mask united with an outside component,
    as VOT rasterises rectangles (x, y, w, h) with w = x2 - x1, h = y2 - y1 (no +1).

    The united box contains the kept one, so the IoU is the ratio of their w * h; a united
    box with w <= 1 or h <= 1 counts as IoU 1 (VOT's degenerate case). Boxes are x1, y1,
    x2, y2 with the max inclusive; float64."""
    width, height = float(chosen[2] - chosen[0]), float(chosen[3] - chosen[1])
    united_width, united_height = float(united[2] - united[0]), float(united[3] - united[1])
    if united_width <= 1 or united_height <= 1:
        return 1.0
    return (width * height) / (united_width * united_height)


@dataclass(frozen=True)
class DistractorState:
    """One pathway's DRM bookkeeping: `sizes`, the kept masks' video-resolution areas of the
    last `size_history` tracked frames, zeros included (oldest first), and `last_added`, the
    frame last promoted (-1 for none since the prompt)."""

    sizes: tuple[int, ...] = ()
    last_added: int = -1


@dataclass(frozen=True)
class DistractorDecision:
    """The rule's verdict on one candidate: `gate` (see `Gate`), the size ratio (-1 when
    there is none) and the box IoUs of the alternatives that reach outside (index order)."""

    gate: Gate
    size_ratio: float
    box_ious: tuple[float, ...] = ()

    @property
    def promote(self) -> bool:
        return self.gate == "added"


@dataclass(frozen=True)
class DistractorStep:
    """`DistractorGate.step`'s answer for one parent row (a `PromotionStep`)."""

    gate: DistractorGate
    state: DistractorState
    frame: int
    iou: Float32Array
    stats: MaskStats

    def sizes(self, candidate: int) -> tuple[int, ...]:
        area = int(self.stats.area[0, candidate])
        return (*self.state.sizes, area)[-self.gate.size_history :]

    def decision(self, candidate: int) -> DistractorDecision:
        """The DRM rule for kept candidate `candidate` (spec, step 5)."""
        rule, stats = self.gate, self.stats
        sizes = self.sizes(candidate)
        area = sizes[-1]
        ratio = -1.0
        if len(sizes) > 1 and area > 0:
            recent = [s for s in sizes if s >= 1][-rule.size_window :]
            ratio = area / float(np.median(recent))
        # The IoU is a float32; the reference compares it with the threshold in double.
        if not float(self.iou[candidate]) > rule.iou_threshold:
            return DistractorDecision("iou", ratio)
        if not rule.size_low <= ratio <= rule.size_high:
            return DistractorDecision("size", ratio)
        if area < 1:
            return DistractorDecision("empty", ratio)
        last = self.state.last_added
        if last != -1 and not self.frame - last > rule.spacing:
            return DistractorDecision("spacing", ratio)
        ious = tuple(
            box_iou(stats.boxes[0, candidate], stats.outside_union_boxes[0, candidate, other])
            for other in range(stats.area.shape[1])
            if other != candidate and stats.outside_area[0, candidate, other] > 0
        )
        if not ious:
            return DistractorDecision("no alternative", ratio)
        if not min(ious) <= rule.box_iou_threshold:
            return DistractorDecision("box", ratio, ious)
        return DistractorDecision("added", ratio, ious)

    def promote(self, candidate: int) -> bool:
        return self.decision(candidate).promote

    def child(self, candidate: int) -> DistractorState:
        added = self.frame if self.promote(candidate) else self.state.last_added
        return DistractorState(self.sizes(candidate), added)


@dataclass(frozen=True)
class DistractorGate:
    """DAM4SAM's promotion rule (the DRM update), per pathway.

    A kept candidate is promoted iff its predicted IoU > `iou_threshold`, its area over the
    median of the last `size_window` non-zero areas among the last `size_history` frames
    (this one included; none on the first tracked frame) is in [`size_low`, `size_high`],
    it is non-empty, no promotion happened in the last `spacing` frames, and some other
    candidate of its row has a part outside it whose largest component, united with it,
    gives a box IoU (`box_iou`) <= `box_iou_threshold`.
    """

    iou_threshold: float = 0.8
    size_low: float = 0.8
    size_high: float = 1.2
    size_history: int = 300
    size_window: int = 10
    spacing: int = 5
    box_iou_threshold: float = 0.7

    def start(self, prompt: PromptResult) -> DistractorState:
        """A (re-)prompt starts the DRM afresh: no sizes, nothing promoted."""
        return DistractorState()

    def step(
        self, state: object, frame: int, iou: Float32Array, occlusion: float, stats: MaskStats
    ) -> DistractorStep:
        assert isinstance(state, DistractorState)
        return DistractorStep(self, state, frame, iou, stats)


@dataclass(frozen=True)
class DistractorAwareFrames:
    """DAM4SAM's memory selection: the DRM as conditioning memory, RAM by rank, pointers.

    At tracking frame t (prompts: the object's prompt frames before t; promoted: its
    promoted frames, `MemoryEntry.promoted`):

    - conditioning (spatial position 0), in this order: the newest prompt or promoted frame
      before t - 1; the prompts not yet in; the other promoted frames except t - 1, nearest
      first, while fewer than `max_conditioning` are selected. Never t - 1.
    - RAM: `memory_slots` minus the selected count. Slot 0 is t - 1 if it is visible
      (promoted or not), else the newest visible unpromoted frame below it; each further
      slot is the largest multiple of `stride` below the previous slot's frame, stepping
      down by `stride` until a visible unpromoted frame is found. Read oldest first at rank
      positions (newest 1).
    - pointers: the selected frames (position t - f), then t - 1 .. t - `pointer_frames`,
      each visible tracked frame not selected (unselected promoted frames too), by gap.
    - pointer positions are normalised by the frames seen since the latest prompt
      (`RecalledMemory.pointer_span`), not the video's length.

    "Before", "below" and gaps are in tracking order (`MemoryEntry.elapsed`): tracking
    backward, t - 1 is frame t + 1 and the stride chain runs over frame positions -f, whose
    multiples of `stride` are the same frames. A re-prompt restarts it as at a first prompt
    (promoted and recent frames dropped).
    """

    max_conditioning: int = 4
    memory_slots: int = 7
    stride: int = 5
    pointer_frames: int = 15

    def conditioning(self, history: MemoryHistory, frame: int) -> list[MemoryEntry]:
        """The frames read as conditioning memory at `frame`, in their attention order."""
        prompts = sorted(
            (e for e in history.conditioning if e.elapsed(frame) > 0),
            key=lambda e: -e.elapsed(frame),
        )
        promoted = [e for e in history.recent if e.promoted and e.elapsed(frame) > 0]
        older = [e for e in (*prompts, *promoted) if e.elapsed(frame) > 1]
        selected = [min(older, key=lambda e: e.elapsed(frame))] if older else []
        selected += [e for e in prompts if e not in selected]
        rest = sorted(
            (e for e in promoted if e.elapsed(frame) != 1 and e not in selected),
            key=lambda e: e.elapsed(frame),
        )
        for entry in rest:
            if len(selected) >= self.max_conditioning:
                break
            selected.append(entry)
        return selected

    def recent_appearance(
        self, history: MemoryHistory, frame: int, slots: int
    ) -> list[MemoryEntry]:
        """RAM at `frame`, newest first (at most `slots` entries).

        Walks frame positions (`frame * step`, step -1 backward) down from t - 1, never to
        or past the latest prompt's position."""
        if slots <= 0:
            return []
        step = frame_step(history.direction)
        tracked = {e.frame * step: e for e in history.recent if e.elapsed(frame) > 0}
        prompts = [e.frame * step for e in history.conditioning if e.elapsed(frame) > 0]
        floor = max(prompts, default=min(tracked, default=frame * step) - 1)

        def unpromoted(position: int) -> MemoryEntry | None:
            entry = tracked.get(position)
            return entry if entry is not None and entry.visible and not entry.promoted else None

        found: list[MemoryEntry] = []
        p = frame * step - 1
        previous = tracked.get(p)
        entry = previous if previous is not None and previous.visible else None
        while entry is None and p > floor:
            p -= 1
            entry = unpromoted(p)
        if entry is not None:
            found.append(entry)
        for _ in range(1, slots):
            if p < floor:
                break
            p = ((p - 1) // self.stride) * self.stride
            entry = unpromoted(p)
            while entry is None and p > floor:
                p -= self.stride
                entry = unpromoted(p)
            if entry is not None:
                found.append(entry)
        return found

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory:
        """Keep what a later recall can read: the last `pointer_frames` frames, the newest
        `max_conditioning` + 1 promoted ones (the next frame may skip the newest, as t - 1),
        the two newest visible unpromoted ones (RAM slot 0 walks down to one) and the newest
        `memory_slots` visible unpromoted multiples of `stride` (the chain stops only at
        those)."""
        entries = (*history.recent, entry)
        promoted = [e for e in entries if e.promoted][-(self.max_conditioning + 1) :]
        plain = [e for e in entries if e.visible and not e.promoted]
        chain = [e for e in plain if e.frame % self.stride == 0][-self.memory_slots :]
        needed = {e.node for e in (*promoted, *plain[-2:], *chain)}
        kept = tuple(
            e for e in entries if e.elapsed(entry.frame) < self.pointer_frames or e.node in needed
        )
        return MemoryHistory(history.conditioning, kept)

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory:
        selected = self.conditioning(history, frame)
        slots = max(self.memory_slots - len(selected), 0)
        ram = self.recent_appearance(history, frame, slots)
        spatial = [(e, 0) for e in selected]
        spatial += [(e, rank) for rank, e in reversed(list(enumerate(ram, start=1)))]
        chosen = {e.node for e in selected}
        pointers = [(e, e.elapsed(frame)) for e in selected]
        by_gap = {e.elapsed(frame): e for e in history.recent}
        for gap in range(1, self.pointer_frames + 1):
            entry = by_gap.get(gap)
            if entry is not None and entry.visible and entry.node not in chosen:
                pointers.append((entry, gap))
        seen = [e.elapsed(frame) for e in history.conditioning if e.elapsed(frame) > 0]
        span = min(seen) + 1 if seen else None
        return RecalledMemory(tuple(spatial), tuple(pointers), span)

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        """A re-prompt restarts DAM4SAM as at a first prompt: its DRM and RAM are dropped
        (the prompts stay; promoted frames are not prompts)."""
        return MemoryHistory(history.conditioning)
