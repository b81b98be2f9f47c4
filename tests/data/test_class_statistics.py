"""class_weights_from_frequencies against the formulas computed by hand."""

import math

import numpy as np
import pytest

from panoptic_ocr.data.class_statistics import class_weights_from_frequencies

COUNTS = [600, 300, 100, 0]  # f = 0.6, 0.3, 0.1, 0


def test_enet_weights():
    w = class_weights_from_frequencies(COUNTS, "enet")
    expected = [1 / math.log(1.02 + f) for f in (0.6, 0.3, 0.1)] + [0.0]
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w[3] == 0.0  # a class never seen: nothing measured, not the largest weight


def test_median_frequency_weights_global_and_per_image():
    w = class_weights_from_frequencies(COUNTS, "median_frequency")
    np.testing.assert_allclose(w, [0.3 / 0.6, 1.0, 0.3 / 0.1, 0.0], rtol=1e-12)
    # Eigen & Fergus: freq_c = n_c / pixels of the images containing c.
    totals = [1000, 500, 200, 0]
    freqs = [0.6, 0.6, 0.5]
    med = 0.6
    w = class_weights_from_frequencies(COUNTS, "median_frequency", image_pixel_totals=totals)
    np.testing.assert_allclose(w, [med / f for f in freqs] + [0.0], rtol=1e-12)


def test_inverse_frequency_and_normalisation():
    w = class_weights_from_frequencies(COUNTS, "inverse_frequency", normalize=True)
    raw = np.array([1 / 0.6, 1 / 0.3, 1 / 0.1])
    np.testing.assert_allclose(w, list(raw / raw.mean()) + [0.0], rtol=1e-12)
    assert w[:3].mean() == pytest.approx(1.0)


def test_errors_name_the_allowed_methods():
    with pytest.raises(
        ValueError, match="allowed values: enet, median_frequency, inverse_frequency"
    ):
        class_weights_from_frequencies(COUNTS, "log")
    with pytest.raises(ValueError, match="no labelled pixel"):
        class_weights_from_frequencies([0, 0], "enet")
    with pytest.raises(ValueError, match="non-negative"):
        class_weights_from_frequencies([1, -1], "enet")
