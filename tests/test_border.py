import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from skweight.weighting import border_weights


def reference_weights(instances, w0, sigma, w_bg=1.0, w_obj=1.0, pixels=None):
    """Brute force: distances from each background pixel to every object pixel."""
    out = np.where(instances > 0, w_obj, w_bg).astype(np.float64)
    labels = np.unique(instances[instances > 0])
    if len(labels) < 2:
        return out
    coords = [np.argwhere(instances == k) for k in labels]
    if pixels is None:
        pixels = np.argwhere(instances == 0)
    for r, c in pixels:
        if instances[r, c] != 0:
            continue
        d = sorted(np.hypot(xy[:, 0] - r, xy[:, 1] - c).min() for xy in coords)
        out[r, c] += w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
    return out


def random_instances(rng, shape, n_objects, radius=(1, 4), labels=None):
    """Disks at random positions, painted in turn (later ones cover earlier)."""
    image = np.zeros(shape, dtype=np.int64)
    rows, cols = np.indices(shape)
    labels = np.arange(1, n_objects + 1) if labels is None else labels
    for label in labels:
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        size = rng.uniform(*radius)
        image[(rows - r) ** 2 + (cols - c) ** 2 <= size**2] = label
    return image


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_hand_computed_values():
    instances = np.zeros((1, 9), dtype=np.int64)
    instances[0, 0], instances[0, 4] = 3, 9
    w = border_weights(instances, w0=10, sigma=2)
    # Pixel 2 is 2 from each object; pixel 6 is 2 from one and 6 from the other.
    assert w[0, 2] == pytest.approx(1 + 10 * np.exp(-16 / 8), rel=1e-15)
    assert w[0, 6] == pytest.approx(1 + 10 * np.exp(-64 / 8), rel=1e-15)
    assert w[0, 1] == pytest.approx(1 + 10 * np.exp(-16 / 8), rel=1e-15)
    assert w[0, 0] == 1.0 and w[0, 4] == 1.0
    diagonal = np.array([[1, 0], [0, 2]])
    # Each background pixel is 1 from both objects; the objects are sqrt(2) apart.
    np.testing.assert_allclose(border_weights(diagonal, w0=5, sigma=1),
                               [[1, 1 + 5 * np.exp(-2)], [1 + 5 * np.exp(-2), 1]],
                               rtol=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.permutation([1, 2, 5, 7, 7, 40, 1000])  # 7 is one object in two parts
    instances = random_instances(rng, (21, 26), len(labels), labels=labels)
    for w0, sigma in ((10.0, 5.0), (3.0, 1.5), (2.0, 40.0)):
        np.testing.assert_allclose(
            border_weights(instances, w0=w0, sigma=sigma),
            reference_weights(instances, w0, sigma), rtol=1e-13, atol=1e-16 * w0,
        )


def test_cutoff_error_is_below_1e_17_of_w0(rng):
    # sigma=1: objects more than ~9 pixels away are beyond the window.
    instances = random_instances(rng, (40, 40), 6, radius=(1, 2))
    w = border_weights(instances, w0=1e6, sigma=1.0)
    ref = reference_weights(instances, 1e6, 1.0)
    assert np.max(np.abs(w - ref)) <= 1e-17 * 1e6
    assert np.sum(ref - 1 > 1e-9) > 5  # there are border terms to get right


def test_fewer_than_two_objects_gives_class_weights_only(rng):
    one = np.zeros((12, 12), dtype=np.int64)
    one[2:4, 2:4] = 5
    one[8:10, 8:10] = 5  # two parts of one object are still one object
    cw = {0: 0.5, 1: 2.0}
    np.testing.assert_array_equal(border_weights(one, w0=10, sigma=3, class_weight=cw),
                                  np.where(one > 0, 2.0, 0.5))
    empty = np.zeros((5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(border_weights(empty, class_weight=cw), 0.5)
    full = np.full((3, 4), 2)
    np.testing.assert_array_equal(border_weights(full, class_weight=cw), 2.0)


def test_objects_get_class_weight_only_and_background_more(rng):
    instances = random_instances(rng, (30, 30), 8)
    w = border_weights(instances, w0=10, sigma=5, class_weight={0: 0.25, 1: 3.0})
    np.testing.assert_array_equal(w[instances > 0], 3.0)
    assert np.all(w[instances == 0] > 0.25)
    assert w.max() > 5.0  # a narrow gap somewhere
    np.testing.assert_array_equal(border_weights(instances, w0=0, class_weight={1: 3.0}),
                                  np.where(instances > 0, 3.0, 1.0))


def test_symmetries(rng):
    instances = random_instances(rng, (25, 31), 6)
    w = border_weights(instances, w0=7, sigma=4)
    np.testing.assert_allclose(border_weights(instances.T, w0=7, sigma=4), w.T, rtol=1e-14)
    np.testing.assert_allclose(border_weights(instances[::-1, ::-1], w0=7, sigma=4),
                               w[::-1, ::-1], rtol=1e-14)
    relabelled = np.array([0, 11, 3, 50, 2, 9, 4])[instances]
    np.testing.assert_array_equal(border_weights(relabelled, w0=7, sigma=4), w)


def test_stack_matches_single_images(rng):
    stack = np.stack([random_instances(rng, (16, 20), n) for n in (0, 1, 4)])
    w = border_weights(stack, w0=4, sigma=3, class_weight={0: 0.5})
    assert w.shape == (3, 16, 20) and w.dtype == np.float64
    for image, weight in zip(stack, w, strict=True):
        np.testing.assert_array_equal(
            border_weights(image, w0=4, sigma=3, class_weight={0: 0.5}), weight)


def test_balanced_class_weight_over_all_images(rng):
    stack = np.stack([random_instances(rng, (16, 20), 3) for _ in range(2)])
    foreground = (stack > 0).ravel().astype(int)
    bg, obj = compute_class_weight("balanced", classes=np.array([0, 1]), y=foreground)
    w = border_weights(stack, w0=0, class_weight="balanced")
    np.testing.assert_allclose(w, np.where(stack > 0, obj, bg), rtol=1e-15)
    # The balanced formula gives mean 1.
    assert np.sum(w) == pytest.approx(stack.size, rel=1e-14)
    w = border_weights(stack, w0=10, sigma=2, class_weight="balanced")
    np.testing.assert_allclose(w - np.where(stack > 0, obj, bg),
                               border_weights(stack, w0=10, sigma=2) - 1, atol=1e-14)
    np.testing.assert_array_equal(
        border_weights(np.zeros((4, 4), dtype=int), class_weight="balanced"), 1.0)


def test_real_scale_image_matches_brute_force_on_sampled_pixels(rng):
    # 512 x 512 with 125 disks, the size of skweight.datasets.load_nuclei().
    instances = random_instances(rng, (512, 512), 125, radius=(5, 12))
    w = border_weights(instances, w0=10, sigma=5)
    pixels = np.argwhere(instances == 0)
    pixels = pixels[rng.choice(len(pixels), 150, replace=False)]
    near = np.argwhere((w > 1.5) & (instances == 0))  # pixels in gaps
    pixels = np.concatenate([pixels, near[rng.choice(len(near), 150, replace=False)]])
    ref = reference_weights(instances, 10, 5, pixels=pixels)
    np.testing.assert_allclose(w[tuple(pixels.T)], ref[tuple(pixels.T)], rtol=1e-13,
                               atol=1e-16)
    assert np.all(np.isfinite(w)) and w.min() == 1.0 and w.max() <= 11.0


def test_input_is_not_modified_and_dtypes_agree(rng):
    instances = random_instances(rng, (12, 15), 4).astype(np.int32)
    copy = instances.copy()
    w = border_weights(instances)
    np.testing.assert_array_equal(instances, copy)
    np.testing.assert_array_equal(border_weights(instances.astype(np.uint8)), w)
    np.testing.assert_array_equal(border_weights(instances.tolist()), w)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"instances": np.zeros((4, 4))}, TypeError, "integer array.*float64"),
        ({"instances": np.zeros((4, 4), bool)}, TypeError, "scipy.ndimage.label"),
        ({"instances": np.zeros(4, int)}, ValueError, r"\(H, W\) or \(N, H, W\).*\(4,\)"),
        ({"instances": np.zeros((1, 1, 4, 4), int)}, ValueError, r"shape \(1, 1, 4, 4\)"),
        ({"instances": -np.eye(3, dtype=int)}, ValueError, "non-negative.*-1"),
        ({"w0": -1.0}, ValueError, "w0 must be a finite real number >= 0; got -1.0"),
        ({"w0": np.inf}, ValueError, "w0"),
        ({"sigma": 0}, ValueError, "sigma must be a finite real number > 0; got 0"),
        ({"class_weight": "auto"}, ValueError, "'balanced'.*'auto'"),
        ({"class_weight": [1.0, 2.0]}, TypeError, "dict.*list"),
        ({"class_weight": {2: 1.0}}, ValueError, "keys must be 0.*or 1.*got 2"),
        ({"class_weight": {True: 1.0}}, ValueError, "keys must be 0"),
        ({"class_weight": {1: -2.0}}, ValueError, r"class_weight\[1\] .*>= 0; got -2.0"),
    ],
)
def test_validation_errors(kwargs, error, match):
    kwargs = {"instances": np.eye(4, dtype=int), **kwargs}
    with pytest.raises(error, match=match):
        border_weights(**kwargs)


def test_torch_tensor_input(rng):
    torch = pytest.importorskip("torch")
    instances = random_instances(rng, (10, 12), 3)
    np.testing.assert_array_equal(border_weights(torch.from_numpy(instances)),
                                  border_weights(instances))
