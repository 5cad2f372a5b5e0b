"""The pathway tree of one object as a matplotlib figure for a paper.

Time runs left to right and each pathway slot has its own row (slot 0, the best, on top).
Kept nodes are drawn solid, pruned candidates as faint dots hanging below their parent's
row, the final pathway (`TreeRecord.best_path`) in vermillion, and node colour is the
predicted IoU or the occlusion logit. Frames where the record says uncertainty diversity
chose the survivors (see `treemem.viz.tree_view`) get a light blue band. The figure is drawn
with a few collections, never one artist per node, so a 10,000-frame tree draws in seconds.
"""

from __future__ import annotations

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
from treemem.viz.tree_view import COLLAPSED_WIDTH, TreeView, select_tree

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ColorBy = Literal["iou", "occlusion"]

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
    show_pruned: bool | None = None,
    width: float = 7.0,
    title: str | None = None,
) -> Figure:
    """Draw object `obj`'s pathway tree (window and collapsing as in `select_tree`); returns
    the Figure (not shown, no pyplot state). The other options are `draw_view`'s."""
    view = select_tree(record, obj, frames, collapse)
    return draw_view(view, color_by=color_by, thumbnails=thumbnails, serif=serif,
                     show_pruned=show_pruned, width=width, title=title)


def draw_view(
    view: TreeView,
    *,
    color_by: ColorBy = "iou",
    thumbnails: Mapping[int, npt.NDArray[np.uint8]] | None = None,
    serif: bool = False,
    show_pruned: bool | None = None,
    width: float = 7.0,
    title: str | None = None,
) -> Figure:
    """Draw an already selected `TreeView`; returns the Figure.

    color_by: "iou" (predicted IoU, viridis, 0 to 1) or "occlusion" (occlusion logit,
    cividis, symmetric about 0). thumbnails: frame -> (H, W, 3) uint8 image (e.g.
    `treemem.viz.overlay.mask_thumbnails`), drawn in a strip above the axis at their frames.
    show_pruned: None draws pruned candidates when at most PRUNED_COLUMNS frames are visible
    (beyond that they only fill the rows with grey). The axes carry labels "tree",
    "colorbar" and "thumbnails" for restyling; save with `save_figure` for the paper style at
    save time.
    """
    if color_by not in COLORMAPS:
        raise InputError(f"color_by must be one of {sorted(COLORMAPS)}, got {color_by!r}")
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
    limit = max(float(finite.max()) if finite.size else 0.0, 1.0)
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
    if view.uncertain_frames.size:
        handles.append(Patch(facecolor=UNCERTAIN_COLOR, alpha=0.35, edgecolor="none",
                             label="uncertain (diversity chose)"))
    top = 1.0 - 0.5 * layout.legend / layout.height
    label = figure.text(0.08 / layout.width, top, title, ha="left", va="center",
                        fontsize=BASE_STYLE["axes.titlesize"], fontweight="bold")
    label.set_label("title")
    figure.legend(handles=handles, loc="center left", ncols=len(handles), frameon=False,
                  bbox_to_anchor=(layout.left / layout.width + 0.35 / layout.width, top),
                  handlelength=1.8, columnspacing=1.2, borderaxespad=0.0)
