"""Mask geometry: SAMURAI's box rule, shared by every backend."""

from __future__ import annotations

import numpy as np

from treemem.geometry import boxes_from_occupancy, mask_boxes


def test_a_box_is_max_inclusive_and_an_empty_mask_is_zeros() -> None:
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:4, 2:7] = True
    boxes = mask_boxes(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    assert boxes.tolist() == [[2.0, 1.0, 6.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


def test_occupancy_gives_the_same_boxes_as_the_mask() -> None:
    masks = np.random.default_rng(0).uniform(size=(3, 2, 9, 7)) > 0.8
    from_occupancy = boxes_from_occupancy(masks.any(axis=-1), masks.any(axis=-2))
    assert from_occupancy.shape == (3, 2, 4)
    np.testing.assert_array_equal(from_occupancy, mask_boxes(masks))
