"""Video object segmentation scores: region similarity J and boundary accuracy F.

The per-frame definitions are those of the DAVIS-2017 evaluation (`db_eval_iou`,
`db_eval_boundary`, `db_statistics`), which the SA-V and LVOS benchmarks reuse:

- J = |pred & gt| / |pred | gt| over non-void pixels; 1 when both masks are empty.
- F: both masks become 1-pixel boundary maps by the `seg2bmap` rule (`boundary_map`);
  a boundary pixel is matched when a boundary pixel of the other mask lies within a disk of
  radius ceil(0.008 x image diagonal) (`boundary_tolerance`); precision = matched fraction of
  the predicted boundary, recall = matched fraction of the ground-truth boundary,
  F = 2PR / (P + R). Empty boundaries: both empty -> F = 1; exactly one empty -> F = 0.
- Per object over frames: mean, recall (fraction of frames > 0.5) and decay (mean of the
  first quarter minus mean of the last quarter of frames, DAVIS's 4 overlapping bins).

Everything is numpy. The disk dilation DAVIS does with OpenCV is evaluated sparsely: for each
boundary pixel of one mask, the nearest boundary pixel of the other mask in each of the
2r + 1 rows the disk spans is found by binary search, which costs O(boundary length x r)
instead of O(image area x r^2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from treemem.types import BoolArray, FloatArray, IntArray

BOUND_TH = 0.008
"""DAVIS's boundary tolerance: a fraction of the image diagonal (or pixels when >= 1)."""

_QUERY_CHUNK = 1 << 16


# --- per frame --------------------------------------------------------------------------------


def region_similarity(gt: BoolArray, pred: BoolArray, void: BoolArray | None = None) -> FloatArray:
    """J of masks shaped (..., H, W): one value per leading index, shape (...).

    Void pixels (if given, broadcastable to the masks) count neither in the intersection nor
    in the union. An empty union gives 1, as in DAVIS.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim < 2:
        raise ValueError(f"masks must share a (..., H, W) shape, got {gt.shape} and {pred.shape}")
    both, either = gt & pred, gt | pred
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        both, either = both & keep, either & keep
    intersection = np.count_nonzero(both, axis=(-2, -1))
    union = np.count_nonzero(either, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union == 0, 1.0, intersection / np.maximum(union, 1))
    return np.asarray(jaccard, dtype=np.float64)


def boundary_map(mask: BoolArray) -> BoolArray:
    """The `seg2bmap` boundary of an (H, W) mask: 1-pixel wide, offset toward the origin.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour;
    on the last row only the east neighbour counts, on the last column only the south one,
    and the bottom-right pixel never does (so a mask covering the whole image has no
    boundary). This is the full-image reference; `boundary_accuracy` computes the same map
    on the mask's bounding box only.
    """
    seg = np.asarray(mask, dtype=bool)
    if seg.ndim != 2:
        raise ValueError(f"boundary_map needs an (H, W) mask, got shape {seg.shape}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap: BoolArray = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Disk radius in pixels: ceil(bound_th x diagonal), or bound_th itself when >= 1."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"a tolerance in pixels must be a whole number, got {bound_th}")
        return int(bound_th)
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    height, width = shape
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def boundary_accuracy(
    gt: BoolArray,
    pred: BoolArray,
    void: BoolArray | None = None,
    bound_th: float = BOUND_TH,
) -> float:
    """F of two (H, W) masks, exactly DAVIS's `f_measure` (void pixels are cleared first)."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"masks must share an (H, W) shape, got {gt.shape} and {pred.shape}")
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        gt, pred = gt & keep, pred & keep
    radius = boundary_tolerance((gt.shape[0], gt.shape[1]), bound_th)
    return boundary_accuracy_with(gt, pred, Disk.of(radius))


@dataclass(frozen=True, eq=False)
class Disk:
    """A dilation element as one run of columns per row: row offset `dy[i]` covers the
    column offsets `lo[i]..hi[i]` (inclusive). Offsets are those `cv2.dilate` applies: a
    boundary pixel at p is matched by one at p + (dy, dx).

    `of(r)` is the integer disk DAVIS uses (`X**2 + Y**2 <= r**2`); `skimage(r)` is what
    `skimage.morphology.disk(r)` gives for any float r (grid points -r, -r + 1, ... < r + 1,
    anchored by OpenCV at index size // 2, so a non-integer r makes an off-centre element);
    the MOSE evaluation dilates with such disks.
    """

    dy: IntArray
    lo: IntArray
    hi: IntArray

    @classmethod
    def of(cls, radius: int) -> Disk:
        offsets = np.arange(-radius, radius + 1, dtype=np.int64)
        half = np.array([math.isqrt(radius * radius - int(d) * int(d)) for d in offsets])
        return cls(offsets, -half.astype(np.int64), half.astype(np.int64))

    @classmethod
    def skimage(cls, radius: float) -> Disk:
        if float(radius).is_integer():
            return cls.of(int(radius))
        grid = np.arange(-radius, radius + 1)
        inside = grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2
        anchor = grid.size // 2
        rows = [int(r) for r in np.flatnonzero(inside.any(axis=1))]
        cols = [np.flatnonzero(inside[r]) for r in rows]
        return cls(
            np.array(rows, np.int64) - anchor,
            np.array([c[0] for c in cols], np.int64) - anchor,
            np.array([c[-1] for c in cols], np.int64) - anchor,
        )

    @property
    def reach(self) -> int:
        if self.dy.size == 0:  # skimage's disk of a radius below 0.5 holds no point
            return 0
        return int(max(np.abs(self.dy).max(), np.abs(self.lo).max(), np.abs(self.hi).max()))


def boundary_accuracy_with(gt: BoolArray, pred: BoolArray, element: Disk) -> float:
    """F of two (H, W) bool masks with a given dilation element (see `boundary_accuracy`)."""
    gt_ys, gt_xs = _boundary_pixels(gt)
    pred_ys, pred_xs = _boundary_pixels(pred)
    n_gt, n_pred = gt_ys.size, pred_ys.size
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:
        return 0.0
    width = gt.shape[1]
    precision = _count_matched(pred_ys, pred_xs, gt_ys, gt_xs, element, width) / n_pred
    recall = _count_matched(gt_ys, gt_xs, pred_ys, pred_xs, element, width) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _boundary_pixels(mask: BoolArray) -> tuple[IntArray, IntArray]:
    """Row-major (ys, xs) of `boundary_map(mask)`, computed on the mask's bounding box.

    The box grows by one pixel up and left (pixels there see the mask as a south or east
    neighbour) and one down and right (an empty row or column, so the last-row and
    last-column rules give the same answer as the full image would); where the box meets the
    image border the rules are the image's own.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, height)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, width)
    ys, xs = np.nonzero(boundary_map(mask[y0:y1, x0:x1]))
    return ys.astype(np.int64) + y0, xs.astype(np.int64) + x0


def _count_matched(
    query_ys: IntArray,
    query_xs: IntArray,
    target_ys: IntArray,
    target_xs: IntArray,
    element: Disk,
    width: int,
) -> int:
    """How many query pixels p have a target pixel at p + (dy, dx) for an offset of `element`.

    The same as counting the queries inside the target map dilated by `element`. For each
    row offset the element is one run of columns; the first target pixel at or after the
    run's start is found by binary search over row-major keys whose row stride leaves a gap
    wider than any run, so pixels in adjacent rows never match by accident.
    """
    if element.dy.size == 0:
        return 0
    stride = width + 2 * element.reach + 2
    keys = target_ys * stride + target_xs
    last = keys.size - 1
    matched = 0
    for start in range(0, query_ys.size, _QUERY_CHUNK):
        qy = query_ys[start : start + _QUERY_CHUNK]
        qx = query_xs[start : start + _QUERY_CHUNK]
        run_start = (qy[None, :] + element.dy[:, None]) * stride + qx[None, :]
        run_start = run_start + element.lo[:, None]
        position = np.searchsorted(keys, run_start)
        found = keys[np.minimum(position, last)] - run_start
        reach = (element.hi - element.lo)[:, None]
        hit = (position <= last) & (found >= 0) & (found <= reach)
        matched += int(np.count_nonzero(hit.any(axis=0)))
    return matched


# --- MOSE's variants --------------------------------------------------------------------------


def mose_region_similarity(gt: BoolArray, pred: BoolArray) -> float:
    """MOSEv2's J: (|pred & gt| + 1) / (|pred | gt| + 1), so 1 when both are empty."""
    intersection = int(np.count_nonzero(gt & pred))
    union = int(np.count_nonzero(gt | pred))
    return (intersection + 1) / (union + 1)


def mose_boundary_accuracy(gt: BoolArray, pred: BoolArray) -> tuple[float, float]:
    """MOSEv2's (F, F_new) of two (H, W) masks.

    F uses DAVIS's radius ceil(0.008 x diagonal); F_new ("area" mode, threshold 0.1) uses
    ceil(0.1 x sqrt(ground-truth area)) when that is smaller than 0.008 x diagonal. When it
    is not (large objects, or an empty ground truth) both use the unrounded 0.008 x diagonal
    as a skimage disk, as the toolkit does.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    diagonal_radius = BOUND_TH * math.sqrt(gt.shape[0] ** 2 + gt.shape[1] ** 2)
    area = int(np.count_nonzero(gt))
    adaptive = math.ceil(0.1 * math.sqrt(area)) if area else math.ceil(diagonal_radius)
    adaptive_radius = min(diagonal_radius, float(adaptive))
    if adaptive_radius < diagonal_radius:
        standard = boundary_accuracy_with(gt, pred, Disk.of(math.ceil(diagonal_radius)))
        return standard, boundary_accuracy_with(gt, pred, Disk.of(int(adaptive_radius)))
    both = boundary_accuracy_with(gt, pred, Disk.skimage(diagonal_radius))
    return both, both


# --- over frames ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    """DAVIS's summary of per-frame values: mean, recall (fraction > 0.5) and decay."""

    mean: float
    recall: float
    decay: float


def statistics(per_frame: Sequence[float] | FloatArray) -> Statistics:
    """`db_statistics`: NaNs are ignored; decay = mean of bin 1 - mean of bin 4.

    The 4 bins are DAVIS's: boundaries round(linspace(1, T, 5)) - 1, each bin including both
    of its boundaries. DAVIS stores the boundaries as uint8, which wraps past 255 frames;
    here they are plain integers (identical up to 256 frames, correct beyond).
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return Statistics(math.nan, math.nan, math.nan)
    finite = values[~np.isnan(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    recall = float(np.mean(values > 0.5))
    bounds = (np.round(np.linspace(1, values.size, 5) + 1e-10) - 1).astype(np.int64)
    first = values[bounds[0] : bounds[1] + 1]
    last = values[bounds[3] : bounds[4] + 1]
    decay = _nanmean(first) - _nanmean(last)
    return Statistics(mean, recall, decay)


def _nanmean(values: FloatArray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def objects_of(ids: npt.ArrayLike, ignore: Iterable[int] = (0, 255)) -> dict[int, BoolArray]:
    """Split an (H, W) id map (palette PNG) into one mask per object id.

    0 is background; 255 (DAVIS's void label) is treated as background too, which is what the
    DAVIS-2017 evaluation code effectively does.
    """
    ids = np.asarray(ids)
    skip = set(ignore)
    return {int(obj): ids == obj for obj in np.unique(ids) if int(obj) not in skip}


@dataclass(frozen=True)
class ObjectScores:
    """One object of one video: J and F on each evaluated frame (frame names in order)."""

    video: str
    obj: int
    frames: tuple[str, ...]
    j: FloatArray = field(repr=False)
    f: FloatArray = field(repr=False)
    extra: Mapping[str, FloatArray] = field(default_factory=dict, repr=False)
    """Per-frame values a benchmark adds (MOSE: "F_new", "gt_empty"), aligned with `frames`."""

    @property
    def jf(self) -> FloatArray:
        """Per-frame J&F, (J + F) / 2."""
        return np.asarray((self.j + self.f) / 2, dtype=np.float64)

    @property
    def j_stats(self) -> Statistics:
        return statistics(self.j)

    @property
    def f_stats(self) -> Statistics:
        return statistics(self.f)

    @property
    def jf_mean(self) -> float:
        return (self.j_stats.mean + self.f_stats.mean) / 2


@dataclass(frozen=True)
class VideoScores:
    """Every scored object of one video."""

    video: str
    objects: tuple[ObjectScores, ...]

    def frame_curve(self) -> tuple[tuple[str, ...], FloatArray]:
        """Per-frame J&F averaged over the objects scored on that frame (for curve plots)."""
        frames = sorted({name for o in self.objects for name in o.frames})
        total = dict.fromkeys(frames, 0.0)
        count = dict.fromkeys(frames, 0)
        for scores in self.objects:
            for name, value in zip(scores.frames, scores.jf.tolist(), strict=True):
                total[name] += value
                count[name] += 1
        curve = np.array([total[name] / count[name] for name in frames], dtype=np.float64)
        return tuple(frames), curve


@dataclass(frozen=True)
class Summary:
    """Dataset-level scores: each statistic averaged over all objects of all videos, the way
    DAVIS and SA-V report them (so a video with more objects weighs more)."""

    j: Statistics
    f: Statistics
    objects: int

    @property
    def jf(self) -> float:
        return (self.j.mean + self.f.mean) / 2


def summarize(objects: Iterable[ObjectScores]) -> Summary:
    """Average each object's J and F statistics over `objects`."""
    scored = list(objects)
    if not scored:
        nan = Statistics(math.nan, math.nan, math.nan)
        return Summary(nan, nan, 0)
    j = [o.j_stats for o in scored]
    f = [o.f_stats for o in scored]
    return Summary(_average(j), _average(f), len(scored))


def _average(stats: Sequence[Statistics]) -> Statistics:
    return Statistics(
        float(np.mean([s.mean for s in stats])),
        float(np.mean([s.recall for s in stats])),
        float(np.mean([s.decay for s in stats])),
    )


class VideoEvaluator:
    """Scores one video frame by frame, as the SA-V / vos-benchmark evaluator does.

    Feed frames in order with `add`; an object is scored from the first fed frame on which
    it appears in the ground truth or the prediction, and reported if it ever appears in the
    ground truth. With every object present on the first evaluated frame (DAVIS) this scores
    every object on every frame, as DAVIS does. Masks absent from a mapping are empty.
    """

    def __init__(self, video: str, bound_th: float = BOUND_TH) -> None:
        self.video = video
        self.bound_th = bound_th
        self._gt_objects: set[int] = set()
        self._seen: dict[int, None] = {}
        self._frames: dict[int, list[str]] = {}
        self._j: dict[int, list[float]] = {}
        self._f: dict[int, list[float]] = {}

    def add(
        self,
        frame: str,
        gt: Mapping[int, BoolArray],
        pred: Mapping[int, BoolArray],
        shape: tuple[int, int],
    ) -> None:
        """Score one (H, W) = `shape` frame; `gt` and `pred` map object ids to masks."""
        for masks in (gt, pred):
            for obj, mask in masks.items():
                if mask.shape != shape:
                    raise ValueError(
                        f"{self.video}/{frame}: object {obj} mask is {mask.shape}, frame is {shape}"
                    )
        self._gt_objects.update(obj for obj, mask in gt.items() if mask.any())
        for obj in (*gt, *pred):
            if gt.get(obj, _EMPTY).any() or pred.get(obj, _EMPTY).any():
                self._seen.setdefault(obj, None)
        empty = np.zeros(shape, bool)
        for obj in self._seen:
            gt_mask, pred_mask = gt.get(obj, empty), pred.get(obj, empty)
            self._frames.setdefault(obj, []).append(frame)
            self._j.setdefault(obj, []).append(float(region_similarity(gt_mask, pred_mask)))
            self._f.setdefault(obj, []).append(
                boundary_accuracy(gt_mask, pred_mask, bound_th=self.bound_th)
            )

    def result(self) -> VideoScores:
        objects = tuple(
            ObjectScores(
                self.video,
                obj,
                tuple(self._frames[obj]),
                np.array(self._j[obj], dtype=np.float64),
                np.array(self._f[obj], dtype=np.float64),
            )
            for obj in sorted(self._gt_objects)
            if obj in self._frames
        )
        return VideoScores(self.video, objects)


_EMPTY = np.zeros((1, 1), bool)
