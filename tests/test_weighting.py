import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight as sk_compute_class_weight

from skweight.weighting import (
    ESS_WARN_FRACTION,
    check_sample_weight,
    compute_class_weight,
    effective_sample_size,
    normalize_weights,
    warn_if_small_ess,
)


def test_check_sample_weight_returns_float64_copy():
    w = np.array([1, 2, 3], dtype=np.int32)
    out = check_sample_weight(w, 3)
    assert out.dtype == np.float64
    out[0] = 100
    assert w[0] == 1


def test_check_sample_weight_accepts_lists_scalars_and_per_element():
    np.testing.assert_array_equal(check_sample_weight([1, 0.5], 2), [1.0, 0.5])
    np.testing.assert_array_equal(check_sample_weight(2.0, 3), [2.0, 2.0, 2.0])
    w = check_sample_weight(np.ones((2, 4, 4)), 2, extra_shape=(4, 4))
    assert w.shape == (2, 4, 4)


@pytest.mark.parametrize(
    "w, match",
    [
        ([1.0, -1.0, 1.0], "negative"),
        ([1.0, np.nan, 1.0], "NaN or infinity"),
        ([1.0, np.inf, 1.0], "NaN or infinity"),
        ([0.0, 0.0, 0.0], "only zero weights"),
        ([1.0, 1.0], r"shape == \(2,\), expected \(3,\)"),
        (["a", "b", "c"], "non-negative numbers"),
    ],
)
def test_check_sample_weight_errors(w, match):
    with pytest.raises((ValueError, TypeError), match=match):
        check_sample_weight(w, 3)


def test_balanced_matches_sklearn_without_sample_weight():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    classes = np.array(["a", "b", "c"])
    ours = compute_class_weight("balanced", y, classes)
    ref = sk_compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(ours, ref)


def test_balanced_uses_sample_weights_as_counts():
    # Integer sample weights must act like repeated samples.
    y = np.array([0, 0, 1, 2])
    sw = np.array([1.0, 3.0, 2.0, 1.0])
    repeated = np.repeat(y, sw.astype(int))
    ours = compute_class_weight("balanced", y, np.arange(3), sw)
    ref = sk_compute_class_weight("balanced", classes=np.arange(3), y=repeated)
    np.testing.assert_allclose(ours, ref)


def test_balanced_per_pixel_labels_with_per_image_weights():
    y = np.array([[[0, 0], [0, 1]], [[1, 1], [1, 1]]])  # (2, 2, 2)
    sw = np.array([1.0, 0.5])
    ours = compute_class_weight("balanced", y, np.arange(2), sw)
    counts = np.array([3.0, 1.0 + 4 * 0.5])
    np.testing.assert_allclose(ours, counts.sum() / (2 * counts))


def test_dict_class_weight_any_label_type():
    classes = np.array(["cat", "dog", "eel"])
    w = compute_class_weight({"dog": 3.0}, np.array([0, 1, 2]), classes)
    np.testing.assert_array_equal(w, [1.0, 3.0, 1.0])
    classes = np.array([2, 7, 11])
    w = compute_class_weight({np.int64(11): 0.5, 7: 2}, np.array([0, 1, 2]), classes)
    np.testing.assert_array_equal(w, [1.0, 2.0, 0.5])


@pytest.mark.parametrize(
    "cw, exc, match",
    [
        ("balancd", ValueError, "'balanced'"),
        ({"cow": 1.0}, ValueError, r"labels \['cow'\] that are not in the classes"),
        ({"cat": -1.0}, ValueError, "finite number >= 0"),
        ({"cat": np.nan}, ValueError, "finite number >= 0"),
        ({"cat": 0, "dog": 0, "eel": 0}, ValueError, "weight of 0"),
        ([1.0, 2.0, 3.0], TypeError, "dict"),
    ],
)
def test_class_weight_errors(cw, exc, match):
    with pytest.raises(exc, match=match):
        compute_class_weight(cw, np.array([0, 1, 2]), np.array(["cat", "dog", "eel"]))


def test_normalize_weights_tiny_and_huge_scales():
    rng = np.random.default_rng(0)
    w = 10.0 ** rng.uniform(-100, 0, size=1000)
    ref = normalize_weights(w)
    assert np.isclose(ref.mean(), 1.0)
    for scale in (1e-200, 1e-100, 1e200):
        np.testing.assert_allclose(normalize_weights(w * scale), ref, rtol=1e-12)
    # The float32 cast keeps the heavy weights exactly where they matter.
    assert np.all(np.isfinite(ref.astype(np.float32)))
    assert ref.astype(np.float32).max() > 1


def test_effective_sample_size_and_warning():
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)
    w = np.r_[1.0, np.full(999, 1e-60)]
    with pytest.warns(UserWarning, match="effective sample size"):
        ess = warn_if_small_ess(w)
    assert ess < ESS_WARN_FRACTION * w.size
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_small_ess(np.linspace(0.5, 1.5, 100))
