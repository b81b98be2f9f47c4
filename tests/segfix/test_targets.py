"""SegFix ground truth: boundary band, direction bins and distance on hand-made label maps, and
against a straightforward full-image reference of openseg's recipe (scipy instead of OpenCV,
no cropping)."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from panoptic_ocr.segfix import (
    DIRECTION_VECTORS,
    direction_offsets,
    gradient_kernels,
    segfix_targets,
)

LEFT, UP_LEFT, UP, UP_RIGHT, RIGHT, DOWN_RIGHT, DOWN, DOWN_LEFT = range(8)


def _square(size=40, lo=10, hi=30):
    label = np.zeros((size, size), dtype=np.uint8)
    label[lo:hi, lo:hi] = 1
    return label


def test_direction_table_is_openseg_order_and_matches_the_angle_bins():
    # openseg's lib/utils/helpers/offset_helper.py, label_to_vector_mapping[8]
    assert DIRECTION_VECTORS == (
        (0, -1),
        (-1, -1),
        (-1, 0),
        (-1, 1),
        (0, 1),
        (1, 1),
        (1, 0),
        (1, -1),
    )
    # bin i is centred on the angle atan2(dy, dx) = -180 + 45 i degrees
    for i, (dy, dx) in enumerate(DIRECTION_VECTORS):
        angle = math.degrees(math.atan2(dy, dx))
        assert math.isclose((angle + 180.0) % 360.0, 45.0 * i, abs_tol=1e-9)


def test_gradient_kernels():
    ky, kx = gradient_kernels(5)
    assert ky.shape == (5, 5) and ky.dtype == np.float32
    np.testing.assert_array_equal(kx, ky.T)
    assert ky[2, 2] == 0 and ky[3, 2] == 1.0 and ky[1, 2] == -1.0 and ky[2, 3] == 0.0
    assert ky[3, 3] == pytest.approx(0.5) and ky[4, 3] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="odd"):
        gradient_kernels(4)


def test_square_has_an_inner_ring_pointing_inwards():
    label = _square()
    boundary, direction, distance = segfix_targets(label)
    ys, xs = np.mgrid[:40, :40]
    inside = label == 1
    # the distance to the nearest outside pixel of an axis-aligned square: the nearest side
    gap = np.minimum.reduce([ys - 9, 30 - ys, xs - 9, 30 - xs])
    np.testing.assert_allclose(distance[inside], gap[inside])
    ring = inside & (gap <= 5)
    np.testing.assert_array_equal(boundary[inside], ring[inside].astype(np.uint8))
    assert not (direction[inside & ~ring] != 255).any()  # interior: no direction
    # each side's pixels (off the diagonals) point into the square
    assert (direction[15:25, 10:15] == RIGHT).all()  # left side
    assert (direction[15:25, 25:30] == LEFT).all()  # right side
    assert (direction[10:15, 15:25] == DOWN).all()  # top side
    assert (direction[25:30, 15:25] == UP).all()  # bottom side
    # the corners' diagonals point diagonally inwards
    for k in range(5):
        assert direction[10 + k, 10 + k] == DOWN_RIGHT
        assert direction[10 + k, 29 - k] == DOWN_LEFT
        assert direction[29 - k, 10 + k] == UP_RIGHT
        assert direction[29 - k, 29 - k] == UP_LEFT


def test_background_around_the_square_points_away_from_it_and_ignores_the_image_border():
    boundary, direction, distance = segfix_targets(_square())
    # the background's ring of width 5 around the square, pointing into the background
    assert (boundary[15:25, 5:10] == 1).all() and (boundary[15:25, 4] == 0).all()
    assert (direction[15:25, 5:10] == LEFT).all()
    assert (direction[30:35, 15:25] == DOWN).all()
    assert direction[9, 9] == UP_LEFT
    # the image border is not outside: the background's pixels along it are not boundary
    assert (boundary[0, :] == 0).all() and (boundary[:, 0] == 0).all()
    assert distance[0, 20] == 10 and distance[20, 0] == 10


def test_ring_width_follows_max_distance():
    boundary, _, distance = segfix_targets(_square(), max_distance=2)
    assert (boundary[20, 10:12] == 1).all() and boundary[20, 12] == 0
    assert (boundary[20, 8:10] == 1).all() and boundary[20, 7] == 0
    # the band is floor(distance) <= max_distance, as openseg's uint8 distance: 2.83 is in
    assert distance[8, 8] == pytest.approx(math.sqrt(8)) and boundary[8, 8] == 1


def test_two_touching_regions_point_into_their_own_side():
    label = np.full((20, 40), 3, dtype=np.uint8)
    label[:, 20:] = 7
    boundary, direction, distance = segfix_targets(label)
    np.testing.assert_array_equal(distance[10, 14:26], [6, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 6])
    assert (boundary[:, 15:25] == 1).all()
    assert (boundary[:, :15] == 0).all() and (boundary[:, 25:] == 0).all()
    # away from the image border (whose zero padding tilts the gradient), straight across
    assert (direction[2:-2, 15:20] == LEFT).all()
    assert (direction[2:-2, 20:25] == RIGHT).all()
    assert (direction[:, :15] == 255).all() and (direction[:, 25:] == 255).all()


def test_ignore_gets_no_target_and_counts_as_outside():
    label = np.ones((30, 30), dtype=np.uint8)
    label[:, :10] = 255
    boundary, direction, distance = segfix_targets(label)
    assert (boundary[:, :10] == 255).all() and (direction[:, :10] == 255).all()
    assert (distance[:, :10] == 0).all()
    # the class next to the ignored stripe has a boundary there, pointing away from it
    np.testing.assert_array_equal(distance[15, 10:17], [1, 2, 3, 4, 5, 6, 7])
    assert (boundary[:, 10:15] == 1).all() and (boundary[:, 15:] == 0).all()
    assert (direction[2:-2, 10:15] == RIGHT).all()
    # any value can be the ignore label
    other = np.where(label == 255, 9, label).astype(np.int64)
    b9, d9, _ = segfix_targets(other, ignore_label=9)
    np.testing.assert_array_equal(b9, boundary)
    np.testing.assert_array_equal(d9, direction)


@pytest.mark.parametrize("min_area, expected_distance", [(100, 0.0), (0, 1.0)])
def test_one_pixel_region_is_boundary_pointing_right(min_area, expected_distance):
    label = np.zeros((21, 21), dtype=np.uint8)
    label[10, 10] = 4
    boundary, direction, distance = segfix_targets(label, min_area=min_area)
    # under min_area (openseg: 100 pixels) the class gets no transform and is all boundary;
    # with it, its distance is 1. Either way the gradient at it is zero: angle 0, bin 4 (0, +1).
    assert boundary[10, 10] == 1 and direction[10, 10] == RIGHT
    assert distance[10, 10] == expected_distance
    # the background around the hole points away from it
    assert distance[10, 9] == 1 and boundary[10, 9] == 1
    assert direction[10, 8] == LEFT and direction[10, 12] == RIGHT
    assert direction[8, 10] == UP and direction[12, 10] == DOWN


def test_a_small_class_is_all_boundary_with_direction_right():
    label = np.zeros((40, 40), dtype=np.uint8)
    label[5:14, 5:16] = 2  # 99 pixels, under openseg's 100
    boundary, direction, distance = segfix_targets(label)
    assert (boundary[5:14, 5:16] == 1).all() and (direction[5:14, 5:16] == RIGHT).all()
    assert (distance[5:14, 5:16] == 0).all()
    label[14, 5] = 2  # 100 pixels: a distance transform, directions pointing inwards
    boundary, direction, distance = segfix_targets(label)
    assert distance[9, 5] == 1 and direction[9, 5] == RIGHT and direction[9, 15] == LEFT


def test_a_single_class_has_no_boundary():
    label = np.full((16, 24), 5, dtype=np.uint8)
    boundary, direction, distance = segfix_targets(label)
    assert (boundary == 0).all() and (direction == 255).all() and np.isinf(distance).all()
    _, direction, _ = segfix_targets(label, interior_directions=True)
    assert (direction == RIGHT).all()  # a zero gradient everywhere


def test_interior_directions_extend_the_boundary_ones():
    label = _square()
    boundary, direction, _ = segfix_targets(label)
    _, everywhere, _ = segfix_targets(label, interior_directions=True)
    on = boundary == 1
    np.testing.assert_array_equal(everywhere[on], direction[on])
    assert (everywhere != 255).all()
    assert everywhere[20, 16] == RIGHT and everywhere[16, 20] == DOWN  # interior, distance 7


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="H, W"):
        segfix_targets(np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="H, W"):
        segfix_targets(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="16"):
        segfix_targets(np.zeros((3, 4), dtype=np.uint8), num_directions=16)


def _reference(label, ignore_label=255, max_distance=5, min_area=100, ksize=5, interior=False):
    """openseg's recipe on the full image, with scipy: per class EDT, 5 x 5 gradient kernel
    built pixel by pixel, zero padding; openseg's sector rule written out as comparisons; a
    gradient at round-off level is zero."""
    r = ksize // 2
    ky = np.zeros((ksize, ksize))
    kx = np.zeros((ksize, ksize))
    for j in range(-r, r + 1):
        for i in range(-r, r + 1):
            if i or j:
                ky[j + r, i + r] = j / (i * i + j * j)
                kx[j + r, i + r] = i / (i * i + j * j)
    distance = np.zeros(label.shape)
    gy = np.zeros(label.shape)
    gx = np.zeros(label.shape)
    for c in np.unique(label):
        mask = label == c
        if c == ignore_label or mask.sum() < min_area:
            continue
        d = ndimage.distance_transform_edt(mask)
        distance[mask] = d[mask]
        gy[mask] = ndimage.correlate(d, ky, mode="constant", cval=0.0)[mask]
        gx[mask] = ndimage.correlate(d, kx, mode="constant", cval=0.0)[mask]
    flat = np.sqrt(gy**2 + gx**2) < 1e-4 * (1 + distance)  # a vanishing gradient: angle 0
    gy[flat] = 0.0
    gx[flat] = 0.0
    angle = np.degrees(np.arctan2(gy, gx))
    bins = np.zeros(label.shape, dtype=np.int64)  # bin 0: angle <= -157.5 or > 157.5
    for i in range(1, 8):
        centre = -180 + 45 * i
        bins[(angle > centre - 22.5) & (angle <= centre + 22.5)] = i
    valid = label != ignore_label
    on = valid & (np.floor(distance) <= max_distance)
    boundary = np.where(valid, on, 255)
    direction = np.where(valid if interior else on, bins, 255)
    near_edge = np.abs((angle + 22.5) / 45.0 - np.round((angle + 22.5) / 45.0)) < 1e-4
    return boundary, direction, distance, near_edge


def _blobs(seed, shape=(48, 72), classes=5):
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.random((classes,) + shape), sigma=(0, 4, 4))
    label = fields.argmax(0).astype(np.uint8)
    y = rng.integers(0, shape[0] - 5)
    label[y : y + 5, 10:20] = 255  # an ignored patch
    label[2:6, 60:64] = 7  # a class under min_area
    return label


@pytest.mark.parametrize("seed, interior", [(0, False), (1, False), (2, True), (3, True)])
def test_matches_a_full_image_reference(seed, interior):
    label = _blobs(seed)
    boundary, direction, distance = segfix_targets(label, interior_directions=interior)
    ref_boundary, ref_direction, ref_distance, near_edge = _reference(label, interior=interior)
    np.testing.assert_array_equal(boundary, ref_boundary)
    np.testing.assert_allclose(distance, ref_distance, atol=1e-4)
    keep = ~near_edge
    assert (boundary == 1).sum() > 500 and keep.mean() > 0.99
    np.testing.assert_array_equal(direction[keep], ref_direction[keep])
    # all eight directions occur, so a wrong bin order or angle convention would show
    assert set(np.unique(direction[boundary == 1]).tolist()) == set(range(8))


def test_direction_offsets_of_arrays_and_tensors():
    bins = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [255, 255, 8, 4]], dtype=np.uint8)
    offsets = direction_offsets(bins, scale=2)
    assert offsets.shape == (2, 3, 4) and offsets.dtype == np.int64
    for y in range(3):
        for x in range(4):
            b = int(bins[y, x])
            expected = (0, 0) if b > 7 else tuple(2 * v for v in DIRECTION_VECTORS[b])
            assert tuple(offsets[:, y, x]) == expected
    batched = direction_offsets(torch.from_numpy(np.stack([bins, bins[::-1].copy()])), scale=3)
    assert batched.shape == (2, 2, 3, 4) and batched.dtype == torch.int64
    np.testing.assert_array_equal(batched[0].numpy(), offsets // 2 * 3)
    np.testing.assert_array_equal(batched[1].numpy(), offsets[:, ::-1] // 2 * 3)
