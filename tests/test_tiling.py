"""Tiled prediction of the segmenter (``tile_shape``, ``tile_overlap``, ``tile_blend``).

Networks whose logits are their input make the whole-image answer known
pixel by pixel, so that tiled prediction must reproduce it whatever the
placement, blend and padding; a network whose logits depend on the whole
tile makes overlapping tiles disagree, which shows where ``class_prior`` is
applied. The geometry (tile positions, blend maps, reflection) is tested
as plain functions.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from skweight import CNNSegmenter
from skweight._fit.tiling import blend_map, reflect_indices, tile_starts
from skweight.datasets import make_disk_scenes

OVERLAPS = [0.0, 0.25, 0.5, 0.75]
BLENDS = ["gaussian", "constant"]


class LogitsAreInput(nn.Module):
    """Return the input as logits: softmax of channel k is the class-k probability.

    A 1x1 convolution set to the identity, so that the network has the
    layer a head is looked for in.
    """

    def __init__(self, n_classes=3, ndim=2):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        self.head = conv(n_classes, n_classes, 1, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(n_classes).reshape(
                n_classes, n_classes, *(1,) * ndim))

    def forward(self, x):
        return self.head(x)


class TileMeanShift(LogitsAreInput):
    """Logits that depend on the whole tile (its mean), so overlapping tiles disagree."""

    def forward(self, x):
        axes = tuple(range(2, x.ndim))
        return self.head(x) + 4 * x.mean(dim=axes, keepdim=True)


def fitted(module, n_classes=3, spatial=(8, 8), **params):
    """A segmenter of ``module`` fitted (no epochs) on images of ``n_classes`` channels."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, n_classes, *spatial)).astype(np.float32)
    y = np.arange(2 * math.prod(spatial)).reshape(2, *spatial) % n_classes
    return CNNSegmenter(module, criterion="cross_entropy", max_epochs=0,
                        random_state=0, module__n_classes=n_classes,
                        module__ndim=len(spatial), **params).fit(X, y)


def images(shape, seed=1):
    return np.random.default_rng(seed).normal(scale=2.0, size=shape).astype(np.float32)


# -- geometry -----------------------------------------------------------------------


def nnunet_starts(size, tile, overlap):
    """nnU-Net's rule, written out: n steps evenly spread over [0, size - tile].

    In exact arithmetic (``1 - 0.9`` is not 0.1 in floats, which would cost
    one more tile where the ratio is a whole number). With a step under a
    pixel nnU-Net repeats positions; here n is capped so that they stay
    distinct.
    """
    if size <= tile:
        return [0]
    n = math.ceil((size - tile) / (tile * (1 - Fraction(str(overlap))))) + 1
    n = min(n, size - tile + 1)
    spacing = (size - tile) / (n - 1)
    return [int(np.round(k * spacing)) for k in range(n)]


@pytest.mark.parametrize("size, tile, overlap, expected", [
    (512, 64, 0.5, list(range(0, 449, 32))),
    (100, 64, 0.5, [0, 18, 36]),
    (130, 64, 0.0, [0, 33, 66]),
    (200, 64, 0.25, [0, 45, 91, 136]),
    (65, 64, 0.75, [0, 1]),
    (64, 64, 0.5, [0]),
    (40, 64, 0.5, [0]),
])
def test_tile_starts_examples(size, tile, overlap, expected):
    assert tile_starts(size, tile, overlap).tolist() == expected


@pytest.mark.parametrize("overlap", [*OVERLAPS, 0.1, 0.3, 0.6, 0.9])
def test_tile_starts_follow_the_nnunet_rule(overlap):
    for tile in (1, 4, 7, 16, 64):
        for size in range(tile, 5 * tile + 3):
            starts = tile_starts(size, tile, overlap)
            assert starts.tolist() == nnunet_starts(size, tile, overlap)
            # Covers the axis exactly: first at 0, last flush with the end,
            # no gap between neighbours.
            assert starts[0] == 0 and starts[-1] == size - tile
            assert np.all(np.diff(starts) >= 1)
            assert np.all(np.diff(starts) <= tile)


def test_tile_starts_stay_distinct_when_the_step_is_under_a_pixel():
    assert tile_starts(70, 4, 0.99).tolist() == list(range(67))


@pytest.mark.parametrize("tile", [(16, 16), (15, 9), (8, 12, 7), (1, 5)])
def test_gaussian_blend_map_properties(tile):
    w = blend_map(tile, "gaussian").numpy()
    assert w.shape == tile and w.dtype == np.float32
    assert np.all(w > 0) and w.max() == pytest.approx(1.0)
    for axis in range(len(tile)):
        np.testing.assert_array_equal(w, np.flip(w, axis))  # centred
    # Separable: the outer product of its 1-D profiles, each a Gaussian of
    # sigma = tile / 8 about the tile's centre.
    expected = np.ones(())
    for length in tile:
        x = np.arange(length) - (length - 1) / 2
        g = np.exp(-(x**2) / (2 * (length / 8) ** 2))
        expected = np.multiply.outer(expected, g / g.max())
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    # The corners count, with the smallest weight.
    assert w.min() == w[(0,) * len(tile)]


def test_gaussian_blend_map_edge_weight():
    w = blend_map((17, 17), "gaussian").numpy()
    assert w[8, 8] == 1.0
    # Half a tile (8 pixels) from the centre, sigma = 17 / 8 pixels.
    assert w[8, 0] == pytest.approx(math.exp(-(8**2) / (2 * (17 / 8) ** 2)), rel=1e-6)


def test_gaussian_blend_map_agrees_with_monai():
    monai_utils = pytest.importorskip("monai.data.utils")
    for tile in [(16, 16), (15, 24), (8, 8, 12)]:
        theirs = monai_utils.compute_importance_map(tile, mode="gaussian",
                                                    sigma_scale=0.125).numpy()
        ours = blend_map(tile, "gaussian").numpy()
        # MONAI clamps its map at 1e-3 and does not rescale it.
        kept = theirs > 1e-3
        np.testing.assert_allclose(ours[kept], (theirs / theirs.max())[kept], rtol=1e-5)


def test_constant_blend_map_is_ones():
    np.testing.assert_array_equal(blend_map((4, 6), "constant").numpy(), np.ones((4, 6)))


@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize("before, after", [(0, 0), (1, 2), (5, 9), (20, 3)])
def test_reflect_indices_match_numpy_pad(size, before, after):
    values = np.arange(size)
    expected = np.pad(values, (before, after), mode="reflect")
    np.testing.assert_array_equal(
        values[reflect_indices(-before, size + after, size)], expected
    )


# -- tiled = whole image where the network is pixel-wise ----------------------------


SHAPES = [
    pytest.param((3, 3, 37, 50), 16, id="2d-uneven"),
    pytest.param((2, 2, 10, 45), (16, 8), id="2d-shorter-than-tile"),
    pytest.param((2, 3, 37, 5), 16, id="2d-narrower-than-tile"),
    pytest.param((2, 2, 13, 21, 18), 8, id="3d-uneven"),
    pytest.param((1, 2, 5, 30, 11), (8, 8, 8), id="3d-shorter-than-tile"),
]


@pytest.fixture(scope="module")
def identity_2d():
    return fitted(LogitsAreInput, n_classes=3, spatial=(8, 8))


@pytest.fixture(scope="module")
def identity_3d():
    return fitted(LogitsAreInput, n_classes=2, spatial=(4, 8, 8))


@pytest.mark.parametrize("shape, tile", SHAPES)
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("overlap", OVERLAPS)
def test_tiled_equals_whole_image_for_a_pixelwise_network(identity_2d, identity_3d, shape,
                                                          tile, blend, overlap):
    seg = identity_2d if len(shape) == 4 else identity_3d
    n_classes = len(seg.classes_)
    X = images((shape[0], n_classes, *shape[2:]))
    seg.set_params(tile_shape=None)
    whole = seg.predict_proba(X)
    whole_log = seg.predict_log_proba(X)
    # batch_size 5 makes batches that straddle rows of tiles and images.
    seg.set_params(tile_shape=tile, tile_overlap=overlap, tile_blend=blend, batch_size=5)
    try:
        proba = seg.predict_proba(X)
        np.testing.assert_allclose(proba, whole, atol=1e-5)
        np.testing.assert_allclose(seg.predict_log_proba(X), whole_log, atol=1e-5,
                                   rtol=1e-5)
        np.testing.assert_array_equal(seg.predict(X), whole.argmax(axis=1))
    finally:
        seg.set_params(tile_shape=None, batch_size=16)


def test_tiled_prediction_reads_a_dataset_like_an_array(identity_2d):
    X = images((3, 3, 30, 41))
    seg = identity_2d.set_params(tile_shape=16, batch_size=4)
    try:
        dataset = torch.utils.data.TensorDataset(torch.from_numpy(X))
        np.testing.assert_array_equal(seg.predict_proba(dataset), seg.predict_proba(X))
    finally:
        seg.set_params(tile_shape=None, batch_size=16)


def test_tiled_score_is_the_dice_of_tiled_predict(identity_2d):
    X = images((2, 3, 30, 41))
    y = X.argmax(axis=1)
    seg = identity_2d.set_params(tile_shape=16)
    try:
        assert seg.score(X, y) == 1.0
    finally:
        seg.set_params(tile_shape=None)


# -- one tile, class prior, integers, memory ------------------------------------------


@pytest.fixture(scope="module")
def unet():
    X, y = make_disk_scenes(24, image_size=16, square_size=(5, 7), n_disks=(1, 2),
                            noise=0.3, random_state=0)
    seg = CNNSegmenter(module__channels=(4, 8), lr=1e-2, max_epochs=2,
                       random_state=0).fit(X, y)
    return seg, X[:4]


@pytest.mark.parametrize("tile", [16, 32, (16, 20)])
def test_one_tile_covering_the_image_is_whole_image_prediction_exactly(unet, tile):
    seg, X = unet
    seg.set_params(tile_shape=None)
    whole = seg.predict_proba(X), seg.predict(X)
    seg.set_params(tile_shape=tile)
    try:
        np.testing.assert_array_equal(seg.predict_proba(X), whole[0])
        np.testing.assert_array_equal(seg.predict(X), whole[1])
    finally:
        seg.set_params(tile_shape=None)


def test_tiled_unet_prediction_is_a_probability_map(unet):
    seg, X = unet
    big = np.tile(X[:1], (1, 1, 3, 3))  # (1, 1, 48, 48)
    seg.set_params(tile_shape=16)
    try:
        proba = seg.predict_proba(big)
        assert proba.shape == (1, len(seg.classes_), 48, 48)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(seg.predict(big), seg.classes_[proba.argmax(axis=1)])
    finally:
        seg.set_params(tile_shape=None)


@pytest.mark.parametrize("blend", BLENDS)
def test_class_prior_is_applied_after_blending(blend):
    seg = fitted(TileMeanShift, n_classes=3, spatial=(8, 8),
                 tile_shape=8, tile_overlap=0.5, tile_blend=blend)
    X = images((2, 3, 20, 27))
    blended = seg.predict_proba(X).astype(np.float64)
    seg.set_params(tile_shape=None)
    assert np.abs(seg.predict_proba(X) - blended).max() > 0.05  # the tiles disagree
    prior = np.array([0.6, 0.3, 0.1])
    seg.set_params(tile_shape=8, class_prior=prior)
    # Bayes' rule on the blended probabilities, from the prior the network
    # is calibrated for to the requested one.
    ratio = (prior / seg.effective_prior_).reshape(1, -1, 1, 1)
    expected = blended * ratio / (blended * ratio).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(seg.predict_proba(X), expected, atol=1e-6)
    np.testing.assert_array_equal(seg.predict(X), expected.argmax(axis=1))


def test_uint8_images_stay_integers_until_each_batch_of_tiles(identity_2d):
    rng = np.random.default_rng(0)
    X8 = rng.integers(0, 256, size=(2, 3, 40, 33), dtype=np.uint8)
    seg = identity_2d.set_params(tile_shape=16, batch_size=3)
    seen = []
    prepare = seg._prepare_inputs

    def recording(x):
        seen.append((x.dtype, tuple(x.shape)))
        return prepare(x)

    seg._prepare_inputs = recording
    try:
        tiled = seg.predict_proba(X8)
    finally:
        del seg._prepare_inputs
        seg.set_params(tile_shape=None, batch_size=16)
    assert {dtype for dtype, _ in seen} == {torch.uint8}
    assert all(shape[0] <= 3 and shape[1:] == (3, 16, 16) for _, shape in seen)
    np.testing.assert_allclose(tiled, seg.predict_proba(X8 / np.float32(255)), atol=1e-6)


PER_IMAGE = len(tile_starts(300, 32, 0.25)) * len(tile_starts(200, 24, 0.25))


@pytest.mark.parametrize("params, largest", [
    ({"batch_size": 4}, 4),
    ({"batch_size": 16, "iterator_valid__batch_size": 3}, 3),
    ({"batch_size": -1}, PER_IMAGE),
])
def test_network_never_sees_more_than_batch_size_tiles(params, largest):
    seg = fitted(LogitsAreInput, n_classes=2, spatial=(8, 8), tile_shape=(32, 24),
                 tile_overlap=0.25, **params)
    sizes = []
    hook = seg.module_.register_forward_pre_hook(
        lambda module, args: sizes.append(tuple(args[0].shape))
    )
    try:
        out = seg.predict(images((2, 2, 300, 200)))
    finally:
        hook.remove()
    assert out.shape == (2, 300, 200)
    assert max(s[0] for s in sizes) == largest
    assert {s[2:] for s in sizes} == {(32, 24)}
    assert sum(s[0] for s in sizes) == 2 * PER_IMAGE


# -- parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("tile_shape", 0), ("tile_shape", -16), ("tile_shape", 1.5), ("tile_shape", "64"),
    ("tile_shape", True), ("tile_shape", (64,)), ("tile_shape", (8, 8, 8, 8)),
    ("tile_shape", (16, 0)), ("tile_overlap", 1.0), ("tile_overlap", -0.1),
    ("tile_overlap", float("nan")), ("tile_overlap", "0.5"), ("tile_overlap", None),
    ("tile_blend", "linear"), ("tile_blend", None),
])
def test_bad_tiling_parameters_are_refused(identity_2d, name, value):
    X, y = make_disk_scenes(4, image_size=16, random_state=0)
    with pytest.raises(ValueError, match=name):
        CNNSegmenter(max_epochs=1, **{name: value}).fit(X, y)
    # Set after fit, they are refused at prediction.
    seg = identity_2d.set_params(**{"tile_shape": 16, name: value})
    try:
        with pytest.raises(ValueError, match=name):
            seg.predict(images((1, 3, 40, 40)))
    finally:
        seg.set_params(tile_shape=None, tile_overlap=0.5, tile_blend="gaussian")


def test_tile_shapes_the_default_unet_cannot_take_are_refused(unet):
    X, y = make_disk_scenes(4, image_size=16, random_state=0)
    with pytest.raises(ValueError, match=r"tile_shape=30 .* multiples of 4"):
        CNNSegmenter(max_epochs=1, tile_shape=30).fit(X, y)
    with pytest.raises(ValueError, match=r"tile_shape=\(16, 12\) .* multiples of 8"):
        CNNSegmenter(max_epochs=1, module__channels=(4, 8, 16, 32),
                     tile_shape=(16, 12)).fit(X, y)
    seg, images_ = unet  # module__channels=(4, 8): one pooling, multiples of 2
    seg.set_params(tile_shape=(16, 15))
    try:
        with pytest.raises(ValueError, match=r"tile_shape=\(16, 15\) .* multiples of 2"):
            seg.predict(np.tile(images_, (1, 1, 2, 2)))
    finally:
        seg.set_params(tile_shape=None)


def test_tile_shape_must_match_the_fitted_images_axes(identity_2d, identity_3d):
    for seg, tile, X in [(identity_2d, (8, 8, 8), images((1, 3, 20, 20))),
                         (identity_3d, (8, 8), images((1, 2, 20, 20, 20)))]:
        seg.set_params(tile_shape=tile)
        try:
            with pytest.raises(ValueError, match="tile_shape=.* axes"):
                seg.predict(X)
        finally:
            seg.set_params(tile_shape=None)


def test_a_users_network_takes_any_tile_shape(identity_2d):
    X = images((1, 3, 30, 31))
    whole = identity_2d.predict_proba(X)
    identity_2d.set_params(tile_shape=7)
    try:
        np.testing.assert_allclose(identity_2d.predict_proba(X), whole, atol=1e-5)
    finally:
        identity_2d.set_params(tile_shape=None)


@pytest.mark.parametrize("blend", BLENDS)
def test_tiled_overlapping_masks_blend_each_channels_sigmoid(blend):
    # Overlapping 0/1 masks: each channel's sigmoid is blended (not a softmax).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 2, 8, 8)).astype(np.float32)
    Y = (rng.random((2, 2, 8, 8)) < 0.5).astype(int)
    # (input_shape: masks of X's own shape are overlapping masks of images)
    seg = CNNSegmenter(LogitsAreInput, criterion="bce", max_epochs=0, random_state=0,
                       module__n_classes=2, module__ndim=2,
                       input_shape=(2, 8, 8)).fit(X, Y)
    seg.set_params(input_shape=None)  # other image sizes at prediction
    X = images((2, 2, 30, 41))
    whole = seg.predict_proba(X)
    np.testing.assert_allclose(whole, 1 / (1 + np.exp(-X)), rtol=1e-5)
    seg.set_params(tile_shape=16, tile_blend=blend, tile_overlap=0.5)
    np.testing.assert_allclose(seg.predict_proba(X), whole, atol=1e-5)
    np.testing.assert_array_equal(seg.predict(X), (whole >= 0.5).astype(int))
