"""Memory frame selection: which ancestors feed spatial memory and object pointers.

Temporal order is read through `MemoryEntry.elapsed` (signed frames in tracking order), so
every rule here works forward and backward: tracking backward, "the previous frame" is
frame t + 1 and distances count towards the frames already tracked, as in sam2's
`track_in_reverse`.
"""

from __future__ import annotations

from dataclasses import dataclass

from treemem.strategy import RecalledMemory
from treemem.types import MemoryEntry, MemoryHistory


def _conditioning(
    history: MemoryHistory, frame: int
) -> tuple[tuple[tuple[MemoryEntry, int], ...], tuple[tuple[MemoryEntry, int], ...]]:
    """SAM 2's use of prompt frames: every one in spatial memory (position 0), and as
    pointers only those on the side already tracked (or on `frame` itself), at their signed
    frame distance."""
    spatial = tuple((entry, 0) for entry in history.conditioning)
    pointers = tuple(
        (entry, entry.elapsed(frame)) for entry in history.conditioning
        if entry.elapsed(frame) >= 0
    )
    return spatial, pointers


def _recent_pointers(
    history: MemoryHistory, frame: int, pointer_frames: int
) -> tuple[tuple[MemoryEntry, int], ...]:
    """SAM 2's object pointers: the tracked frames at most `pointer_frames` back in tracking
    order, newest first, at their frame distance."""
    return tuple(
        (e, e.elapsed(frame))
        for e in reversed(history.recent)
        if 1 <= e.elapsed(frame) <= pointer_frames
    )


@dataclass(frozen=True)
class RecentFrames:
    """Plain SAM 2: the `spatial_frames` most recent frames and `pointer_frames` most recent
    pointers by frame gap, positioned by frame gap."""

    spatial_frames: int = 6
    pointer_frames: int = 15

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory:
        horizon = max(self.spatial_frames, self.pointer_frames)
        kept = tuple(e for e in history.recent if e.elapsed(entry.frame) < horizon)
        return MemoryHistory(history.conditioning, (*kept, entry))

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory:
        cond_spatial, cond_pointers = _conditioning(history, frame)
        spatial = tuple(
            (e, e.elapsed(frame))
            for e in history.recent
            if 1 <= e.elapsed(frame) <= self.spatial_frames
        )
        pointers = _recent_pointers(history, frame, self.pointer_frames)
        return RecalledMemory(cond_spatial + spatial, cond_pointers + pointers)

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        """SAM 2 keeps reading the frames tracked before a new prompt."""
        return history


@dataclass(frozen=True)
class ObjectAwareFrames:
    """SAM2Long's object-aware selection with rank positions.

    A past frame is valid iff its kept IoU > `delta_iou` and its stored occlusion logit > 0.
    L = the `valid_frames` newest valid frames, plus the previous frame even if invalid.
    Spatial: the last `spatial_frames` of L at rank positions (newest 1); pointers: L newest
    first at ranks 1..n with n = min(`pointer_frames`, |L| - 1), so L's oldest gives none.
    """

    delta_iou: float = 0.1
    spatial_frames: int = 6
    pointer_frames: int = 15
    valid_frames: int = 15

    def is_valid(self, entry: MemoryEntry) -> bool:
        return entry.iou > self.delta_iou and entry.occlusion > 0

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory:
        valid = [e for e in history.recent if self.is_valid(e)]
        if self.is_valid(entry):
            valid.append(entry)
            kept = valid[-self.valid_frames :]
        else:
            kept = [*valid[-self.valid_frames:], entry]
        return MemoryHistory(history.conditioning, tuple(kept))

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory:
        cond_spatial, cond_pointers = _conditioning(history, frame)
        recent = history.recent
        newest_spatial = recent[-self.spatial_frames :] if recent else ()
        count = len(newest_spatial)
        spatial = tuple((e, count - i) for i, e in enumerate(newest_spatial))
        n_pointers = min(self.pointer_frames, len(recent) - 1)
        pointers = tuple((recent[-rank], rank) for rank in range(1, n_pointers + 1))
        return RecalledMemory(cond_spatial + spatial, cond_pointers + pointers)

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        """A prompt restarts the tree: only frames after it are selected, as at a first prompt."""
        return MemoryHistory(history.conditioning)
