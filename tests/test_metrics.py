"""J and F against hand-computed cases, DAVIS's edge cases and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from treemem.metrics import (
    VideoEvaluator,
    boundary_accuracy,
    boundary_map,
    boundary_tolerance,
    objects_of,
    region_similarity,
    statistics,
    summarize,
)
from treemem.metrics import _boundary_pixels as boundary_pixels


def box(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def dilate_reference(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disk X**2 + Y**2 <= r**2, one shifted OR per disk offset."""
    height, width = bmap.shape
    padded = np.pad(bmap, radius)
    out = np.zeros_like(bmap)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                out |= padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
    return out


def f_reference(gt: np.ndarray, pred: np.ndarray, radius: int) -> float:
    """DAVIS's f_measure, written out plainly with dense maps."""
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = pred_b.sum(), gt_b.sum()
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = (pred_b & dilate_reference(gt_b, radius)).sum() / n_pred
        recall = (gt_b & dilate_reference(pred_b, radius)).sum() / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


# --- J ----------------------------------------------------------------------------------------


def test_region_similarity_hand_computed() -> None:
    gt = box((6, 6), 1, 3, 1, 3)  # 4 pixels
    pred = box((6, 6), 1, 3, 1, 4)  # 6 pixels, 4 shared
    assert region_similarity(gt, pred) == pytest.approx(4 / 6)


def test_region_similarity_empty_conventions() -> None:
    empty, some = np.zeros((4, 4), bool), box((4, 4), 0, 2, 0, 2)
    assert region_similarity(empty, empty) == 1.0
    assert region_similarity(empty, some) == 0.0
    assert region_similarity(some, empty) == 0.0


def test_region_similarity_void_and_batches() -> None:
    gt = box((4, 4), 0, 2, 0, 2)
    pred = box((4, 4), 0, 2, 0, 3)
    void = box((4, 4), 0, 4, 2, 4)  # hides pred's extra column
    assert region_similarity(gt, pred, void) == 1.0
    stacked = region_similarity(np.stack([gt, gt]), np.stack([pred, gt]))
    assert stacked.shape == (2,)
    assert stacked.tolist() == pytest.approx([4 / 6, 1.0])


# --- boundary map and tolerance -----------------------------------------------------------------


def test_boundary_map_of_one_pixel_is_offset_toward_the_origin() -> None:
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(boundary_map(mask), expected)


def test_boundary_map_border_rules() -> None:
    full = np.ones((4, 5), bool)
    assert not boundary_map(full).any()  # a mask covering the image has no boundary
    corner = np.zeros((4, 5), bool)
    corner[3, 4] = True  # bottom-right pixel: never a boundary itself
    expected = np.zeros((4, 5), bool)
    expected[3, 3] = expected[2, 4] = expected[2, 3] = True
    assert np.array_equal(boundary_map(corner), expected)


def test_boundary_tolerance_is_davis() -> None:
    assert boundary_tolerance((1080, 1920)) == 18  # ceil(0.008 * 2202.9)
    assert boundary_tolerance((480, 854)) == 8  # DAVIS 480p
    assert boundary_tolerance((5, 5)) == 1
    assert boundary_tolerance((100, 100), bound_th=3) == 3
    with pytest.raises(ValueError):
        boundary_tolerance((100, 100), bound_th=2.5)


# --- F ----------------------------------------------------------------------------------------


def test_boundary_accuracy_empty_conventions() -> None:
    empty, some = np.zeros((8, 8), bool), box((8, 8), 2, 5, 2, 5)
    assert boundary_accuracy(empty, empty) == 1.0
    assert boundary_accuracy(some, empty) == 0.0  # empty prediction: P = 1, R = 0
    assert boundary_accuracy(empty, some) == 0.0  # empty ground truth: P = 0, R = 1
    full = np.ones((8, 8), bool)
    assert boundary_accuracy(full, full) == 1.0  # both boundaries empty
    assert boundary_accuracy(full, some) == 0.0


def test_boundary_accuracy_one_pixel_objects() -> None:
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    assert boundary_accuracy(gt, gt) == 1.0
    assert region_similarity(gt, gt) == 1.0
    # Two pixels apart with tolerance 1: boundaries {(1,1),(1,2),(2,1),(2,2)} and
    # {(1,3),(1,4),(2,3),(2,4)}; half of each lies within 1 pixel of the other.
    pred = np.zeros((5, 5), bool)
    pred[2, 4] = True
    assert boundary_tolerance((5, 5)) == 1
    assert boundary_accuracy(gt, pred) == pytest.approx(0.5)
    assert region_similarity(gt, pred) == 0.0
    far = np.zeros((5, 5), bool)
    far[4, 0] = True  # boundary {(3,0)}: no pixel within 1 of gt's
    assert boundary_accuracy(gt, far) == 0.0


def test_boundary_accuracy_hand_computed_bars() -> None:
    # gt: row 3 of a 10 x 10 image; pred: row 6. Boundaries: rows {2, 3} and {5, 6} (minus
    # the last column's special rule). Tolerance 2: gt row 3 reaches pred row 5; row 2 does not.
    gt, pred = box((10, 10), 3, 4, 0, 10), box((10, 10), 6, 7, 0, 10)
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    assert gt_b.sum() == pred_b.sum() == 20
    assert boundary_accuracy(gt, pred, bound_th=2) == pytest.approx(0.5)
    assert boundary_accuracy(gt, pred, bound_th=4) == pytest.approx(1.0)
    assert boundary_accuracy(gt, pred, bound_th=1) == 0.0


def test_boundary_accuracy_void_clears_masks_first() -> None:
    gt, pred = box((10, 10), 2, 5, 2, 5), box((10, 10), 2, 5, 2, 8)
    void = box((10, 10), 0, 10, 5, 10)
    assert boundary_accuracy(gt, pred, void) == 1.0


masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda shape: st.tuples(
        arrays(bool, shape, elements=st.booleans()),
        arrays(bool, shape, elements=st.booleans()),
    )
)


@settings(max_examples=150, deadline=None)
@given(masks, st.integers(1, 4))
def test_boundary_accuracy_matches_dense_reference(
    pair: tuple[np.ndarray, ...], radius: int
) -> None:
    gt, pred = pair
    value = boundary_accuracy(gt, pred, bound_th=radius)
    assert value == pytest.approx(f_reference(gt, pred, radius), abs=1e-12)
    assert value == pytest.approx(boundary_accuracy(pred, gt, bound_th=radius), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(masks)
def test_values_in_unit_interval_and_boundary_crop_exact(pair: tuple[np.ndarray, ...]) -> None:
    gt, pred = pair
    j = float(region_similarity(gt, pred))
    f = boundary_accuracy(gt, pred)
    assert 0.0 <= j <= 1.0
    assert 0.0 <= f <= 1.0
    ys, xs = boundary_pixels(gt)
    assert np.array_equal(np.stack([ys, xs]), np.stack(np.nonzero(boundary_map(gt))))


def test_sparse_blobs_far_apart_on_a_large_frame() -> None:
    gt, pred = box((1080, 1920), 10, 60, 10, 60), box((1080, 1920), 900, 1000, 1700, 1900)
    assert boundary_accuracy(gt, pred) == 0.0
    shifted = box((1080, 1920), 10 + 18, 60 + 18, 10, 60)  # exactly at the 18 px tolerance
    assert boundary_accuracy(gt, shifted) == pytest.approx(f_reference(gt, shifted, 18))


# --- statistics and aggregation ---------------------------------------------------------------


def test_statistics_hand_computed() -> None:
    stats = statistics([1, 1, 1, 1, 0, 0, 0, 0])
    # DAVIS bins: round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]; bin 1 = [0:3], bin 4 = [5:8]
    assert stats.mean == 0.5
    assert stats.recall == 0.5
    assert stats.decay == 1.0
    assert statistics([0.5, 0.6]).recall == 0.5  # strictly greater than 0.5


def test_statistics_long_videos_do_not_wrap() -> None:
    values = np.r_[np.ones(300), np.zeros(300)]
    assert statistics(values).decay == 1.0
    assert math.isnan(statistics([]).mean)


def test_video_evaluator_scores_objects_from_their_first_appearance() -> None:
    shape = (8, 8)
    a, b = box(shape, 0, 3, 0, 3), box(shape, 4, 8, 4, 8)
    evaluator = VideoEvaluator("v")
    evaluator.add("00", objects_of(a.astype(np.uint8)), objects_of(a.astype(np.uint8)), shape)
    gt = a.astype(np.uint8) + 2 * b.astype(np.uint8)
    evaluator.add("01", objects_of(gt), {1: a}, shape)  # object 2 appears, not predicted
    evaluator.add("02", objects_of(gt), {1: a, 2: b, 7: a}, shape)  # 7: not in the ground truth
    scores = evaluator.result()
    assert [o.obj for o in scores.objects] == [1, 2]
    one, two = scores.objects
    assert one.frames == ("00", "01", "02") and one.j.tolist() == [1, 1, 1]
    assert two.frames == ("01", "02") and two.j.tolist() == [0, 1] and two.f.tolist() == [0, 1]
    frames, curve = scores.frame_curve()
    assert frames == ("00", "01", "02")
    assert curve.tolist() == pytest.approx([1.0, 0.5, 1.0])
    summary = summarize(scores.objects)
    assert summary.objects == 2
    assert summary.j.mean == pytest.approx((1.0 + 0.5) / 2)
    assert summary.jf == pytest.approx(0.75)


def test_objects_of_treats_void_as_background() -> None:
    ids = np.array([[0, 1], [255, 3]], np.uint8)
    assert sorted(objects_of(ids)) == [1, 3]
