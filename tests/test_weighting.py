"""Weight normalisation and loss coefficients."""

import numpy as np
import pytest

from keras_mwat import weighting

W = np.array([0.2, 0.5, 0.1, 0.9, 0.3], dtype="float32")


def test_mean_normalisation_has_mean_one():
    out = weighting.normalize(W, "mean").numpy()
    np.testing.assert_allclose(out.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out / out[0], W / W[0], rtol=1e-6)


def test_sum_normalisation_sums_to_one_and_none_is_identity():
    np.testing.assert_allclose(weighting.normalize(W, "sum").numpy().sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weighting.normalize(W, "none").numpy(), W)


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_coefficients_give_weighted_mean(mode):
    losses = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype="float32")
    c = weighting.loss_coefficients(W, mode).numpy()
    np.testing.assert_allclose((c * losses).sum(), (W * losses).sum() / W.sum(), rtol=1e-6)


def test_uniform_coefficients_are_the_plain_mean():
    c = weighting.loss_coefficients(np.ones(5, "float32"), "mean").numpy()
    np.testing.assert_allclose(c, np.full(5, 0.2), rtol=1e-7)
    c_none = weighting.loss_coefficients(W, "none").numpy()
    np.testing.assert_allclose(c_none, W / 5, rtol=1e-6)


def test_mask_excludes_samples():
    mask = np.array([1, 1, 0, 0, 1], dtype="float32")
    out = weighting.normalize(W, "mean", mask).numpy()
    assert out[2] == 0 and out[3] == 0
    np.testing.assert_allclose(out[mask == 1].mean(), 1.0, rtol=1e-6)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="weight_normalization"):
        weighting.normalize(W, "max")

