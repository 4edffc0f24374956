import numpy as np
import pytest
from scipy import stats

import skweight._density as density_module
from skweight.weighting import density_weights


def reference_weights(y, alpha, h, sample_weight=None):
    """Brute-force ``(p_j / mean p) ** -alpha`` from the formulas, no clipping."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    mean = np.average(y, axis=0, weights=s)
    std = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=s))
    z = (y - mean) / std
    p = np.array([
        sum(s[i] * np.exp(-np.sum((z[j] - z[i]) ** 2) / (2 * h * h)) for i in range(len(z)))
        for j in range(len(z))
    ])
    u = p ** -alpha
    return u / np.average(u, weights=s)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(50,), (50, 3)])
def test_alpha_zero_gives_exactly_ones(rng, shape):
    y = rng.lognormal(size=shape)
    sw = rng.random(50)
    for kwargs in ({}, {"sample_weight": sw}, {"clip": (0.5, 2.0)}):
        w = density_weights(y, alpha=0, **kwargs)
        assert w.dtype == np.float64
        np.testing.assert_array_equal(w, np.ones(50))


def test_constant_targets_give_ones(rng):
    np.testing.assert_array_equal(density_weights(np.full(7, 3.5), alpha=1), np.ones(7))
    np.testing.assert_array_equal(density_weights(np.full((7, 2), -1e30)), np.ones(7))


def test_constant_column_is_ignored(rng):
    y = rng.normal(size=40)
    both = np.column_stack([y, np.full(40, 2.0)])
    np.testing.assert_allclose(
        density_weights(both, alpha=1, bandwidth="scott"),
        density_weights(y, alpha=1, bandwidth="scott"),
        rtol=1e-13,
    )


@pytest.mark.parametrize("alpha, h", [(1.0, 0.3), (0.5, 1.2), (2.0, 0.05)])
def test_matches_brute_force_single_target(rng, alpha, h):
    y = rng.gamma(2.0, size=60)
    np.testing.assert_allclose(
        density_weights(y, alpha=alpha, bandwidth=h), reference_weights(y, alpha, h),
        rtol=1e-12,
    )


def test_matches_brute_force_multi_target_and_sample_weight(rng):
    y = rng.normal(size=(45, 3)) * [1.0, 10.0, 0.01]
    y[:, 1] += y[:, 0]  # correlated targets still get one joint density
    sw = rng.random(45)
    sw[:5] = 0.0
    n_eff = sw.sum() ** 2 / np.dot(sw, sw)
    h = n_eff ** (-1 / 7)  # Scott's rule for 3 targets
    w = density_weights(y, alpha=0.7, sample_weight=sw)
    np.testing.assert_allclose(w, reference_weights(y, 0.7, h, sw), rtol=1e-12)
    assert np.average(w, weights=sw) == pytest.approx(1.0, rel=1e-14)


def test_density_is_scipys_gaussian_kde(rng):
    y = rng.lognormal(size=80)
    w = density_weights(y, alpha=1.0, bandwidth="silverman")
    # scipy's bandwidth factor multiplies the ddof=1 standard deviation, ours
    # the ddof=0 one; its density includes each point itself, as ours does.
    factor = (80 * 3 / 4) ** (-1 / 5) * np.std(y) / np.std(y, ddof=1)
    p = stats.gaussian_kde(y, bw_method=factor)(y)
    np.testing.assert_allclose(w, (1 / p) / np.mean(1 / p), rtol=1e-11)


def test_bandwidth_rules():
    y = np.arange(30.0) ** 2
    np.testing.assert_allclose(
        density_weights(y, alpha=1, bandwidth="scott"),
        density_weights(y, alpha=1, bandwidth=30 ** -0.2), rtol=1e-14,
    )
    two = np.column_stack([y, np.sqrt(y)])
    np.testing.assert_allclose(
        density_weights(two, alpha=1, bandwidth="silverman"),
        density_weights(two, alpha=1, bandwidth=30 ** (-1 / 6)),
        rtol=1e-14,
    )


def test_same_weights_in_any_unit_and_offset(rng):
    y = rng.lognormal(size=(60, 2))
    w = density_weights(y, alpha=1.0)
    for scale in (1e-20, 1e-200, 1e200, np.array([1e-20, 1e200])):
        np.testing.assert_allclose(density_weights(y * scale, alpha=1.0), w, rtol=1e-12)
    np.testing.assert_allclose(density_weights(y + 1e6, alpha=1.0), w, rtol=1e-8)
    np.testing.assert_allclose(density_weights(-y, alpha=1.0), w, rtol=1e-12)


def test_rare_targets_weigh_more_and_alpha_composes(rng):
    y = np.sort(rng.normal(size=200))
    w = density_weights(y, alpha=1.0)
    half = density_weights(y, alpha=0.5)
    assert w[0] > 5 * w[100] and w[-1] > 5 * w[100]
    assert half[0] / half[100] == pytest.approx(np.sqrt(w[0] / w[100]), rel=1e-12)
    np.testing.assert_allclose(w, half**2 / np.mean(half**2), rtol=1e-12)


def test_alpha_one_flattens_the_target_distribution(rng):
    y = rng.normal(size=3000)
    w = density_weights(y, alpha=1.0)
    edges = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    plain = np.histogram(y, edges)[0] / len(y)
    weighted = np.histogram(y, edges, weights=w)[0] / w.sum()
    # Unweighted, the outer unit bins hold 2.5 times less than the inner ones.
    assert plain[1] / plain[0] > 2.3 and plain[2] / plain[3] > 2.3
    # With inverse-density weights each unit bin holds about the same mass.
    np.testing.assert_allclose(weighted / weighted.mean(), 1.0, atol=0.05)


def test_clip_bounds_and_mean_are_exact(rng):
    y = rng.lognormal(sigma=1.5, size=300)
    free = density_weights(y, alpha=1.0)
    assert free.max() > 40 and free.min() < 0.2
    w = density_weights(y, alpha=1.0, clip=(0.7, 3.0))
    assert w.mean() == pytest.approx(1.0, rel=1e-14)
    assert w.min() == 0.7 and w.max() == 3.0
    assert np.sum(w == 3.0) > 5 and np.sum(w == 0.7) > 5
    inside = (w > 0.7) & (w < 3.0)
    assert np.sum(inside) > 5
    ratio = w[inside] / free[inside]  # one common scale between the bounds
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-13)
    # Samples at a bound are exactly those whose scaled free weight crosses it.
    np.testing.assert_array_equal(w == 3.0, free * ratio[0] >= 3.0)
    np.testing.assert_array_equal(w == 0.7, free * ratio[0] <= 0.7)


def test_clip_one_sided_and_degenerate(rng):
    y = rng.lognormal(size=100)
    upper_only = density_weights(y, alpha=1.0, clip=(None, 2.0))
    assert upper_only.max() == 2.0 and upper_only.mean() == pytest.approx(1.0, rel=1e-14)
    lower_only = density_weights(y, alpha=1.0, clip=(0.9, None))
    assert lower_only.min() == 0.9 and lower_only.mean() == pytest.approx(1.0, rel=1e-14)
    np.testing.assert_allclose(density_weights(y, alpha=1.0, clip=(1.0, 5.0)), 1.0)
    np.testing.assert_allclose(density_weights(y, alpha=1.0, clip=(0.0, 1.0)), 1.0)
    np.testing.assert_array_equal(
        density_weights(y, clip=(None, np.inf)), density_weights(y)
    )


@pytest.mark.parametrize("clip", [None, (0.3, 2.5)])
def test_integer_sample_weight_is_repetition(rng, clip):
    y = rng.normal(size=(30, 2))
    counts = rng.integers(0, 4, size=30)
    counts[0] = 0
    w = density_weights(y, alpha=1.0, bandwidth=0.4, clip=clip, sample_weight=counts)
    repeated = density_weights(np.repeat(y, counts, axis=0), alpha=1.0, bandwidth=0.4,
                               clip=clip)
    np.testing.assert_allclose(np.repeat(w, counts), repeated, rtol=1e-12)
    assert np.average(w, weights=counts) == pytest.approx(1.0, rel=1e-14)


def test_sample_weight_scale_does_not_matter(rng):
    y = rng.lognormal(size=50)
    sw = rng.random(50)
    w = density_weights(y, alpha=1.0, sample_weight=sw)
    np.testing.assert_allclose(density_weights(y, alpha=1.0, sample_weight=sw * 1e-100),
                               w, rtol=1e-13)
    # The importance weights shape the density: heavy samples weigh less.
    sw2 = np.ones(50)
    sw2[np.argmax(y)] = 20.0
    assert (density_weights(y, alpha=1.0, sample_weight=sw2)[np.argmax(y)]
            < density_weights(y, alpha=1.0)[np.argmax(y)] / 2)


def test_far_zero_weight_sample_needs_an_upper_clip():
    y = np.array([0.0, 0.1, 0.2, 0.3, 1e4])
    sw = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"indices \[4\].*finite upper bound"):
        density_weights(y, alpha=1.0, sample_weight=sw)
    w = density_weights(y, alpha=1.0, sample_weight=sw, clip=(None, 10.0))
    assert w[4] == 10.0
    assert np.mean(w[:4]) == pytest.approx(1.0, rel=1e-14)


def test_binned_density_matches_exact(rng, monkeypatch):
    y = rng.lognormal(size=3000)
    sw = rng.random(3000)
    exact = density_weights(y, alpha=1.0, sample_weight=sw, clip=(0.2, 5.0))
    monkeypatch.setattr(density_module, "EXACT_MAX_SAMPLES", 100)
    binned = density_weights(y, alpha=1.0, sample_weight=sw, clip=(0.2, 5.0))
    np.testing.assert_allclose(binned, exact, rtol=2e-5)
    assert np.average(binned, weights=sw) == pytest.approx(1.0, rel=1e-14)
    # Several targets always take the exact sum.
    y2 = rng.normal(size=(300, 2))
    np.testing.assert_allclose(density_weights(y2, alpha=1.0),
                               reference_weights(y2, 1.0, 300 ** (-1 / 6)), rtol=1e-12)


def test_large_single_target_is_fast_and_memory_bounded(rng):
    # 200000 samples: the exact sum would take minutes; the grid, milliseconds.
    y = rng.standard_t(df=3, size=200_000)
    w = density_weights(y, alpha=1.0)
    assert w.shape == (200_000,) and np.all(np.isfinite(w)) and np.all(w > 0)
    assert w.mean() == pytest.approx(1.0, rel=1e-12)
    assert w[np.argmax(np.abs(y))] > 100 * w[np.argmin(np.abs(y))]


def test_inputs_are_not_modified_and_forms_agree(rng):
    y = rng.normal(size=20)
    sw = rng.random(20)
    y_copy, sw_copy = y.copy(), sw.copy()
    w = density_weights(y, sample_weight=sw)
    np.testing.assert_array_equal(y, y_copy)
    np.testing.assert_array_equal(sw, sw_copy)
    np.testing.assert_array_equal(density_weights(y[:, None], sample_weight=sw), w)
    np.testing.assert_array_equal(density_weights(list(y), sample_weight=list(sw)), w)
    ints = np.array([1, 1, 1, 2, 2, 5])
    np.testing.assert_allclose(density_weights(ints), density_weights(ints.astype(float)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": [1.0, np.nan, 2.0]}, ValueError, "NaN or infinity"),
        ({"y": [1.0, np.inf]}, ValueError, "NaN or infinity"),
        ({"y": np.zeros((3, 2, 2))}, ValueError, r"shape \(3, 2, 2\)"),
        ({"y": [1.0]}, ValueError, "at least 2 samples"),
        ({"y": np.zeros((4, 0))}, ValueError, "at least 2 samples"),
        ({"y": ["a", "b"]}, TypeError, "real numbers"),
        ({"y": [True, False]}, TypeError, "real numbers"),
        ({"alpha": -0.5}, ValueError, "alpha must be a finite real number >= 0; got -0.5"),
        ({"alpha": np.nan}, ValueError, "alpha"),
        ({"bandwidth": 0.0}, ValueError, "bandwidth must be a finite real number > 0"),
        ({"bandwidth": "normal"}, ValueError, "'scott', 'silverman' or a float > 0"),
        ({"y": [0.0] * 9 + [1.0], "bandwidth": 1e-308}, ValueError, "too extreme"),
        ({"clip": (1.5, 3.0)}, ValueError, r"clip\[0\] \(lower\) .* in \[0, 1\]; got 1.5"),
        ({"clip": (0.1, 0.5)}, ValueError, r"clip\[1\] \(upper\) .* >= 1; got 0.5"),
        ({"clip": (-1, 2)}, ValueError, r"clip\[0\]"),
        ({"clip": 3.0}, ValueError, "pair"),
        ({"clip": (0.1, 2.0, 3.0)}, ValueError, "pair"),
        ({"clip": "ab"}, ValueError, "pair"),
        ({"sample_weight": [1.0, -1.0, 1.0]}, ValueError, "negative"),
        ({"sample_weight": [1.0, 1.0]}, ValueError, r"shape == \(2,\)"),
        ({"sample_weight": [0.0, 0.0, 0.0]}, ValueError, "only zero weights"),
    ],
)
def test_validation_errors(kwargs, error, match):
    kwargs = {"y": [0.0, 1.0, 3.0], **kwargs}
    with pytest.raises(error, match=match):
        density_weights(**kwargs)


def test_torch_tensor_input(rng):
    torch = pytest.importorskip("torch")
    y = rng.normal(size=(15, 2))
    np.testing.assert_array_equal(density_weights(torch.from_numpy(y)), density_weights(y))
