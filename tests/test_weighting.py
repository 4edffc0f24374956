import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight as sk_compute_class_weight

from skweight.weighting import (
    compute_class_weight,
    effective_number_weights,
    effective_sample_size,
)


def test_balanced_matches_sklearn_without_sample_weight():
    y = np.array(["a", "a", "a", "a", "b", "b", "c"])
    classes = np.array(["a", "b", "c"])
    ours = compute_class_weight("balanced", classes=classes, y=y)
    ref = sk_compute_class_weight("balanced", classes=classes, y=y)
    np.testing.assert_allclose(ours, ref)


def test_balanced_uses_sample_weights_as_counts():
    # Integer sample weights must act like repeated samples.
    y = np.array([0, 0, 1, 2])
    sw = np.array([1.0, 3.0, 2.0, 1.0])
    repeated = np.repeat(y, sw.astype(int))
    ours = compute_class_weight("balanced", classes=np.arange(3), y=y, sample_weight=sw)
    ref = sk_compute_class_weight("balanced", classes=np.arange(3), y=repeated)
    np.testing.assert_allclose(ours, ref)


def test_balanced_per_pixel_labels_with_per_image_weights():
    y = np.array([[[0, 0], [0, 1]], [[1, 1], [1, 1]]])  # (2, 2, 2)
    sw = np.array([1.0, 0.5])
    ours = compute_class_weight("balanced", classes=np.arange(2), y=y, sample_weight=sw)
    counts = np.array([3.0, 1.0 + 4 * 0.5])
    np.testing.assert_allclose(ours, counts.sum() / (2 * counts))


def test_compute_class_weight_is_keyword_only_like_sklearn():
    y = np.array([0, 0, 1])
    with pytest.raises(TypeError, match="positional"):
        compute_class_weight("balanced", np.arange(2), y)
    with pytest.raises(ValueError, match=r"labels \[5\].*not among"):
        compute_class_weight("balanced", classes=np.arange(2), y=np.array([0, 5]))
    np.testing.assert_array_equal(compute_class_weight(None, classes=[0, 1], y=y), [1, 1])


def test_dict_class_weight_any_label_type():
    classes = np.array(["cat", "dog", "eel"])
    w = compute_class_weight({"dog": 3.0}, classes=classes, y=classes)
    np.testing.assert_array_equal(w, [1.0, 3.0, 1.0])
    classes = np.array([2, 7, 11])
    w = compute_class_weight({np.int64(11): 0.5, 7: 2}, classes=classes, y=classes)
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
        classes = np.array(["cat", "dog", "eel"])
        compute_class_weight(cw, classes=classes, y=classes)


def test_effective_sample_size():
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)
    # any scale, and rows served several times count that many times
    w = np.array([1.0, 2.0, 0.5])
    assert effective_sample_size(w * 1e-300) == pytest.approx(effective_sample_size(w))
    assert effective_sample_size(w, counts=[2, 1, 1]) == pytest.approx(
        effective_sample_size([1.0, 1.0, 2.0, 0.5])
    )


# ----------------------------------------------------- effective-number weights


def effective_reference(counts, beta):
    """Cui et al.'s weights written out: (1 - beta) / (1 - beta**n), sum = C."""
    counts = np.asarray(counts, dtype=np.float64)
    w = (1 - beta) / (1 - beta**counts)
    return w * len(counts) / w.sum()


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99, 0.999, 0.9999])
def test_effective_number_weights_formula(beta):
    y = np.repeat([3, 7, 11], [500, 40, 3])
    got = effective_number_weights(y, beta=beta)
    assert list(got) == [3, 7, 11]
    assert all(type(k) is int and type(v) is float for k, v in got.items())
    np.testing.assert_allclose(
        list(got.values()), effective_reference([500, 40, 3], beta), rtol=1e-12
    )
    assert sum(got.values()) == pytest.approx(3.0, rel=1e-14)
    assert got[11] > got[7] > got[3]


def test_effective_number_weights_hand_computed():
    # beta = 0.5: E = (1 - 0.5**n) / 0.5 = 2 - 2**(1-n): n=1 -> 1, n=2 -> 1.5
    got = effective_number_weights([0, 1, 1], beta=0.5)
    inverse = np.array([1.0, 1 / 1.5])
    np.testing.assert_allclose(list(got.values()), 2 * inverse / inverse.sum())
    assert got == pytest.approx({0: 1.2, 1: 0.8})


def test_effective_number_weights_beta_limits():
    y = np.repeat(["a", "b", "c", "d"], [1000, 100, 10, 1])
    assert effective_number_weights(y, beta=0.0) == {"a": 1.0, "b": 1.0, "c": 1.0,
                                                     "d": 1.0}
    inverse = 1 / np.array([1000.0, 100.0, 10.0, 1.0])
    inverse_frequency = 4 * inverse / inverse.sum()
    previous = np.inf
    for beta in (1 - 1e-4, 1 - 1e-7, 1 - 1e-10, 1 - 1e-13):
        got = np.array(list(effective_number_weights(y, beta=beta).values()))
        error = np.max(np.abs(got / inverse_frequency - 1))
        assert error < previous  # converges as beta -> 1
        previous = error
    assert previous < 1e-9
    # beta just above 0 is barely different from equal weights
    got = list(effective_number_weights(y, beta=1e-6).values())
    np.testing.assert_allclose(got, 1.0, atol=1e-5)


def exact_effective_weights(counts, beta):
    """The weights in 60-digit decimal arithmetic, from the floats' exact values."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        b = Decimal(beta)
        inverse = np.array([float(1 / (1 - b ** Decimal(n))) for n in counts])
    return len(counts) * inverse / inverse.sum()


@pytest.mark.parametrize(
    ("beta", "counts"),
    [
        (1 - 1e-12, [0.3, 2.5, 40.1]),  # |n log beta| < 1e-8: the series
        (1 - 1e-10, [99.0, 101.0, 0.7]),  # either side of the switch to expm1
        (0.999, [0.01, 3.0, 2000.0]),
    ],
)
def test_effective_number_weights_are_exact(beta, counts):
    y = np.arange(len(counts))  # one sample per class, weighted counts
    got = effective_number_weights(y, beta=beta, sample_weight=counts)
    exact = exact_effective_weights(counts, beta)
    np.testing.assert_allclose(list(got.values()), exact, rtol=1e-14)


def test_effective_number_weights_are_stable_for_large_and_small_counts():
    beta = 1 - 1e-12
    counts = np.array([0.3, 2.5, 40.1])
    exact = exact_effective_weights(counts, beta)
    # 1 - beta**n written out cancels: about 5 digits are left
    naive = effective_reference(counts, beta)
    assert np.max(np.abs(naive / exact - 1)) > 1e-6
    y = np.repeat([0, 1, 2], [3, 50, 7000])
    # huge counts saturate (beta**n = 0), tiny weighted counts stay finite
    sw = np.r_[np.full(3, 1e300), np.full(50, 1e-100), np.ones(7000)]
    got = effective_number_weights(y, beta=0.999, sample_weight=sw)
    values = np.array(list(got.values()))
    assert np.all(np.isfinite(values)) and sum(values) == pytest.approx(3.0)
    # class 1's mass is 5e-99: E = 5e-99 * -log(beta) / (1 - beta), the rest ~0
    assert values[1] == pytest.approx(3.0, rel=1e-12)


def test_effective_number_weights_sample_weight_counts_fractional_samples():
    y = np.array(["x", "y", "y", "z", "x", "y"])
    sw = np.array([2, 1, 3, 0, 1, 4])
    repeated = np.repeat(y, sw)  # integer weight k = the sample k times
    got = effective_number_weights(y, beta=0.9, sample_weight=sw)
    expected = effective_number_weights(repeated, beta=0.9)
    assert list(got) == ["x", "y", "z"]
    # z has weight 0 and is absent from the repetition: weight 0, no share
    assert got["z"] == 0.0
    assert got["x"] == pytest.approx(expected["x"], rel=1e-14)
    assert got["y"] == pytest.approx(expected["y"], rel=1e-14)
    assert got["x"] + got["y"] == pytest.approx(2.0, rel=1e-14)
    # fractional weights are fractional counts: n = (1.5, 0.25)
    got = effective_number_weights([0, 1, 0], beta=0.8, sample_weight=[1.0, 0.25, 0.5])
    inverse = (1 - 0.8) / (1 - 0.8 ** np.array([1.5, 0.25]))
    np.testing.assert_allclose(list(got.values()), 2 * inverse / inverse.sum())
    # unlike the estimators' weights, their scale matters (counts saturate)
    scaled = effective_number_weights([0, 1, 0], beta=0.8,
                                      sample_weight=[10.0, 2.5, 5.0])
    assert scaled[1] < got[1]


def test_effective_number_weights_masks_count_pixels():
    masks = np.array([[[0, 0], [0, 1]], [[1, 1], [2, 2]]])  # (2, 2, 2)
    got = effective_number_weights(masks, beta=0.7)
    np.testing.assert_allclose(list(got.values()), effective_reference([3, 3, 2], 0.7))
    # per-image weights repeat over the pixels: counts (3, 1 + 2*2, 2*2)
    got = effective_number_weights(masks, beta=0.7, sample_weight=[1.0, 2.0])
    np.testing.assert_allclose(list(got.values()), effective_reference([3, 5, 4], 0.7))
    per_pixel = np.ones(masks.shape)
    per_pixel[1] = 2.0
    again = effective_number_weights(masks, beta=0.7, sample_weight=per_pixel)
    assert again == pytest.approx(got)


def test_effective_number_weights_feed_class_weight():
    y = np.array(["cat"] * 30 + ["dog"] * 5 + ["eel"] * 2)
    weights = effective_number_weights(y)
    folded = compute_class_weight(weights, classes=np.unique(y), y=y)
    np.testing.assert_allclose(folded, [weights["cat"], weights["dog"], weights["eel"]])
    assert sum(weights.values()) == pytest.approx(3.0)


def test_effective_number_weights_leave_inputs_alone():
    y = np.array([1, 0, 1, 1])
    sw = np.array([0.5, 2.0, 1.0, 1.0])
    y0, sw0 = y.copy(), sw.copy()
    effective_number_weights(y, sample_weight=sw)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(sw, sw0)


@pytest.mark.parametrize("beta", [1.0, 1.5, -0.1, float("nan"), float("inf"), "0.9", True])
def test_effective_number_weights_bad_beta_raises(beta):
    with pytest.raises(ValueError, match=r"beta must be a finite real number in \[0, 1\)"):
        effective_number_weights([0, 1], beta=beta)


@pytest.mark.parametrize(
    ("y", "sw", "match"),
    [
        ([], None, r"y must be a non-empty array of labels.*shape \(0,\)"),
        (3, None, r"y must be a non-empty array of labels.*shape \(\)"),
        ([0, 1, 1], [1.0, 1.0], r"sample_weight.shape == \(2,\), expected \(3,\)"),
        ([0, 1, 1], [1.0, -1.0, 1.0], "negative"),
        ([0, 1, 1], [0.0, 0.0, 0.0], "only zero weights"),
        ([0, 1, 1], [1.0, np.nan, 1.0], "NaN or infinity"),
    ],
)
def test_effective_number_weights_errors(y, sw, match):
    with pytest.raises(ValueError, match=match):
        effective_number_weights(y, sample_weight=sw)


def test_class_sums_by_chunks_of_rows_equal_bincount(monkeypatch):
    from skweight import _class_weight
    from skweight._class_weight import class_sums

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (30, 8, 8)).astype(np.uint8)
    per_image = rng.random(30)
    per_pixel = rng.random((30, 8, 8))
    monkeypatch.setattr(_class_weight, "_SUM_CHUNK", 100)  # 1 row a chunk
    np.testing.assert_array_equal(class_sums(codes, 5),
                                  np.bincount(codes.ravel(), minlength=5))
    np.testing.assert_allclose(
        class_sums(codes, 5, per_image),
        np.bincount(codes.ravel(), np.repeat(per_image, 64), minlength=5), rtol=1e-12)
    np.testing.assert_allclose(
        class_sums(codes, 5, per_pixel),
        np.bincount(codes.ravel(), per_pixel.ravel(), minlength=5), rtol=1e-12)
    assert class_sums(codes[:0], 3).tolist() == [0.0, 0.0, 0.0]
