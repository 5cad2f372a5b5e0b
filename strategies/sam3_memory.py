"""SAM 3's tracker memory selection: past frames filtered by a per-frame score, read by rank.

Written from the description in SAM 3's tracker (`frame_filter`, `cal_mem_score`; the rule its
comments call "frame filtering according to SAM2Long"), not from its code.

At tracking frame t the rule builds one list of frames, oldest first:

- scan i = t-1, t-1-r, t-1-2r, ... down to frame 1 (frame 0 is never scanned), skipping frames
  without a tracked entry; put i at the front of the list iff its score is > `mf_threshold`;
  stop once the list holds `max_pointers - 1` frames;
- append t-1 at the end if the scan did not take it, whatever its score.

Spatial memory reads the list's last `spatial_frames` entries at their rank (newest 1, which
SAM 2 encodes as t_pos 6); pointers read ranks 1 .. len(list) - 1, so the list's oldest entry
never gives a pointer (SAM 3's off-by-one, reproduced). Prompt frames are read as in SAM 2.

Tracking backward (SAM 3's `track_in_reverse`) the scan mirrors: i = t+1, t+1+r, ... up to
the video's last frame, and t+1 is the frame appended. The mirror is not exact at the ends:
forward the scan never reaches frame 0, backward it does reach the last frame, so only the
forward direction skips an end frame. Order is read through `MemoryEntry.elapsed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from treemem.strategies.memory import _conditioning
from treemem.strategy import RecalledMemory
from treemem.types import MemoryEntry, MemoryHistory, frame_step


def frame_score(entry: MemoryEntry) -> float:
    """SAM 3's memory score of a tracked frame: n(o) * IoU, n(o) = 2 sigmoid(o) - 1 for o > 0,
    else 0 (o the occlusion logit, IoU the kept candidate's predicted IoU); in float64."""
    if not entry.occlusion > 0:
        return 0.0
    return (2.0 / (1.0 + math.exp(-entry.occlusion)) - 1.0) * entry.iou


@dataclass(frozen=True)
class ScoredFrames:
    """SAM 3's memory selection (`use_memory_selection`): score-filtered frames, rank positions.

    `mf_threshold`: a frame is eligible iff its `frame_score` is strictly above it;
    `stride`: the backward scan's step r; `max_pointers`: SAM 2's `max_obj_ptrs_in_encoder`,
    the list holds at most `max_pointers - 1` scanned frames plus t-1; `spatial_frames`:
    tracked spatial slots (`num_maskmem - 1`).

    The code caps the list at `min(num_frames, max_obj_ptrs_in_encoder) - 1` scanned frames.
    Tracking forward, frame t scans at most t - 1 <= num_frames - 2 frames, and backward at
    most num_frames - 1 - t <= num_frames - 1 (all there are), so the video-length term never
    changes the list and the rule needs no video length.
    """

    mf_threshold: float = 0.01
    stride: int = 1
    max_pointers: int = 16
    spatial_frames: int = 6

    def is_eligible(self, entry: MemoryEntry) -> bool:
        return frame_score(entry) > self.mf_threshold

    @staticmethod
    def scannable(entry: MemoryEntry) -> bool:
        """Whether any scan can reach `entry`: every frame but frame 0 of a forward search."""
        return entry.direction == "backward" or entry.frame >= 1

    def selected_frames(self, history: MemoryHistory, frame: int) -> list[int]:
        """The rule's list of frames for tracking frame `frame`, oldest first.

        The last frame (t-1, or t+1 backward) may have no tracked entry (a prompt frame); it
        still takes a rank. Only frames with a tracked entry in `history.recent` are scanned;
        walking those instead of every frame index gives the same list."""
        direction = history.direction
        if direction == "forward" and frame <= 0:
            return []
        last = frame - frame_step(direction)
        scanned: list[int] = []
        for entry in reversed(history.recent):
            if len(scanned) >= self.max_pointers - 1:
                break
            gap = entry.elapsed(frame) - 1
            on_scan = self.scannable(entry) and gap >= 0 and gap % self.stride == 0
            if on_scan and self.is_eligible(entry):
                scanned.append(entry.frame)
        scanned.reverse()
        if last not in scanned:
            scanned.append(last)
        return scanned

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory:
        """Keep `entry` (the next frame's t-1) and, for each residue of the frame index modulo
        the stride, the newest `max_pointers - 1` eligible entries: every scan a later frame
        makes walks one residue class, and newer frames only make it stop sooner."""
        cap = self.max_pointers - 1
        per_class: dict[int, int] = {}
        kept: list[MemoryEntry] = []
        for candidate in (entry, *reversed(history.recent)):
            if not self.scannable(candidate) or not self.is_eligible(candidate):
                continue
            residue = candidate.frame % self.stride
            if per_class.get(residue, 0) < cap:
                per_class[residue] = per_class.get(residue, 0) + 1
                kept.append(candidate)
        if entry not in kept:
            kept.append(entry)
        step = frame_step(entry.direction)
        kept.sort(key=lambda e: e.frame * step)  # oldest first in tracking order
        return MemoryHistory(history.conditioning, tuple(kept))

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory:
        cond_spatial, cond_pointers = _conditioning(history, frame)
        listed = self.selected_frames(history, frame)
        tracked = {e.frame: e for e in history.recent if e.elapsed(frame) > 0}
        ranked = [(tracked.get(f), rank) for rank, f in enumerate(reversed(listed), start=1)]
        spatial = tuple(
            (e, rank) for e, rank in reversed(ranked[: self.spatial_frames]) if e is not None
        )
        pointers = tuple((e, rank) for e, rank in ranked[: len(listed) - 1] if e is not None)
        return RecalledMemory(cond_spatial + spatial, cond_pointers + pointers)

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        """SAM 3's tracker, as SAM 2's, keeps reading the frames tracked before a new prompt."""
        return history
