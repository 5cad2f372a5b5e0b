"""The visible part of one object's pathway tree, as arrays (what exports and figures draw).

`select_tree` does the work once, with numpy, so a 10,000-frame tree is selected in well under
a second; `treemem.viz.tree_export` turns the result into a networkx DiGraph and
`treemem.viz.tree_figure` into a matplotlib Figure.

Uncertain frames are the ones the tree record says uncertainty diversity chose the survivors
of (rule "diversity"), not re-derived from the occlusion logits with some threshold: a greedy
run has none, and a tree.jsonl written before treemem recorded the rule has none either.

Collapsing: object `obj`'s tracked frame f is *straight* when its kept nodes fill the same
slots as at frame f - 1 and every kept node continues its own slot (`parent == slot`): no
pathway split, died or changed rank. A prompt frame is never straight. In a maximal run of
consecutive straight frames a..b, the nodes strictly between frame a - 1 and frame b (and
their pruned candidates) are hidden and each slot's chain becomes one edge from its node at
a - 1 to its node at b, labelled "frames a-1 to b". Runs of one straight frame hide nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from treemem.tree import StrArray, TreeRecord
from treemem.types import BoolArray, FloatArray, InputError, IntArray

COLLAPSED_WIDTH = 2.0
"""Columns a collapsed run takes on the x axis (an ordinary frame step takes one)."""


@dataclass(frozen=True)
class TreeView:
    """The visible part of one object's tree, as arrays over its n visible rows.

    node: (n,) row ids in the TreeRecord (the node ids of the engine and of `tree_graph`);
    frame, slot (-1 for pruned), parent_slot (the record's `parent`), candidate (-1 for a
    prompt), score, iou, occlusion, kept, best (on the final pathway), prompt, rule (which
    rule chose the row's frame, "" where not recorded): (n,) columns.
    parent_node: (n,) row id of the node drawn as this row's parent, -1 for none (a root, or
    a parent outside the frame window); hidden: (n,) frames elided on the edge into the row
    (0 unless collapsed). frames: every frame of the object in the window, hidden ones
    included; visible_frames: those with a drawn node; uncertain_frames: frames of the window
    whose survivors uncertainty diversity chose (rule "diversity"), hidden ones included.
    """

    obj: int
    node: IntArray
    frame: IntArray
    slot: IntArray
    parent_slot: IntArray
    candidate: IntArray
    score: FloatArray
    iou: FloatArray
    occlusion: FloatArray
    kept: BoolArray
    best: BoolArray
    prompt: BoolArray
    rule: StrArray
    parent_node: IntArray
    hidden: IntArray
    frames: IntArray
    visible_frames: IntArray
    uncertain_frames: IntArray
    collapsed: bool

    def __len__(self) -> int:
        return int(self.node.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.slot.max()) + 1 if len(self) else 0

    def x_of(self, frames: npt.ArrayLike) -> FloatArray:
        """x coordinate of frames: the frame itself, or its column when collapsed (hidden
        frames fall evenly inside their run's gap)."""
        query = np.asarray(frames, dtype=np.float64)
        if not self.collapsed:
            return query
        visible = self.visible_frames.astype(np.float64)
        return np.interp(query, visible, self.visible_columns())

    def visible_columns(self) -> FloatArray:
        """(len(visible_frames),) x of each visible frame when collapsed: one column per
        frame step, COLLAPSED_WIDTH for a step over hidden frames."""
        steps = np.diff(self.visible_frames)
        widths = np.where(steps > 1, COLLAPSED_WIDTH, 1.0)
        return np.concatenate([[0.0], np.cumsum(widths)])


def objects(record: TreeRecord) -> list[int]:
    """The object ids that have rows in `record`, ascending."""
    return sorted(int(o) for o in np.unique(record.columns().object))


def _resolve_object(record: TreeRecord, obj: int | None) -> int:
    present = objects(record)
    if not present:
        raise InputError("the tree record is empty: nothing to draw")
    if obj is None:
        return present[0]
    if obj not in present:
        raise InputError(f"object {obj} is not in the tree (objects: {present})")
    return obj


def select_tree(
    record: TreeRecord,
    obj: int | None = None,
    frames: tuple[int, int] | None = None,
    collapse: bool = False,
) -> TreeView:
    """Object `obj`'s rows in the inclusive frame window `frames`, optionally collapsed.

    `obj` None means the smallest object id. See the module docstring for collapsing and
    for uncertain frames (none for a record without recorded rules).
    """
    obj = _resolve_object(record, obj)
    cols = record.columns()
    parent_rows = record.parent_rows()
    selected = cols.object == obj
    if frames is not None:
        first, last = frames
        if first > last:
            raise InputError(f"frame window {first}:{last} is empty (start after end)")
        selected &= (cols.frame >= first) & (cols.frame <= last)
    rows = np.flatnonzero(selected)
    if rows.size == 0:
        raise InputError(f"object {obj} has no tree rows in frames {frames[0]}:{frames[1]}"
                         if frames is not None else f"object {obj} has no tree rows")
    frame = cols.frame[rows]
    kept = cols.kept[rows]
    slot = cols.slot[rows]
    parent_slot = cols.parent[rows]
    candidate = cols.candidate[rows]
    prompt = candidate < 0
    rule = cols.rule[rows]
    parent_node = np.where(np.isin(parent_rows[rows], rows), parent_rows[rows], -1)
    best_nodes = np.fromiter(record.best_path(obj).values(), dtype=np.int64)
    best = np.isin(rows, best_nodes)

    all_frames = np.unique(frame)
    uncertain = np.unique(frame[rule == "diversity"]).astype(np.int64)

    hidden = np.zeros(rows.size, dtype=np.int64)
    visible = np.ones(rows.size, dtype=bool)
    if collapse:
        visible, parent_node, hidden = _collapse(
            rows, frame, slot, parent_slot, kept, prompt, parent_node
        )
    keep = np.flatnonzero(visible)
    return TreeView(
        obj=obj,
        node=rows[keep],
        frame=frame[keep],
        slot=slot[keep],
        parent_slot=parent_slot[keep],
        candidate=candidate[keep],
        score=cols.score[rows][keep],
        iou=cols.iou[rows][keep],
        occlusion=cols.occlusion[rows][keep],
        kept=kept[keep],
        best=best[keep],
        prompt=prompt[keep],
        rule=rule[keep],
        parent_node=parent_node[keep],
        hidden=hidden[keep],
        frames=all_frames,
        visible_frames=np.unique(frame[keep]),
        uncertain_frames=uncertain,
        collapsed=collapse,
    )


def _collapse(
    rows: IntArray,
    frame: IntArray,
    slot: IntArray,
    parent_slot: IntArray,
    kept: BoolArray,
    prompt: BoolArray,
    parent_node: IntArray,
) -> tuple[BoolArray, IntArray, IntArray]:
    """Which rows stay visible, the re-pointed parents and the hidden-frame counts."""
    kept_idx = np.flatnonzero(kept)
    frames, inverse = np.unique(frame[kept_idx], return_inverse=True)
    count = np.bincount(inverse, minlength=frames.size)
    moved = (parent_slot[kept_idx] != slot[kept_idx]) | prompt[kept_idx]
    straight = np.bincount(inverse, weights=moved.astype(np.float64), minlength=frames.size) == 0
    straight[0] = False
    straight[1:] &= (np.diff(frames) == 1) & (count[1:] == count[:-1])
    hidden_frame = np.zeros(frames.size, dtype=bool)
    hidden_frame[:-1] = straight[:-1] & straight[1:]
    if not hidden_frame.any():
        return np.ones(rows.size, dtype=bool), parent_node, np.zeros(rows.size, dtype=np.int64)

    # (frame index, slot) -> row id of the kept node there
    table = np.full((frames.size, int(slot[kept_idx].max()) + 1), -1, dtype=np.int64)
    table[inverse, slot[kept_idx]] = rows[kept_idx]
    frame_index = np.searchsorted(frames, frame)
    row_hidden = hidden_frame[np.minimum(frame_index, frames.size - 1)] & np.isin(frame, frames)
    # a pruned row whose parent is hidden is an alternative inside the run: hide it too
    parent_hidden = np.isin(parent_node, rows[kept_idx][hidden_frame[inverse]])
    visible = ~row_hidden & ~(parent_hidden & ~kept)

    # the first kept node after a hidden streak points back to the streak's anchor
    last_shown = np.maximum.accumulate(np.where(hidden_frame, -1, np.arange(frames.size)))
    ends = np.flatnonzero(~hidden_frame[1:] & hidden_frame[:-1]) + 1
    new_parent = parent_node.copy()
    hidden = np.zeros(rows.size, dtype=np.int64)
    for end in ends.tolist():
        anchor = int(last_shown[end - 1])
        members = kept_idx[inverse == end]
        new_parent[members] = table[anchor, slot[members]]
        hidden[members] = end - anchor - 1
    return visible, new_parent, hidden
