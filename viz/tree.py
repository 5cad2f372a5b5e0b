"""The pathway tree of one object as a graph and as a figure for a paper.

Time runs left to right and each pathway slot has its own row (slot 0, the best, on top).
Kept nodes are drawn solid, pruned candidates as faint dots hanging below their parent's
row, the final pathway (`TreeRecord.best_path`) in vermillion, and node colour is the
predicted IoU or the occlusion logit. Frames where every pathway was unsure whether the
object is there (SAM2Long's uncertainty rule) get a light blue band.

`select_tree` does the work once, with numpy, so a 10,000-frame tree draws in seconds:
`tree_graph` turns its result into a networkx DiGraph (for GraphML / JSON export or a
paper script's own analysis) and `draw_tree` into a matplotlib Figure drawn with a few
collections, never one artist per node.

Collapsing: object `obj`'s tracked frame f is *straight* when its kept nodes fill the same
slots as at frame f - 1 and every kept node continues its own slot (`parent == slot`): no
pathway split, died or changed rank. A prompt frame is never straight. In a maximal run of
consecutive straight frames a..b, the nodes strictly between frame a - 1 and frame b (and
their pruned candidates) are hidden and each slot's chain becomes one edge from its node at
a - 1 to its node at b, labelled "frames a-1 to b". Runs of one straight frame hide nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from treemem.tree import TreeRecord
from treemem.types import BoolArray, FloatArray, InputError, IntArray

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ColorBy = Literal["iou", "occlusion"]

DELTA_CONF = 2.0
"""SAM2Long's default: a frame is uncertain when no pathway's |occlusion logit| exceeds it."""

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
BEST_PATH_COLOR = OKABE_ITO["vermillion"]
UNCERTAIN_COLOR = OKABE_ITO["sky_blue"]
KEPT_EDGE_COLOR = "#4D4D4D"
PRUNED_COLOR = "#9A9A9A"
COLORMAPS: dict[str, str] = {"iou": "viridis", "occlusion": "cividis"}

COLLAPSED_WIDTH = 2.0
"""Columns a collapsed run takes on the x axis (an ordinary frame step takes one)."""

MAX_RUN_LABELS = 40
"""More collapsed runs than this: only the longest ones get a "frames a-b" label."""

PRUNED_COLUMNS = 200
"""Visible frames up to which `draw_tree` draws pruned candidates by default."""

RASTERIZE_ABOVE = 20_000
"""Collections with more elements are rasterized inside vector output (PDF/SVG size)."""

BASE_STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.linewidth": 0.6,
    "axes.titlesize": 9,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.fontsize": 7,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}
SERIF_STYLE: dict[str, Any] = {
    "font.family": "serif",
    "font.serif": ["Times New Roman", "Times", "Nimbus Roman", "DejaVu Serif"],
    "mathtext.fontset": "dejavuserif",
}


@dataclass(frozen=True)
class TreeView:
    """The visible part of one object's tree, as arrays over its n visible rows.

    node: (n,) row ids in the TreeRecord (the node ids of the engine and of `tree_graph`);
    frame, slot (-1 for pruned), parent_slot (the record's `parent`), candidate (-1 for a
    prompt), score, iou, occlusion, kept, best (on the final pathway), prompt: (n,) columns.
    parent_node: (n,) row id of the node drawn as this row's parent, -1 for none (a root, or
    a parent outside the frame window); hidden: (n,) frames elided on the edge into the row
    (0 unless collapsed). frames: every frame of the object in the window, hidden ones
    included; visible_frames: those with a drawn node; uncertain_frames: frames where every
    proposing pathway had |occlusion logit| <= delta_conf.
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
    parent_node: IntArray
    hidden: IntArray
    frames: IntArray
    visible_frames: IntArray
    uncertain_frames: IntArray
    delta_conf: float
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
    delta_conf: float = DELTA_CONF,
) -> TreeView:
    """Object `obj`'s rows in the inclusive frame window `frames`, optionally collapsed.

    `obj` None means the smallest object id. See the module docstring for collapsing.
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
    occlusion = cols.occlusion[rows]
    parent_node = np.where(np.isin(parent_rows[rows], rows), parent_rows[rows], -1)
    best_nodes = np.fromiter(record.best_path(obj).values(), dtype=np.int64)
    best = np.isin(rows, best_nodes)

    all_frames = np.unique(frame)
    uncertain = _uncertain_frames(frame[~prompt], occlusion[~prompt], delta_conf)

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
        occlusion=occlusion[keep],
        kept=kept[keep],
        best=best[keep],
        prompt=prompt[keep],
        parent_node=parent_node[keep],
        hidden=hidden[keep],
        frames=all_frames,
        visible_frames=np.unique(frame[keep]),
        uncertain_frames=uncertain,
        delta_conf=float(delta_conf),
        collapsed=collapse,
    )


def _uncertain_frames(frame: IntArray, occlusion: FloatArray, delta_conf: float) -> IntArray:
    """Frames whose proposing pathways all have |occlusion logit| <= delta_conf.

    Each row stores its parent pathway's logit, so the rows of a frame cover every pathway
    that proposed there, kept or not: the same set the uncertainty rule looks at.
    """
    if frame.size == 0:
        return np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(frame, return_inverse=True)
    largest = np.full(unique.size, -np.inf)
    np.maximum.at(largest, inverse, np.abs(np.nan_to_num(occlusion, nan=0.0)))
    return unique[largest <= delta_conf].astype(np.int64)


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


# --- the graph ----------------------------------------------------------------------------------


def tree_graph(
    record: TreeRecord,
    obj: int | None = None,
    frames: tuple[int, int] | None = None,
    collapse: bool = False,
    delta_conf: float = DELTA_CONF,
) -> nx.DiGraph:
    """Object `obj`'s tree (window, collapsing as in `select_tree`) as a networkx DiGraph.

    Nodes are TreeRecord row ids with attributes frame, slot, parent, candidate, score, iou,
    occlusion, kept, best, prompt, uncertain; edges run parent -> child with attributes
    best, collapsed, first_frame, last_frame, hidden (frames elided) and label. Graph
    attributes: object, delta_conf, collapsed. All values are plain int/float/bool/str, so
    the graph writes to GraphML as is.
    """
    return view_graph(select_tree(record, obj, frames, collapse, delta_conf))


def view_graph(view: TreeView) -> nx.DiGraph:
    """The DiGraph of an already selected `TreeView` (see `tree_graph`)."""
    import networkx as nx

    graph = nx.DiGraph(object=view.obj, delta_conf=view.delta_conf, collapsed=view.collapsed)
    uncertain = np.isin(view.frame, view.uncertain_frames)
    columns: dict[str, list[Any]] = {
        "frame": view.frame.tolist(),
        "slot": view.slot.tolist(),
        "parent": view.parent_slot.tolist(),
        "candidate": view.candidate.tolist(),
        "score": view.score.tolist(),
        "iou": view.iou.tolist(),
        "occlusion": view.occlusion.tolist(),
        "kept": view.kept.tolist(),
        "best": view.best.tolist(),
        "prompt": view.prompt.tolist(),
        "uncertain": uncertain.tolist(),
    }
    nodes = view.node.tolist()
    graph.add_nodes_from(
        (node, {name: values[i] for name, values in columns.items()})
        for i, node in enumerate(nodes)
    )
    frame_of = dict(zip(nodes, columns["frame"], strict=True))
    best_of = dict(zip(nodes, columns["best"], strict=True))
    edges = []
    for i, (parent, hidden) in enumerate(zip(view.parent_node.tolist(), view.hidden.tolist(),
                                             strict=True)):
        if parent < 0:
            continue
        child = nodes[i]
        first, last = frame_of[parent], frame_of[child]
        edges.append((parent, child, {
            "best": bool(best_of[parent] and best_of[child]),
            "collapsed": hidden > 0,
            "first_frame": first,
            "last_frame": last,
            "hidden": hidden,
            "label": f"frames {first}-{last}" if hidden > 0 else "",
        }))
    graph.add_edges_from(edges)
    return graph


def export_graphml(graph: nx.DiGraph, path: str | Path) -> None:
    """Write `graph` as GraphML (readable by Gephi, yEd, igraph, networkx.read_graphml)."""
    import networkx as nx

    nx.write_graphml(graph, str(path))


def export_json(graph: nx.DiGraph, path: str | Path) -> None:
    """Write `graph` as networkx node-link JSON ("nodes" and "edges" lists).

    Non-finite floats (a candidate the engine rejected has IoU NaN) become null, so the
    file is strict JSON for any reader.
    """
    import networkx as nx

    data = nx.node_link_data(graph, edges="edges")
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(_finite(data), stream, allow_nan=False)
        stream.write("\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# --- the figure ---------------------------------------------------------------------------------


def figure_style(serif: bool = False) -> AbstractContextManager[None]:
    """The rc settings treemem's figures are drawn and saved under (TrueType fonts in PDF,
    text kept as text in SVG, small paper-sized type)."""
    import matplotlib as mpl

    style = dict(BASE_STYLE)
    if serif:
        style.update(SERIF_STYLE)
    settings: Any = style  # rc_context's stub wants literal keys
    context: AbstractContextManager[None] = mpl.rc_context(settings)
    return context


def save_figure(figure: Figure, path: str | Path, dpi: int = 200, serif: bool = False) -> None:
    """Save under `figure_style` (vector for .pdf/.svg, `dpi` for raster formats)."""
    with figure_style(serif):
        figure.savefig(str(path), dpi=dpi)


@dataclass(frozen=True)
class _Layout:
    """Inches of the figure's parts, so thumbnails can keep their aspect ratio."""

    width: float
    height: float
    left: float = 0.55
    right: float = 1.0
    bottom: float = 0.45
    legend: float = 0.32
    strip: float = 0.0
    gap: float = 0.08

    @property
    def axes_height(self) -> float:
        return self.height - self.bottom - self.legend - self.strip - self.gap * bool(self.strip)

    @property
    def axes_width(self) -> float:
        return self.width - self.left - self.right

    def rect(self, bottom: float, height: float) -> tuple[float, float, float, float]:
        return (self.left / self.width, bottom / self.height,
                self.axes_width / self.width, height / self.height)


def draw_tree(
    record: TreeRecord,
    obj: int | None = None,
    *,
    color_by: ColorBy = "iou",
    collapse: bool = False,
    frames: tuple[int, int] | None = None,
    thumbnails: Mapping[int, npt.NDArray[np.uint8]] | None = None,
    serif: bool = False,
    delta_conf: float = DELTA_CONF,
    show_pruned: bool | None = None,
    width: float = 7.0,
    title: str | None = None,
) -> Figure:
    """Draw object `obj`'s pathway tree; returns the Figure (not shown, no pyplot state).

    color_by: "iou" (predicted IoU, viridis, 0 to 1) or "occlusion" (occlusion logit,
    cividis, symmetric about 0, the colour bar marks +-delta_conf). thumbnails: frame ->
    (H, W, 3) uint8 image (e.g. `treemem.viz.overlay.mask_thumbnails`), drawn in a strip
    above the axis at their frames. show_pruned: None draws pruned candidates when at most
    PRUNED_COLUMNS frames are visible (beyond that they only fill the rows with grey). The
    axes carry labels "tree", "colorbar" and "thumbnails" for restyling; save with
    `save_figure` for the paper style at save time.
    """
    if color_by not in COLORMAPS:
        raise InputError(f"color_by must be one of {sorted(COLORMAPS)}, got {color_by!r}")
    view = select_tree(record, obj, frames, collapse, delta_conf)
    if show_pruned is None:
        show_pruned = len(view.visible_frames) <= PRUNED_COLUMNS
    with figure_style(serif):
        return _draw(view, color_by, thumbnails or {}, show_pruned, width, title)


def _draw(
    view: TreeView,
    color_by: ColorBy,
    thumbnails: Mapping[int, npt.NDArray[np.uint8]],
    show_pruned: bool,
    width: float,
    title: str | None,
) -> Figure:
    from matplotlib.figure import Figure

    slots = max(view.num_slots, 1)
    shown_thumbnails = {f: img for f, img in sorted(thumbnails.items())
                        if view.frames[0] <= f <= view.frames[-1]}
    strip = 0.85 if shown_thumbnails else 0.0
    layout = _Layout(width=width, height=0.95 + 0.42 * slots + strip + 0.3 * show_pruned,
                     strip=strip)
    figure = Figure(figsize=(layout.width, layout.height))
    ax = figure.add_axes(layout.rect(layout.bottom, layout.axes_height), label="tree")

    x = view.x_of(view.frame)
    y = _node_y(view)
    values = view.iou if color_by == "iou" else view.occlusion
    cmap, norm = _color_scale(color_by, view)
    columns = max(len(view.visible_frames), 1)
    marker = _marker_size(layout.axes_width * 72.0 / columns)

    _draw_uncertain(ax, view)
    _draw_edges(ax, view, x, y, show_pruned, marker)
    _draw_nodes(ax, view, x, y, values, cmap, norm, show_pruned, marker)
    if view.collapsed:
        span = float(np.ptp(view.x_of(view.visible_frames))) + 2.0
        _label_runs(ax, view, x, layout.axes_width * 72.0 / span)
    _style_axes(ax, view, slots, show_pruned)

    cbar_ax = figure.add_axes(
        ((layout.width - layout.right + 0.25) / layout.width, layout.bottom / layout.height,
         0.1 / layout.width, layout.axes_height / layout.height), label="colorbar")
    mappable = _mappable(cmap, norm)
    colorbar = figure.colorbar(mappable, cax=cbar_ax)
    colorbar.set_label("predicted IoU" if color_by == "iou" else "occlusion logit")
    colorbar.outline.set_linewidth(0.5)
    if color_by == "occlusion":
        for level in (-view.delta_conf, view.delta_conf):
            cbar_ax.axhline(level, color="white", linewidth=0.8, linestyle=(0, (2, 1)))

    if shown_thumbnails:
        strip_bottom = layout.bottom + layout.axes_height + layout.gap
        strip_ax = figure.add_axes(layout.rect(strip_bottom, layout.strip), label="thumbnails",
                                   sharex=ax)
        _draw_thumbnails(strip_ax, ax, view, shown_thumbnails, layout)
    _legend(figure, view, layout, show_pruned,
             title if title is not None else f"object {view.obj}")
    return figure


def _node_y(view: TreeView) -> FloatArray:
    """Kept nodes on their slot's row; pruned ones fanned out below their parent's row."""
    candidates = max(int(view.candidate.max()) + 1, 1)
    pruned_offset = 0.14 + 0.36 * np.clip(view.candidate, 0, None) / max(candidates - 1, 1)
    return np.where(view.kept, view.slot, view.parent_slot + pruned_offset).astype(np.float64)


def _marker_size(points_per_column: float) -> float:
    return float(np.clip((0.55 * points_per_column) ** 2, 0.5, 36.0))


def _color_scale(color_by: ColorBy, view: TreeView) -> tuple[Any, Any]:
    import matplotlib as mpl
    from matplotlib.colors import Normalize

    cmap = mpl.colormaps[COLORMAPS[color_by]].with_extremes(bad="#BBBBBB")
    if color_by == "iou":
        return cmap, Normalize(0.0, 1.0)
    finite = np.abs(view.occlusion[np.isfinite(view.occlusion)])
    limit = max(float(finite.max()) if finite.size else 0.0, 1.5 * view.delta_conf, 1.0)
    return cmap, Normalize(-limit, limit)


def _mappable(cmap: Any, norm: Any) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


def _segments(view: TreeView, x: FloatArray, y: FloatArray, which: BoolArray) -> Any:
    """(m, 2, 2) float line segments parent -> child for the rows selected by `which`
    (typed Any: LineCollection's stub wants a sequence, and an array is what it is fast on)."""
    index_of = {node: i for i, node in enumerate(view.node.tolist())}
    children = np.flatnonzero(which & (view.parent_node >= 0))
    parents = np.fromiter((index_of[n] for n in view.parent_node[children].tolist()),
                          dtype=np.int64, count=children.size)
    start = np.stack([x[parents], y[parents]], axis=1)
    end = np.stack([x[children], y[children]], axis=1)
    return np.stack([start, end], axis=1)


def _draw_edges(ax: Axes, view: TreeView, x: FloatArray, y: FloatArray, show_pruned: bool,
                marker: float) -> None:
    from matplotlib.collections import LineCollection

    line = float(np.clip(math.sqrt(marker) * 0.25, 0.3, 1.1))
    if show_pruned:
        pruned = _segments(view, x, y, ~view.kept)
        ax.add_collection(LineCollection(
            pruned, colors=PRUNED_COLOR, linewidths=0.4 * line, alpha=0.45, zorder=1,
            rasterized=len(pruned) > RASTERIZE_ABOVE))
    ordinary = view.kept & (view.hidden == 0)
    kept = _segments(view, x, y, ordinary)
    ax.add_collection(LineCollection(
        kept, colors=KEPT_EDGE_COLOR, linewidths=line, zorder=2, capstyle="round",
        rasterized=len(kept) > RASTERIZE_ABOVE))
    collapsed = _segments(view, x, y, view.kept & (view.hidden > 0))
    if len(collapsed):
        ax.add_collection(LineCollection(
            collapsed, colors=KEPT_EDGE_COLOR, linewidths=line, linestyles=(0, (1.0, 1.5)),
            zorder=2))
    best_width = float(np.clip(2.4 * line, 0.6, 3.2))
    for rows, style in (((view.hidden == 0), "solid"), ((view.hidden > 0), (0, (1.5, 1.0)))):
        best = _segments(view, x, y, view.best & rows)
        ax.add_collection(LineCollection(
            best, colors=BEST_PATH_COLOR, linewidths=best_width, linestyles=style, zorder=3,
            capstyle="round", joinstyle="round", rasterized=len(best) > RASTERIZE_ABOVE))


def _draw_nodes(ax: Axes, view: TreeView, x: FloatArray, y: FloatArray, values: FloatArray,
                cmap: Any, norm: Any, show_pruned: bool, marker: float) -> None:
    edge = max(math.sqrt(marker) * 0.12, 0.15)
    if show_pruned:
        pruned = ~view.kept
        ax.scatter(x[pruned], y[pruned], s=marker * 0.45, c=values[pruned], cmap=cmap,
                   norm=norm, alpha=0.5, linewidths=0, zorder=1,
                   rasterized=int(pruned.sum()) > RASTERIZE_ABOVE)
    for rows, edge_color, width, zorder in (
        (view.kept & ~view.best & ~view.prompt, KEPT_EDGE_COLOR, edge, 4),
        (view.best & ~view.prompt, BEST_PATH_COLOR, 2.2 * edge, 5),
    ):
        ax.scatter(x[rows], y[rows], s=marker, c=values[rows], cmap=cmap, norm=norm,
                   edgecolors=edge_color, linewidths=width, zorder=zorder,
                   rasterized=int(rows.sum()) > RASTERIZE_ABOVE)
    prompts = view.prompt
    if prompts.any():
        ax.scatter(x[prompts], y[prompts], s=max(marker * 1.6, 12.0), c=values[prompts],
                   cmap=cmap, norm=norm, marker="D", edgecolors=BEST_PATH_COLOR,
                   linewidths=max(2.2 * edge, 0.6), zorder=6)


def _runs(frames: IntArray) -> list[tuple[int, int]]:
    """Consecutive integers grouped: [3, 4, 5, 9] -> [(3, 5), (9, 9)]."""
    if frames.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [frames.size - 1]])
    return [(int(frames[s]), int(frames[e])) for s, e in zip(starts, ends, strict=True)]


def _draw_uncertain(ax: Axes, view: TreeView) -> None:
    """Light bands over runs of uncertain frames, half a frame step beyond each end."""
    from matplotlib.collections import PolyCollection

    boxes = []
    first_shown, last_shown = view.visible_frames[0], view.visible_frames[-1]
    for first, last in _runs(view.uncertain_frames):
        left = view.x_of(first) - 0.5 if first <= first_shown else view.x_of(first - 0.5)
        right = view.x_of(last) + 0.5 if last >= last_shown else view.x_of(last + 0.5)
        boxes.append([(float(left), 0.0), (float(right), 0.0), (float(right), 1.0),
                      (float(left), 1.0)])
    if boxes:
        ax.add_collection(PolyCollection(
            boxes, facecolors=UNCERTAIN_COLOR, alpha=0.25, edgecolors=UNCERTAIN_COLOR,
            linewidths=0.3, zorder=0, transform=ax.get_xaxis_transform()))


def _label_runs(ax: Axes, view: TreeView, x: FloatArray, points_per_unit: float) -> None:
    """A "first-last" label over each collapsed run, longest runs first, skipping any that
    would overlap a label already placed (at most MAX_RUN_LABELS)."""
    ends = np.flatnonzero(view.kept & (view.hidden > 0))
    runs: dict[int, tuple[int, float]] = {}
    for i in ends.tolist():
        runs.setdefault(int(view.frame[i]), (int(view.hidden[i]), float(x[i])))
    placed: list[tuple[float, float]] = []
    font = 5.5
    for last, (hidden, end_x) in sorted(runs.items(), key=lambda item: -item[1][0]):
        if len(placed) == MAX_RUN_LABELS:
            break
        text = f"{last - hidden - 1}–{last}"
        center = end_x - COLLAPSED_WIDTH / 2
        half = 0.5 * (0.66 * font * len(text) + 8.0) / points_per_unit
        if any(center - half < right and left < center + half for left, right in placed):
            continue
        placed.append((center - half, center + half))
        ax.text(center, -0.42, text, ha="center", va="bottom", fontsize=font,
                color=KEPT_EDGE_COLOR, zorder=7)


def _style_axes(ax: Axes, view: TreeView, slots: int, show_pruned: bool) -> None:
    from matplotlib.ticker import FixedLocator, MaxNLocator

    x_visible = view.x_of(view.visible_frames)
    pad = max(0.6, 0.01 * float(x_visible[-1] - x_visible[0]))
    ax.set_xlim(float(x_visible[0]) - pad, float(x_visible[-1]) + pad)
    ax.set_ylim(slots - 1 + (0.65 if show_pruned else 0.4), -0.75 if view.collapsed else -0.5)
    ax.set_yticks(range(slots))
    ax.set_ylabel("pathway slot")
    ax.set_xlabel("frame")
    if view.collapsed:
        picks = np.unique(np.linspace(0, len(view.visible_frames) - 1,
                                      min(len(view.visible_frames), 12)).round().astype(int))
        ax.xaxis.set_major_locator(FixedLocator(x_visible[picks].tolist()))
        ax.set_xticklabels([str(f) for f in view.visible_frames[picks].tolist()])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_thumbnails(strip: Axes, ax: Axes, view: TreeView,
                     thumbnails: Mapping[int, npt.NDArray[np.uint8]], layout: _Layout) -> None:
    """Images at their frames' x, aspect kept, shrunk until neighbours do not overlap."""
    strip.set_ylim(0.0, 1.0)
    strip.axis("off")
    frames = np.fromiter(thumbnails, dtype=np.int64)
    centers = view.x_of(frames)
    x_low, x_high = ax.get_xlim()
    units_per_inch = (x_high - x_low) / layout.axes_width
    label_room = 0.16
    for frame, center in zip(frames.tolist(), centers.tolist(), strict=True):
        image = _shrink(np.asarray(thumbnails[frame]), 160)
        aspect = image.shape[1] / max(image.shape[0], 1)
        height_in = layout.strip * (1 - label_room)
        width = height_in * aspect * units_per_inch
        spacing = np.diff(np.sort(centers)).min() if centers.size > 1 else np.inf
        scale = min(1.0, 0.94 * float(spacing) / width)
        width *= scale
        height = (1 - label_room) * scale
        strip.imshow(image, extent=(center - width / 2, center + width / 2, label_room,
                                    label_room + height), aspect="auto",
                     interpolation="antialiased", zorder=2, clip_on=False)
        strip.text(center, label_room - 0.02, str(frame), ha="center", va="top", fontsize=6)
        ax.plot([center], [1.0], marker="v", markersize=3.5, color=KEPT_EDGE_COLOR,
                transform=ax.get_xaxis_transform(), clip_on=False, zorder=8)
    strip.set_xlim(x_low, x_high)


def _shrink(image: npt.NDArray[Any], height: int) -> npt.NDArray[Any]:
    """Stride-subsample so the image is at most about `height` pixels high."""
    step = max(1, int(image.shape[0] // height))
    return image[::step, ::step]


def _legend(figure: Figure, view: TreeView, layout: _Layout, show_pruned: bool,
            title: str) -> None:
    """The title at the top left, then the legend in one row beside it."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], color=BEST_PATH_COLOR, linewidth=2.4, label="final pathway"),
        Line2D([], [], color=KEPT_EDGE_COLOR, linewidth=1.0, marker="o", markersize=3.5,
               markerfacecolor="white", label="kept"),
    ]
    if show_pruned:
        handles.append(Line2D([], [], color=PRUNED_COLOR, linewidth=0.6, alpha=0.7, marker="o",
                              markersize=2.5, markeredgewidth=0, label="pruned"))
    if view.collapsed:
        handles.append(Line2D([], [], color=KEPT_EDGE_COLOR, linewidth=1.0,
                              linestyle=(0, (1.0, 1.5)), label="collapsed run (frames)"))
    if view.prompt.any():
        handles.append(Line2D([], [], linestyle="none", marker="D", markersize=4,
                              markerfacecolor="white", markeredgecolor=BEST_PATH_COLOR,
                              label="prompt"))
    handles.append(Patch(facecolor=UNCERTAIN_COLOR, alpha=0.35, edgecolor="none",
                         label=f"uncertain (|o| ≤ {view.delta_conf:g})"))
    top = 1.0 - 0.5 * layout.legend / layout.height
    label = figure.text(0.08 / layout.width, top, title, ha="left", va="center",
                        fontsize=BASE_STYLE["axes.titlesize"], fontweight="bold")
    label.set_label("title")
    figure.legend(handles=handles, loc="center left", ncols=len(handles), frameon=False,
                  bbox_to_anchor=(layout.left / layout.width + 0.35 / layout.width, top),
                  handlelength=1.8, columnspacing=1.2, borderaxespad=0.0)
