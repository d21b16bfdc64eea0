"""Margins against an independent NumPy implementation."""

import numpy as np
import pytest

from keras_mwat import margins


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reference_margin(y, logits):
    p = softmax(logits.astype(np.float64))
    out = []
    for i, label in enumerate(y):
        others = [p[i, j] for j in range(p.shape[1]) if j != label]
        out.append(p[i, label] - max(others))
    return np.array(out)


CASES = [
    # true class ranked first, second, third and last; near-saturated probabilities
    (np.array([0, 1, 2, 3]), np.array([[5.0, 1.0, 0.0, -1.0],
                                       [3.0, 2.0, 0.0, 0.0],
                                       [4.0, 3.0, 1.0, 0.0],
                                       [0.0, 1.0, 2.0, -3.0]])),
    (np.array([1, 0]), np.array([[-30.0, 30.0, 0.0, 0.0], [-30.0, 30.0, 0.0, 0.0]])),
    (np.random.default_rng(0).integers(0, 10, 64),
     np.random.default_rng(1).normal(scale=4.0, size=(64, 10))),
]


@pytest.mark.parametrize("y, logits", CASES)
def test_probability_margin_matches_definition_2_2(y, logits):
    got = margins.probability_margin(y, logits.astype("float32")).numpy()
    np.testing.assert_allclose(got, reference_margin(y, logits), atol=1e-6)


@pytest.mark.parametrize("y, logits", CASES)
def test_multiclass_margin_is_the_papers_k_vector(y, logits):
    k = logits.shape[1]
    got = margins.multiclass_margin(y, logits.astype("float32")).numpy()
    assert got.shape == (len(y), k)  # K entries, nothing appended (Definition 3)
    p = softmax(logits)
    expected = p[np.arange(len(y)), y][:, None] - p
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.all(got >= -1.0) and np.all(got <= 1.0)
    # The entry of the true class is exactly 0, and the minimum over the others is Def. 2.2.
    np.testing.assert_array_equal(got[np.arange(len(y)), y], 0.0)
    masked = np.where(np.eye(k)[y] == 1, np.inf, got)
    np.testing.assert_allclose(masked.min(axis=1), reference_margin(y, logits), atol=1e-6)


@pytest.mark.parametrize("y, logits", CASES)
def test_multiclass_onehot_margin_appends_the_class(y, logits):
    k = logits.shape[1]
    got = margins.multiclass_onehot_margin(y, logits.astype("float32")).numpy()
    assert got.shape == (len(y), 2 * k)
    np.testing.assert_array_equal(got[:, :k],
                                  margins.multiclass_margin(y, logits.astype("float32")))
    np.testing.assert_array_equal(got[:, k:], np.eye(k)[y])


@pytest.mark.parametrize("y, logits", CASES)
def test_sorted_and_logit_margins(y, logits):
    k = logits.shape[1]
    sorted_ = margins.sorted_margin(y, logits.astype("float32")).numpy()
    assert sorted_.shape == (len(y), k - 1)
    assert np.all(np.diff(sorted_, axis=1) >= -1e-7)
    np.testing.assert_allclose(sorted_[:, 0], reference_margin(y, logits), atol=1e-6)
    logit = margins.logit_margin(y, logits.astype("float32")).numpy()
    expected = logits[np.arange(len(y)), y][:, None] - logits
    np.testing.assert_allclose(logit[:, :k], expected, rtol=1e-5, atol=1e-5)


def test_margin_features_dispatch_and_dims():
    y, logits = CASES[0]
    for kind in margins.MARGIN_KINDS:
        features = margins.margin_features(kind, y, logits.astype("float32"))
        assert features.shape == (len(y), margins.feature_dim(kind, logits.shape[1]))
    with pytest.raises(ValueError, match="margin"):
        margins.margin_features("hinge", y, logits)


def test_margins_invariant_to_logit_shift():
    y, logits = CASES[2]
    a = margins.multiclass_margin(y, logits.astype("float32")).numpy()
    b = margins.multiclass_margin(y, (logits + 7.0).astype("float32")).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
