import copy
import warnings

import numpy as np
import pytest
import sklearn
from scipy import ndimage
from scipy.spatial.distance import cdist, directed_hausdorff
from sklearn.base import BaseEstimator
from sklearn.metrics import f1_score, jaccard_score
from sklearn.model_selection import GridSearchCV, KFold

from skweight import metrics
from skweight.metrics import (
    dice_score,
    dice_scorer,
    expected_calibration_error,
    hausdorff_distance,
    iou_score,
    iou_scorer,
    make_segmentation_scorer,
    mean_surface_distance,
    neg_hausdorff_distance_scorer,
    neg_mean_surface_distance_scorer,
    normalized_surface_dice,
    normalized_surface_dice_scorer,
    reliability_curve,
)

OVERLAP_METRICS = [dice_score, iou_score]
DISTANCE_METRICS = [hausdorff_distance, mean_surface_distance, normalized_surface_dice]
ALL_METRICS = OVERLAP_METRICS + DISTANCE_METRICS


def random_label_batch(seed, shape, n_classes=3, sigma=1.5):
    """Blobby label images: argmax over smoothed noise channels."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n_classes, *shape))
    spatial_sigma = (0,) + (sigma,) * (len(shape) - 1)  # do not blur across images
    smooth = np.stack([ndimage.gaussian_filter(c, spatial_sigma) for c in noise])
    return smooth.argmax(axis=0)


def perturb(y, seed, fraction=0.1, n_classes=3):
    """Copy of ``y`` with a fraction of pixels relabelled at random."""
    rng = np.random.default_rng(seed)
    out = y.copy()
    flip = rng.random(y.shape) < fraction
    out[flip] = rng.integers(0, n_classes, size=flip.sum())
    return out


def reference_boundary_points(mask):
    """Boundary pixel coordinates, via explicit neighbour shifts."""
    padded = np.pad(mask, 1, constant_values=False)
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    outside_neighbour = np.zeros_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            outside_neighbour |= ~np.roll(padded, step, axis=axis)[core]
    return np.argwhere(mask & outside_neighbour).astype(float)


def reference_hausdorff(a, b, percentile=None):
    pa, pb = reference_boundary_points(a), reference_boundary_points(b)
    if len(pa) == 0 and len(pb) == 0:
        return 0.0
    if len(pa) == 0 or len(pb) == 0:
        return np.nan
    if percentile is None:
        return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    d = cdist(pa, pb)
    return np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), percentile)


# ---------------------------------------------------------------------------
# Dice / IoU
# ---------------------------------------------------------------------------


def test_dice_iou_hand_computed():
    y_true = np.array([[1, 1, 1, 0],
                       [0, 0, 0, 0]])
    y_pred = np.array([[0, 1, 1, 1],
                       [0, 0, 0, 0]])
    # |A| = |B| = 3, |A ∩ B| = 2, |A ∪ B| = 4
    assert dice_score(y_true, y_pred) == pytest.approx(2 * 2 / (3 + 3))
    assert iou_score(y_true, y_pred) == pytest.approx(2 / 4)
    assert isinstance(dice_score(y_true, y_pred), float)


@pytest.mark.parametrize("seed", range(5))
def test_iou_equals_dice_over_two_minus_dice(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=(16, 16))
    y_pred = rng.integers(0, 2, size=(16, 16))
    dice = dice_score(y_true, y_pred)
    assert iou_score(y_true, y_pred) == pytest.approx(dice / (2 - dice))


@pytest.mark.parametrize("seed", range(3))
def test_single_image_matches_sklearn_f1_and_jaccard(seed):
    y_true = random_label_batch(seed, (1, 20, 20))
    y_pred = perturb(y_true, seed + 100, fraction=0.3)
    w = np.random.default_rng(seed).random(y_true.shape)
    labels = [2, 0, 1]
    for metric, reference in [(dice_score, f1_score), (iou_score, jaccard_score)]:
        expected = reference(y_true.ravel(), y_pred.ravel(), labels=labels,
                             average=None)
        got = metric(y_true, y_pred, labels=labels, average=None)
        np.testing.assert_allclose(got, expected)
        expected_w = reference(y_true.ravel(), y_pred.ravel(), labels=labels,
                               average=None, sample_weight=w.ravel())
        got_w = metric(y_true, y_pred, labels=labels, average=None, sample_weight=w)
        np.testing.assert_allclose(got_w, expected_w)


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
def test_zero_division_when_class_absent_from_both(metric):
    y = np.array([[0, 1], [1, 0]])
    assert metric(y, y, labels=[5]) == 1.0
    assert metric(y, y, labels=[5], zero_division=0.0) == 0.0
    assert np.isnan(metric(y, y, labels=[5], zero_division=np.nan))
    # NaN entries are skipped, not averaged in.
    assert metric(y, y, labels=[1, 5], zero_division=np.nan) == 1.0
    np.testing.assert_array_equal(
        metric(y, y, labels=[1, 5], zero_division=0.0, average=None), [1.0, 0.0]
    )


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
def test_only_background_scores_zero_division(metric):
    y = np.zeros((2, 3, 3), dtype=int)
    assert metric(y, y) == 1.0
    assert metric(y, y, zero_division=0.0) == 0.0
    assert metric(y, y, average=None).shape == (0,)


def test_per_class_output_follows_labels_order():
    y_true = np.array([[[1, 1, 2, 2], [0, 0, 3, 3]]])
    y_pred = np.array([[[1, 0, 2, 2], [0, 0, 3, 0]]])
    # class 1: 2/3, class 2: 1, class 3: 2/3
    np.testing.assert_allclose(dice_score(y_true, y_pred, average=None),
                               [2 / 3, 1.0, 2 / 3])
    np.testing.assert_allclose(
        dice_score(y_true, y_pred, labels=[3, 2, 1], average=None),
        [2 / 3, 1.0, 2 / 3][::-1],
    )
    np.testing.assert_allclose(
        iou_score(y_true, y_pred, labels=np.array([2, 1]), average=None),
        [1.0, 0.5],
    )


def test_default_labels_background_and_ignore_index():
    y_true = np.array([[0, 1, 2, 9]])
    y_pred = np.array([[0, 1, 2, 2]])
    # labels 1 and 2; the 9 pixel is ignored, so its "2" prediction is free.
    np.testing.assert_allclose(
        dice_score(y_true, y_pred, ignore_index=9, average=None), [1.0, 1.0]
    )
    # Without ignoring, class 9 is scored too and class 2 loses.
    np.testing.assert_allclose(
        dice_score(y_true, y_pred, average=None), [1.0, 2 / 3, 0.0]
    )
    np.testing.assert_allclose(
        dice_score(y_true, y_pred, ignore_index=9, include_background=True,
                   average=None),
        [1.0, 1.0, 1.0],
    )
    np.testing.assert_allclose(
        dice_score(y_true, y_pred, background=1, ignore_index=9, average=None),
        [1.0, 1.0],
    )


def test_class_predicted_only_on_ignored_pixels_is_not_scored():
    y_true = np.array([[1, 1, 255]])
    y_pred = np.array([[1, 1, 4]])
    np.testing.assert_array_equal(
        dice_score(y_true, y_pred, ignore_index=255, average=None), [1.0]
    )


def test_macro_vs_micro_hand_computed():
    y_true = np.zeros((2, 4, 4), dtype=int)
    y_pred = np.zeros((2, 4, 4), dtype=int)
    y_true[0, 0, 0] = y_pred[0, 0, 0] = 1  # small object, found: Dice 1
    y_true[1, :2, :2] = 1  # 4 pixels
    y_pred[1, 0, :2] = 1  # 2 of them: Dice 2*2/6
    assert dice_score(y_true, y_pred) == pytest.approx((1 + 4 / 6) / 2)
    # pooled: |A ∩ B| = 3, |A| = 5, |B| = 3
    assert dice_score(y_true, y_pred, average="micro") == pytest.approx(6 / 8)
    assert iou_score(y_true, y_pred, average="micro") == pytest.approx(3 / 5)
    assert iou_score(y_true, y_pred) == pytest.approx((1 + 2 / 4) / 2)


def test_micro_averages_pooled_classes():
    y_true = np.array([[[1, 1, 2, 2]], [[1, 0, 2, 0]]])
    y_pred = np.array([[[1, 0, 2, 2]], [[1, 1, 0, 0]]])
    class1 = 2 * 2 / (3 + 3)  # pooled |A ∩ B| = 2, |A| = 3, |B| = 3
    class2 = 2 * 2 / (3 + 2)  # pooled |A ∩ B| = 2, |A| = 3, |B| = 2
    assert dice_score(y_true, y_pred, average="micro") == pytest.approx(
        (class1 + class2) / 2
    )


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
@pytest.mark.parametrize("average", ["macro", "micro", None])
def test_integer_image_weights_equal_repeating_images(metric, average):
    y_true = random_label_batch(0, (5, 12, 12))
    y_pred = perturb(y_true, 1, fraction=0.3)
    w = np.array([1, 3, 0, 2, 1])
    weighted = metric(y_true, y_pred, sample_weight=w, average=average,
                      labels=[0, 1, 2])
    repeated = metric(np.repeat(y_true, w, axis=0), np.repeat(y_pred, w, axis=0),
                      average=average, labels=[0, 1, 2])
    np.testing.assert_allclose(weighted, repeated)


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
@pytest.mark.parametrize("average", ["macro", "micro", None])
def test_zero_weight_image_equals_dropping_it(metric, average):
    y_true = random_label_batch(2, (4, 10, 10))
    y_pred = perturb(y_true, 3, fraction=0.4)
    w = np.array([1.0, 0.0, 1.0, 1.0])
    keep = w > 0
    np.testing.assert_allclose(
        metric(y_true, y_pred, sample_weight=w, average=average, labels=[1, 2]),
        metric(y_true[keep], y_pred[keep], average=average, labels=[1, 2]),
    )


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
@pytest.mark.parametrize("average", ["macro", "micro", None])
def test_unit_pixel_weights_equal_no_weights(metric, average):
    y_true = random_label_batch(4, (3, 9, 11))
    y_pred = perturb(y_true, 5)
    np.testing.assert_allclose(
        metric(y_true, y_pred, sample_weight=np.ones(y_true.shape), average=average),
        metric(y_true, y_pred, average=average),
    )


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
@pytest.mark.parametrize("average", ["macro", "micro", None])
def test_zero_pixel_weight_equals_ignore_index(metric, average):
    y_true = random_label_batch(6, (3, 10, 10), n_classes=4)
    y_pred = perturb(y_true, 7, fraction=0.3, n_classes=4)
    hidden = np.random.default_rng(8).random(y_true.shape) < 0.3
    w = np.where(hidden, 0.0, 1.0)
    y_true_ignored = np.where(hidden, 255, y_true)
    np.testing.assert_allclose(
        metric(y_true, y_pred, sample_weight=w, average=average),
        metric(y_true_ignored, y_pred, ignore_index=255, average=average),
    )


def test_single_image_and_array_likes():
    y_true = random_label_batch(9, (1, 8, 8))
    y_pred = perturb(y_true, 10)
    expected = dice_score(y_true, y_pred)
    assert dice_score(y_true[0], y_pred[0]) == expected
    assert dice_score(y_true.tolist(), y_pred.tolist()) == expected
    assert dice_score(y_true.astype(float), y_pred.astype(np.float32)) == expected
    assert dice_score(y_true.astype(np.uint8), y_pred.astype(np.int16)) == expected
    # bool masks: class 1 is "True"
    assert dice_score(y_true[0] == 1, y_pred[0] == 1) == dice_score(
        y_true[0] == 1, y_pred[0] == 1, labels=[1]
    )


def test_3d_volumes_and_1d_profiles():
    y_true = random_label_batch(11, (2, 5, 6, 7))
    y_pred = perturb(y_true, 12)
    flat = dice_score(y_true.reshape(2, 1, -1), y_pred.reshape(2, 1, -1))
    assert dice_score(y_true, y_pred) == pytest.approx(flat)
    assert dice_score([0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(2 / 3)


def test_inputs_are_not_modified():
    y_true = random_label_batch(13, (2, 6, 6)).astype(float)
    y_pred = perturb(y_true.astype(int), 14)
    w = np.ones(y_true.shape)
    copies = [a.copy() for a in (y_true, y_pred, w)]
    dice_score(y_true, y_pred, sample_weight=w, ignore_index=2)
    hausdorff_distance(y_true, y_pred, ignore_index=2)
    for original, kept in zip((y_true, y_pred, w), copies, strict=True):
        np.testing.assert_array_equal(original, kept)


# ---------------------------------------------------------------------------
# Hausdorff distance
# ---------------------------------------------------------------------------


def test_hausdorff_single_pixels():
    y_true = np.zeros((10, 10), dtype=int)
    y_pred = np.zeros((10, 10), dtype=int)
    y_true[1, 2] = 1
    y_pred[4, 6] = 1  # offset (3, 4)
    assert hausdorff_distance(y_true, y_pred) == pytest.approx(5.0)
    assert hausdorff_distance(y_true, y_pred, percentile=95) == pytest.approx(5.0)


def test_hausdorff_3d_single_voxels():
    y_true = np.zeros((1, 6, 6, 6), dtype=int)
    y_pred = np.zeros((1, 6, 6, 6), dtype=int)
    y_true[0, 0, 0, 0] = 1
    y_pred[0, 1, 2, 2] = 1
    assert hausdorff_distance(y_true, y_pred) == pytest.approx(3.0)


@pytest.mark.parametrize(("shift", "expected"), [((0, 3), 3.0), ((2, 0), 2.0),
                                                 ((3, 4), 5.0)])
def test_hausdorff_shifted_square(shift, expected):
    y_true = np.zeros((24, 24), dtype=int)
    y_true[5:12, 5:12] = 1
    y_pred = np.roll(y_true, shift, axis=(0, 1))
    assert hausdorff_distance(y_true, y_pred) == pytest.approx(expected)


def test_hausdorff_full_image_and_identical_masks():
    y = np.ones((2, 5, 5), dtype=int)
    assert hausdorff_distance(y, y) == 0.0
    y_blob = random_label_batch(15, (2, 12, 12))
    assert hausdorff_distance(y_blob, y_blob) == 0.0


@pytest.mark.parametrize("shape", [(3, 24, 20), (2, 10, 12, 9)])
@pytest.mark.parametrize("percentile", [None, 50, 95])
def test_hausdorff_matches_reference(shape, percentile):
    y_true = random_label_batch(16, shape, n_classes=3)
    y_pred = perturb(y_true, 17, fraction=0.05)
    got = np.stack([
        hausdorff_distance(y_true[i], y_pred[i], labels=[0, 1, 2],
                           percentile=percentile, average=None)
        if len(shape) == 3 else
        hausdorff_distance(y_true[i:i + 1], y_pred[i:i + 1], labels=[0, 1, 2],
                           percentile=percentile, average=None)
        for i in range(shape[0])
    ])
    expected = np.array([
        [reference_hausdorff(y_true[i] == k, y_pred[i] == k, percentile)
         for k in range(3)]
        for i in range(shape[0])
    ])
    np.testing.assert_allclose(got, expected)
    # Batch call = per-class mean over images of the same values.
    np.testing.assert_allclose(
        hausdorff_distance(y_true, y_pred, labels=[0, 1, 2], percentile=percentile,
                           average=None),
        expected.mean(axis=0),
    )


def test_hausdorff_percentile_100_is_max_and_hd95_below_hd():
    y_true = random_label_batch(18, (4, 20, 20))
    y_pred = perturb(y_true, 19, fraction=0.1)
    hd = hausdorff_distance(y_true, y_pred, average=None)
    np.testing.assert_allclose(
        hausdorff_distance(y_true, y_pred, percentile=100, average=None), hd
    )
    hd95 = hausdorff_distance(y_true, y_pred, percentile=95, average=None)
    hd50 = hausdorff_distance(y_true, y_pred, percentile=50, average=None)
    assert np.all(hd95 <= hd)
    assert np.all(hd50 <= hd95)
    assert np.any(hd95 < hd)  # scattered noise pixels are outliers


def test_hausdorff_empty_handling():
    empty = np.zeros((6, 8), dtype=int)
    one = empty.copy()
    one[2, 3] = 1
    assert hausdorff_distance(empty, empty, labels=[1]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all-NaN must not warn
        assert np.isnan(hausdorff_distance(one, empty))
        assert np.isnan(hausdorff_distance(empty, one, average=None)[0])
    assert hausdorff_distance(one, empty, empty_value=7.5) == 7.5
    assert hausdorff_distance(one, empty, empty_value="diagonal") == 10.0
    # No foreground anywhere: nothing to score.
    assert hausdorff_distance(empty, empty) == 0.0


def test_hausdorff_nan_images_and_classes_are_skipped():
    y_true = np.zeros((2, 8, 8), dtype=int)
    y_pred = np.zeros((2, 8, 8), dtype=int)
    y_true[0, 1, 1] = 1  # class 1 missed in image 0 -> nan
    y_true[1, 0, 0] = 1
    y_pred[1, 0, 3] = 1  # class 1 in image 1 -> 3
    y_true[0, 5, 5] = 2  # class 2 missed in image 0, absent in image 1 -> nan, 0
    np.testing.assert_allclose(hausdorff_distance(y_true, y_pred, average=None),
                               [3.0, 0.0])
    y_true[1, 7, 7] = 2  # class 2 now missed in both images -> nan
    np.testing.assert_allclose(hausdorff_distance(y_true, y_pred, average=None),
                               [3.0, np.nan])
    assert hausdorff_distance(y_true, y_pred) == 3.0


def test_hausdorff_image_weights_and_ignore_index():
    y_true = random_label_batch(20, (3, 16, 16))
    y_pred = perturb(y_true, 21, fraction=0.05)
    w = np.array([2, 0, 1])
    np.testing.assert_allclose(
        hausdorff_distance(y_true, y_pred, sample_weight=w, average=None),
        hausdorff_distance(np.repeat(y_true, w, axis=0),
                           np.repeat(y_pred, w, axis=0), average=None),
    )
    # A far-away false positive on an ignored pixel does not count.
    y_true = np.zeros((12, 12), dtype=int)
    y_true[2:5, 2:5] = 1
    y_pred = y_true.copy()
    y_pred[11, 11] = 1
    assert hausdorff_distance(y_true, y_pred) > 0
    y_true[11, 11] = 255
    assert hausdorff_distance(y_true, y_pred, ignore_index=255) == 0.0


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------


class FixedSegmenter(BaseEstimator):
    """Predicts fixed masks, whatever X is."""

    def __init__(self, masks=None):
        self.masks = masks

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return self.masks


class ShiftSegmenter(BaseEstimator):
    """Predicts its input masks shifted along the last axis."""

    def __init__(self, shift=0):
        self.shift = shift

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def predict(self, X):
        return np.roll(np.asarray(X), self.shift, axis=-1)


@pytest.fixture
def scorer_data():
    y_true = random_label_batch(22, (4, 12, 14))
    y_pred = perturb(y_true, 23, fraction=0.1)
    return np.zeros((4, 1)), y_true, y_pred


def test_scorers_call_the_metrics(scorer_data):
    X, y_true, y_pred = scorer_data
    est = FixedSegmenter(y_pred)
    diagonal = np.hypot(12, 14)
    assert dice_scorer(est, X, y_true) == dice_score(y_true, y_pred)
    assert iou_scorer(est, X, y_true) == iou_score(y_true, y_pred)
    assert neg_hausdorff_distance_scorer(est, X, y_true) == -hausdorff_distance(
        y_true, y_pred, empty_value=diagonal
    )
    w = np.array([1.0, 0.0, 2.0, 0.5])
    assert dice_scorer(est, X, y_true, sample_weight=w) == dice_score(
        y_true, y_pred, sample_weight=w
    )
    assert neg_hausdorff_distance_scorer(
        est, X, y_true, sample_weight=w
    ) == -hausdorff_distance(y_true, y_pred, sample_weight=w, empty_value=diagonal)


def test_neg_hausdorff_distance_scorer_penalises_missed_structure():
    y_true = np.zeros((1, 6, 8), dtype=int)
    y_true[0, 2, 2] = 1
    est = FixedSegmenter(np.zeros_like(y_true))
    assert neg_hausdorff_distance_scorer(est, None, y_true) == -10.0
    hit = y_true.copy()
    est_hit = FixedSegmenter(np.roll(hit, 5, axis=-1))
    assert -10.0 < neg_hausdorff_distance_scorer(est_hit, None, y_true) < 0


def test_make_segmentation_scorer_options(scorer_data):
    X, y_true, y_pred = scorer_data
    est = FixedSegmenter(y_pred)
    hd95 = make_segmentation_scorer("neg_hausdorff_distance", percentile=95,
                                    empty_value=0.0)
    assert hd95(est, X, y_true) == -hausdorff_distance(
        y_true, y_pred, percentile=95, empty_value=0.0
    )
    dice1 = make_segmentation_scorer("dice", labels=[1])
    assert dice1(est, X, y_true) == dice_score(y_true, y_pred, labels=[1])
    with pytest.raises(ValueError, match="metric must be one of"):
        make_segmentation_scorer("accuracy")


def test_scorer_names_follow_one_rule():
    """A scorer is named after its metric: scikit-learn's name plus _scorer.

    scikit-learn's name is the function's without ``_score``, with ``neg_``
    where the scorer negates a distance.
    """
    ready_made = {name: getattr(metrics, name) for name in metrics.__all__
                  if name.endswith("_scorer") and name != "make_segmentation_scorer"}
    assert sorted(ready_made) == [
        "dice_scorer", "iou_scorer", "neg_hausdorff_distance_scorer",
        "neg_mean_surface_distance_scorer", "normalized_surface_dice_scorer",
    ]
    for name, scorer in ready_made.items():
        metric = name.removesuffix("_scorer")
        func = scorer._score_func
        prefix = "neg_" if scorer._sign == -1 else ""
        assert metric == prefix + func.__name__.removesuffix("_score")
        assert (scorer._sign == -1) == func.__name__.endswith("_distance")
        made = make_segmentation_scorer(metric)
        assert (made._score_func, made._sign, made._kwargs) == (
            func, scorer._sign, scorer._kwargs)
    # 0.2 was never released with the old names: no aliases.
    for old in ("hausdorff", "mean_surface_distance", "hausdorff_distance"):
        with pytest.raises(ValueError, match="metric must be one of"):
            make_segmentation_scorer(old)
        assert not hasattr(metrics, f"{old}_scorer")


def test_grid_search_selects_best_shift():
    y = random_label_batch(24, (6, 12, 12))
    grid = {"shift": [2, 0, 1]}
    for scorer in (dice_scorer, iou_scorer, neg_hausdorff_distance_scorer):
        search = GridSearchCV(ShiftSegmenter(), grid, scoring=scorer, cv=2)
        search.fit(y, y)
        assert search.best_params_ == {"shift": 0}
        assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_sample_weight_routed_to_scorer():
    y = random_label_batch(25, (6, 10, 10))
    w = np.array([1.0, 0.0, 2.0, 1.0, 3.0, 0.5])
    grid = {"shift": [0, 1]}
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = copy.deepcopy(dice_scorer).set_score_request(sample_weight=True)
        search = GridSearchCV(ShiftSegmenter(), grid, scoring=scorer, cv=KFold(2))
        search.fit(y, y, sample_weight=w)
    test_fold = np.arange(3)  # first KFold test split
    for i, shift in enumerate(grid["shift"]):
        expected = dice_score(y[test_fold], np.roll(y[test_fold], shift, axis=-1),
                              sample_weight=w[test_fold])
        assert search.cv_results_["split0_test_score"][i] == pytest.approx(expected)
    # The shared module-level scorer was not changed.
    assert not hasattr(dice_scorer, "_metadata_request")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_shape_mismatch(metric):
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        metric(np.zeros((2, 4, 4), int), np.zeros((2, 4, 5), int))


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_invalid_label_arrays(metric):
    y = np.zeros((2, 3, 3), dtype=int)
    with pytest.raises(ValueError, match="y_pred must contain integer"):
        metric(y, np.full(y.shape, 0.5))
    with pytest.raises(ValueError, match="y_true must contain integer"):
        metric(np.full(y.shape, "a"), y)
    with pytest.raises(ValueError, match="NaN"):
        metric(np.full(y.shape, np.nan), y)
    with pytest.raises(ValueError, match="spatial"):
        metric(np.zeros((1, 2, 2, 2, 2), int), np.zeros((1, 2, 2, 2, 2), int))
    with pytest.raises(ValueError, match="duplicates"):
        metric(y, y, labels=[1, 1])
    with pytest.raises(ValueError, match="ignore_index"):
        metric(y, y, labels=[1, 255], ignore_index=255)
    with pytest.raises(TypeError, match="background"):
        metric(y, y, background="0")


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
def test_sample_weight_forms(metric):
    y_true = random_label_batch(43, (1, 9, 9))
    y_pred = perturb(y_true, 44, fraction=0.3)
    w = np.random.default_rng(45).random(y_true.shape)
    weighted = metric(y_true, y_pred, sample_weight=w)
    assert weighted != metric(y_true, y_pred)
    # A single mask without batch axis takes per-pixel weights of its shape.
    assert metric(y_true[0], y_pred[0], sample_weight=w[0]) == weighted
    # A scalar is one weight for every image.
    assert metric(y_true, y_pred, sample_weight=3.0) == metric(y_true, y_pred)
    # Per-pixel weights may all be 0: nothing is scored (zero_division).
    assert metric(y_true, y_pred, sample_weight=np.zeros(y_true.shape)) == 1.0


@pytest.mark.parametrize("metric", OVERLAP_METRICS)
@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (np.ones(3), "shape"),
        (np.ones((2, 3)), "shape"),
        (np.ones((2, 3, 4)), "shape"),
        (np.array([1.0, -1.0]), "contains negative values"),
        (np.array([1.0, np.inf]), "contains NaN or infinity"),
        (np.zeros(2), "has only zero weights"),
        (np.full((2, 3, 3), -0.5), "contains negative values"),
    ],
)
def test_bad_sample_weight_overlap(metric, weight, match):
    y = np.ones((2, 3, 3), dtype=int)
    with pytest.raises(ValueError, match=f"sample_weight.*{match}|{match}"):
        metric(y, y, sample_weight=weight)


@pytest.mark.parametrize("metric", DISTANCE_METRICS)
def test_bad_sample_weight_distance(metric):
    y = np.ones((2, 3, 3), dtype=int)
    with pytest.raises(
        ValueError, match=r"sample_weight.shape == \(2, 3, 3\), expected \(2,\)"
    ):
        metric(y, y, sample_weight=np.ones(y.shape))
    with pytest.raises(ValueError, match="sample_weight contains negative values"):
        metric(y, y, sample_weight=[1, -2])
    with pytest.raises(ValueError, match="sample_weight has only zero weights"):
        metric(y, y, sample_weight=[0, 0])
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\)"):
        metric(y, y, sample_weight=[1, 1, 1])


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_bad_average(metric):
    y = np.ones((2, 3, 3), dtype=int)
    with pytest.raises(ValueError, match="average must be one of"):
        metric(y, y, average="weighted")


def test_hausdorff_rejects_micro_and_bad_options():
    y = np.ones((2, 3, 3), dtype=int)
    with pytest.raises(ValueError, match="average must be one of"):
        hausdorff_distance(y, y, average="micro")
    for bad in (0, -5, 100.5, np.nan, True, "95"):
        with pytest.raises(ValueError, match="percentile"):
            hausdorff_distance(y, y, percentile=bad)
    with pytest.raises(ValueError, match="empty_value"):
        hausdorff_distance(y, y, empty_value="max")


# ---------------------------------------------------------------------------
# Mean surface distance and normalized surface Dice
# ---------------------------------------------------------------------------


def reference_surface_distances(a, b, spacing=None):
    """Directed nearest-boundary distances by brute force (cdist)."""
    scale = 1.0 if spacing is None else np.asarray(spacing, dtype=float)
    pa = reference_boundary_points(a) * scale
    pb = reference_boundary_points(b) * scale
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


def reference_msd(a, b, spacing=None):
    a_to_b, b_to_a = reference_surface_distances(a, b, spacing)
    return np.concatenate([a_to_b, b_to_a]).mean()


def reference_nsd(a, b, tolerance, spacing=None):
    a_to_b, b_to_a = reference_surface_distances(a, b, spacing)
    return np.mean(np.concatenate([a_to_b, b_to_a]) <= tolerance)


def shifted_square(shift, shape=(16, 20)):
    """A 7 x 7 square and its copy shifted by ``shift`` (rows, columns)."""
    y_true = np.zeros(shape, dtype=int)
    y_true[5:12, 5:12] = 1
    return y_true, np.roll(y_true, shift, axis=(0, 1))


def test_surface_metrics_shifted_square_hand_computed():
    # Square rows/cols 5..11 vs. cols 8..14; 24 boundary pixels each. From
    # the true boundary: top and bottom rows 3, 2, 1, 0, 0, 0, 0; left column
    # 3 (x5); right column min(r - 5, 11 - r, 3) = 1, 2, 3, 2, 1. The other
    # direction is the mirror image.
    y_true, y_pred = shifted_square((0, 3))
    assert mean_surface_distance(y_true, y_pred) == pytest.approx(36 / 24)
    assert mean_surface_distance(y_true, y_pred, symmetric=False) == pytest.approx(1.5)
    for tolerance, within in [(0, 8), (0.5, 8), (1, 12), (2, 16), (2.9, 16), (3, 24)]:
        assert normalized_surface_dice(
            y_true, y_pred, tolerance=tolerance
        ) == pytest.approx(within / 24)


def test_surface_metrics_anisotropic_spacing_hand_computed():
    # Same squares, rows 2 units apart and columns 0.5: top/bottom rows give
    # 1.5, 1.0, 0.5 and zeros; both side columns are 1.5 away everywhere.
    y_true, y_pred = shifted_square((0, 3))
    spacing = (2.0, 0.5)
    assert mean_surface_distance(y_true, y_pred, spacing=spacing) == pytest.approx(
        21 / 24
    )
    assert hausdorff_distance(y_true, y_pred, spacing=spacing) == pytest.approx(1.5)
    assert normalized_surface_dice(
        y_true, y_pred, tolerance=1.0, spacing=spacing
    ) == pytest.approx(12 / 24)
    assert normalized_surface_dice(y_true, y_pred, tolerance=1.5, spacing=spacing) == 1.0
    # The same shift along the rows: the ends are 6 away, the sides 6, 4, 2, 0.
    y_true, y_pred = shifted_square((3, 0))
    assert mean_surface_distance(y_true, y_pred, spacing=spacing) == pytest.approx(
        (24 + 30 + 4.5) / 24
    )
    assert hausdorff_distance(y_true, y_pred, spacing=spacing) == pytest.approx(6.0)


def test_surface_metrics_single_pixels_and_voxels():
    y_true = np.zeros((10, 10), dtype=int)
    y_pred = np.zeros((10, 10), dtype=int)
    y_true[1, 2] = 1
    y_pred[4, 6] = 1  # offset (3, 4): each pixel is its own boundary
    assert mean_surface_distance(y_true, y_pred) == pytest.approx(5.0)
    assert normalized_surface_dice(y_true, y_pred, tolerance=5.0) == 1.0
    assert normalized_surface_dice(y_true, y_pred, tolerance=4.99) == 0.0
    assert mean_surface_distance(y_true, y_pred, spacing=(1.0, 2.0)) == pytest.approx(
        np.sqrt(9 + 64)
    )
    volume_true = np.zeros((1, 6, 6, 6), dtype=int)
    volume_pred = np.zeros((1, 6, 6, 6), dtype=int)
    volume_true[0, 0, 0, 0] = 1
    volume_pred[0, 1, 2, 2] = 1
    spacing = (3.0, 1.0, 0.5)
    expected = np.sqrt(9 + 4 + 1)
    assert mean_surface_distance(volume_true, volume_pred) == pytest.approx(3.0)
    for metric in (mean_surface_distance, hausdorff_distance):
        assert metric(volume_true, volume_pred, spacing=spacing) == pytest.approx(expected)
    assert normalized_surface_dice(volume_true, volume_pred, spacing=spacing,
                                   tolerance=expected) == 1.0


def test_msd_pools_both_directions():
    # A 7 x 7 square (24 boundary pixels) and a single pixel at its centre:
    # the pixel is 3 from the square's boundary, the boundary 3 to 3*sqrt(2)
    # from the pixel. Pooling weighs the longer boundary 24:1.
    y_true = np.zeros((13, 13), dtype=int)
    y_true[3:10, 3:10] = 1
    y_pred = np.zeros_like(y_true)
    y_pred[6, 6] = 1
    square_to_pixel, pixel_to_square = reference_surface_distances(y_true == 1,
                                                                   y_pred == 1)
    assert pixel_to_square.tolist() == [3.0]
    pooled = (square_to_pixel.sum() + 3.0) / 25
    assert mean_surface_distance(y_true, y_pred) == pytest.approx(pooled)
    assert mean_surface_distance(y_true, y_pred) != pytest.approx(
        (square_to_pixel.mean() + 3.0) / 2
    )
    assert mean_surface_distance(y_true, y_pred, symmetric=False) == 3.0
    assert mean_surface_distance(y_pred, y_true, symmetric=False) == pytest.approx(
        square_to_pixel.mean()
    )
    # Distances run to the boundary, not the mask: the pixel lies inside the
    # square, yet its distance is 3.
    assert normalized_surface_dice(y_true, y_pred, tolerance=2.9) == 0.0


@pytest.mark.parametrize(("shape", "spacing"), [((3, 24, 20), None),
                                                ((2, 24, 20), (1.0, 0.6)),
                                                ((2, 10, 12, 9), (2.0, 0.7, 0.9))])
def test_surface_metrics_match_brute_force_reference(shape, spacing):
    y_true = random_label_batch(30, shape)
    y_pred = perturb(y_true, 31, fraction=0.05)
    labels = [0, 1, 2]
    # No distance on these grids equals 1.3, so rounding cannot move a tie.
    msd = np.stack([
        mean_surface_distance(y_true[i:i + 1], y_pred[i:i + 1], labels=labels,
                              average=None, spacing=spacing)
        for i in range(shape[0])
    ])
    nsd = np.stack([
        normalized_surface_dice(y_true[i:i + 1], y_pred[i:i + 1], labels=labels,
                                average=None, spacing=spacing, tolerance=1.3)
        for i in range(shape[0])
    ])
    masks = [[(y_true[i] == k, y_pred[i] == k) for k in labels] for i in range(shape[0])]
    np.testing.assert_allclose(
        msd, [[reference_msd(a, b, spacing) for a, b in row] for row in masks]
    )
    np.testing.assert_allclose(
        nsd, [[reference_nsd(a, b, 1.3, spacing) for a, b in row] for row in masks]
    )
    np.testing.assert_allclose(
        mean_surface_distance(y_true, y_pred, labels=labels, average=None,
                              spacing=spacing),
        msd.mean(axis=0),
    )
    assert mean_surface_distance(y_true, y_pred, labels=labels,
                                 spacing=spacing) == pytest.approx(msd.mean())


@pytest.mark.parametrize("metric", [hausdorff_distance, mean_surface_distance,
                                    normalized_surface_dice])
def test_surface_metrics_are_symmetric(metric):
    y_true = random_label_batch(32, (3, 16, 18))
    y_pred = perturb(y_true, 33, fraction=0.1)
    np.testing.assert_allclose(
        metric(y_true, y_pred, average=None, spacing=(1.3, 0.7)),
        metric(y_pred, y_true, average=None, spacing=(1.3, 0.7)),
    )


def test_scalar_spacing_scales_distances_and_tolerance():
    y_true = random_label_batch(34, (2, 14, 14))
    y_pred = perturb(y_true, 35, fraction=0.1)
    for metric in (hausdorff_distance, mean_surface_distance):
        np.testing.assert_allclose(
            metric(y_true, y_pred, average=None, spacing=2.5),
            2.5 * metric(y_true, y_pred, average=None),
        )
        np.testing.assert_allclose(
            metric(y_true, y_pred, average=None, spacing=np.array([0.8, 0.8])),
            metric(y_true, y_pred, average=None, spacing=0.8),
        )
    np.testing.assert_allclose(
        normalized_surface_dice(y_true, y_pred, average=None, spacing=2.5,
                                tolerance=2.5 * 1.5),
        normalized_surface_dice(y_true, y_pred, average=None, tolerance=1.5),
    )


def test_surface_metrics_identical_masks():
    y = random_label_batch(36, (2, 12, 12))
    assert mean_surface_distance(y, y) == 0.0
    assert normalized_surface_dice(y, y, tolerance=0.0) == 1.0
    full = np.ones((1, 5, 5), dtype=int)
    assert mean_surface_distance(full, full) == 0.0
    assert normalized_surface_dice(full, full) == 1.0


def test_surface_metrics_empty_handling():
    empty = np.zeros((6, 8), dtype=int)
    one = empty.copy()
    one[2, 3] = 1
    assert mean_surface_distance(empty, empty, labels=[1]) == 0.0
    assert normalized_surface_dice(empty, empty, labels=[1]) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all-NaN must not warn
        assert np.isnan(mean_surface_distance(one, empty))
        assert np.isnan(mean_surface_distance(empty, one, average=None)[0])
    assert normalized_surface_dice(one, empty) == 0.0
    assert normalized_surface_dice(empty, one) == 0.0
    assert mean_surface_distance(one, empty, empty_value=7.5) == 7.5
    assert mean_surface_distance(one, empty, empty_value="diagonal") == 10.0
    # The diagonal is measured in spacing units too.
    assert mean_surface_distance(one, empty, empty_value="diagonal",
                                 spacing=(2.0, 0.5)) == pytest.approx(np.hypot(12, 4))
    assert hausdorff_distance(one, empty, empty_value="diagonal",
                              spacing=(2.0, 0.5)) == pytest.approx(np.hypot(12, 4))
    # No foreground anywhere: nothing to score.
    assert mean_surface_distance(empty, empty) == 0.0
    assert normalized_surface_dice(empty, empty) == 1.0
    assert normalized_surface_dice(empty, empty, average=None).shape == (0,)


def test_surface_metrics_nan_images_are_skipped():
    y_true = np.zeros((2, 8, 8), dtype=int)
    y_pred = np.zeros((2, 8, 8), dtype=int)
    y_true[0, 1, 1] = 1  # class 1 missed in image 0
    y_true[1, 0, 0] = 1
    y_pred[1, 0, 3] = 1  # class 1 in image 1: 3 pixels off
    y_true[0, 5, 5] = 2  # class 2 missed in image 0, absent in image 1
    np.testing.assert_allclose(mean_surface_distance(y_true, y_pred, average=None),
                               [3.0, 0.0])
    np.testing.assert_allclose(
        normalized_surface_dice(y_true, y_pred, average=None, tolerance=3),
        [(0.0 + 1.0) / 2, (0.0 + 1.0) / 2],
    )


@pytest.mark.parametrize("metric", [mean_surface_distance, normalized_surface_dice])
def test_surface_metrics_image_weights(metric):
    y_true = random_label_batch(37, (4, 14, 14))
    y_pred = perturb(y_true, 38, fraction=0.1)
    w = np.array([2, 0, 1, 3])
    np.testing.assert_allclose(
        metric(y_true, y_pred, sample_weight=w, average=None),
        metric(np.repeat(y_true, w, axis=0), np.repeat(y_pred, w, axis=0),
               average=None),
    )
    np.testing.assert_allclose(
        metric(y_true, y_pred, sample_weight=2.5 * w, average=None),
        metric(y_true, y_pred, sample_weight=w, average=None),
    )
    per_image = np.stack([metric(y_true[i:i + 1], y_pred[i:i + 1], average=None,
                                 labels=[1, 2]) for i in range(4)])
    np.testing.assert_allclose(
        metric(y_true, y_pred, sample_weight=w, average=None, labels=[1, 2]),
        (w[:, None] * per_image).sum(0) / w.sum(),
    )


def test_surface_metrics_ignore_index():
    # A far-away false positive on an ignored pixel does not count.
    y_true = np.zeros((12, 12), dtype=int)
    y_true[2:5, 2:5] = 1
    y_pred = y_true.copy()
    y_pred[11, 11] = 1
    assert mean_surface_distance(y_true, y_pred) > 0
    assert normalized_surface_dice(y_true, y_pred) < 1
    y_true[11, 11] = 255
    assert mean_surface_distance(y_true, y_pred, ignore_index=255) == 0.0
    assert normalized_surface_dice(y_true, y_pred, ignore_index=255) == 1.0
    # Ignored pixels count as outside both masks: cutting the middle row out
    # of a 3 x 3 square leaves two 1 x 3 bars whose pixels are all boundary.
    y_true = np.zeros((7, 7), dtype=int)
    y_true[2:5, 2:5] = 1
    y_pred = y_true.copy()
    y_true[3, 2:5] = 255
    assert mean_surface_distance(y_true, y_pred, ignore_index=255) == 0.0


def test_surface_metrics_labels_order_and_background():
    y_true = np.zeros((1, 12, 12), dtype=int)
    y_pred = np.zeros((1, 12, 12), dtype=int)
    y_true[0, 1, 1] = y_pred[0, 1, 3] = 1  # class 1: 2 pixels off
    y_true[0, 8, 8] = y_pred[0, 8, 9] = 2  # class 2: 1 pixel off
    np.testing.assert_allclose(mean_surface_distance(y_true, y_pred, average=None),
                               [2.0, 1.0])
    np.testing.assert_allclose(
        mean_surface_distance(y_true, y_pred, labels=[2, 1], average=None), [1.0, 2.0]
    )
    np.testing.assert_allclose(
        normalized_surface_dice(y_true, y_pred, labels=[2, 1], average=None), [1.0, 0.0]
    )
    assert mean_surface_distance(y_true, y_pred) == pytest.approx(1.5)
    assert normalized_surface_dice(y_true, y_pred) == pytest.approx(0.5)
    # background=1: classes 0 and 2 are scored; class 0 (everything else)
    # differs by the four pixels that move.
    assert mean_surface_distance(y_true, y_pred, background=1, average=None).shape == (2,)
    assert mean_surface_distance(y_true, y_pred, include_background=True,
                                 average=None).shape == (3,)


def test_nsd_per_class_tolerance():
    y_true = random_label_batch(39, (3, 16, 16))
    y_pred = perturb(y_true, 40, fraction=0.15)
    per_class = normalized_surface_dice(y_true, y_pred, labels=[2, 1],
                                        tolerance=[0.5, 2.0], average=None)
    np.testing.assert_allclose(per_class, [
        normalized_surface_dice(y_true, y_pred, labels=[2], tolerance=0.5),
        normalized_surface_dice(y_true, y_pred, labels=[1], tolerance=2.0),
    ])
    assert per_class[0] < normalized_surface_dice(y_true, y_pred, labels=[2],
                                                  tolerance=2.0)
    assert normalized_surface_dice(
        y_true, y_pred, labels=[2, 1], tolerance=np.array([0.5, 2.0])
    ) == pytest.approx(per_class.mean())


def test_surface_metrics_inputs_are_not_modified():
    y_true = random_label_batch(41, (2, 8, 8))
    y_pred = perturb(y_true, 42)
    w = np.array([1.0, 2.0])
    spacing = np.array([1.0, 0.5])
    tolerance = [1.0, 1.0]
    copies = [a.copy() for a in (y_true, y_pred, w, spacing)]
    mean_surface_distance(y_true, y_pred, sample_weight=w, spacing=spacing,
                          ignore_index=2)
    normalized_surface_dice(y_true, y_pred, sample_weight=w, spacing=spacing,
                            labels=[1, 2], tolerance=tolerance)
    for original, kept in zip((y_true, y_pred, w, spacing), copies, strict=True):
        np.testing.assert_array_equal(original, kept)
    assert tolerance == [1.0, 1.0]


# ---------------------------------------------------------------------------
# Agreement with MONAI
# ---------------------------------------------------------------------------


@pytest.fixture
def monai_metrics():
    return pytest.importorskip("monai.metrics")


def one_hot(y, n_classes):
    """``(N, *spatial)`` labels to MONAI's ``(N, C, *spatial)`` float32."""
    import torch

    encoded = np.eye(n_classes, dtype=np.float32)[y]
    return torch.as_tensor(np.moveaxis(encoded, -1, 1))


def per_image(metric, y_true, y_pred, **kwargs):
    return np.stack([metric(y_true[i:i + 1], y_pred[i:i + 1], average=None, **kwargs)
                     for i in range(len(y_true))])


# MONAI computes in float32: agreement to float32 precision.
# MONAI 1.5+ warns about its own deprecated internal argument.
monai_warning = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
MONAI_RTOL, MONAI_ATOL = 1e-5, 1e-6

MONAI_CASES = [((3, 24, 20), None), ((3, 24, 20), (1.0, 0.6)),
               ((2, 10, 12, 9), None), ((2, 10, 12, 9), (2.0, 0.7, 0.9))]


def monai_pair(shape):
    """Blobs and a prediction that mixes them with other blobs; every
    class present in every mask, so that no empty-mask convention enters."""
    y_true = random_label_batch(50, shape)
    other = random_label_batch(51, shape)
    y_pred = np.where(np.random.default_rng(52).random(shape) < 0.7, y_true, other)
    for i in range(shape[0]):
        assert {0, 1, 2} <= set(np.unique(y_true[i])) & set(np.unique(y_pred[i]))
    return y_true, y_pred


@monai_warning
@pytest.mark.parametrize(("shape", "spacing"), MONAI_CASES)
def test_mean_surface_distance_matches_monai(monai_metrics, shape, spacing):
    y_true, y_pred = monai_pair(shape)
    labels = [0, 1, 2]
    for symmetric in (True, False):
        expected = monai_metrics.compute_average_surface_distance(
            one_hot(y_pred, 3), one_hot(y_true, 3), include_background=True,
            symmetric=symmetric, spacing=spacing,
        ).numpy()
        got = per_image(mean_surface_distance, y_true, y_pred, labels=labels,
                        spacing=spacing, symmetric=symmetric)
        np.testing.assert_allclose(got, expected, rtol=MONAI_RTOL, atol=MONAI_ATOL)
        assert got.min() > 0.1  # a real comparison, not of zeros
    expected = monai_metrics.compute_hausdorff_distance(
        one_hot(y_pred, 3), one_hot(y_true, 3), include_background=True,
        spacing=spacing,
    ).numpy()
    np.testing.assert_allclose(
        per_image(hausdorff_distance, y_true, y_pred, labels=labels, spacing=spacing),
        expected, rtol=MONAI_RTOL, atol=MONAI_ATOL,
    )


@monai_warning
@pytest.mark.parametrize(("shape", "spacing"), MONAI_CASES)
def test_normalized_surface_dice_matches_monai(monai_metrics, shape, spacing):
    y_true, y_pred = monai_pair(shape)
    # 1.0 and 2.0 are attained distances: ties at the tolerance count in both.
    for tolerance in (0.0, 1.0, 1.3, 2.0):
        expected = monai_metrics.compute_surface_dice(
            one_hot(y_pred, 3), one_hot(y_true, 3), [tolerance] * 3,
            include_background=True, spacing=spacing,
        ).numpy()
        got = per_image(normalized_surface_dice, y_true, y_pred, labels=[0, 1, 2],
                        tolerance=tolerance, spacing=spacing)
        np.testing.assert_allclose(got, expected, rtol=MONAI_RTOL, atol=MONAI_ATOL)
        assert 0.3 < got.mean() < 1.0
    # Per-class tolerances are MONAI's class_thresholds.
    expected = monai_metrics.compute_surface_dice(
        one_hot(y_pred, 3)[:, 1:], one_hot(y_true, 3)[:, 1:], [0.5, 2.0],
        include_background=True, spacing=spacing,
    ).numpy()
    got = per_image(normalized_surface_dice, y_true, y_pred, labels=[1, 2],
                    tolerance=[0.5, 2.0], spacing=spacing)
    np.testing.assert_allclose(got, expected, rtol=MONAI_RTOL, atol=MONAI_ATOL)


@monai_warning
def test_normalized_surface_dice_ignore_index_matches_monai(monai_metrics):
    y_true, y_pred = monai_pair((3, 24, 20))
    hidden = np.zeros(y_true.shape, dtype=bool)
    hidden[:, 8:14, :] = True
    y_true = np.where(hidden, 255, y_true)
    # MONAI's one-hot form: ignored pixels have no class at all, and an
    # ignore_index outside the classes masks exactly those pixels.
    target = one_hot(np.where(hidden, 0, y_true), 3) * one_hot(~hidden * 1, 2)[:, 1:]
    expected = monai_metrics.compute_surface_dice(
        one_hot(y_pred, 3), target, [1.0] * 3, include_background=True,
        ignore_index=255,
    ).numpy()
    got = per_image(normalized_surface_dice, y_true, y_pred, labels=[0, 1, 2],
                    ignore_index=255)
    np.testing.assert_allclose(got, expected, rtol=MONAI_RTOL, atol=MONAI_ATOL)


def test_empty_mask_conventions_differ_from_monai_as_documented(monai_metrics):
    empty = np.zeros((1, 8, 8), dtype=int)
    square = empty.copy()
    square[0, 2:4, 2:4] = 1
    cases = [(empty, empty), (square, empty), (empty, square)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty masks
        monai_msd = [monai_metrics.compute_average_surface_distance(
            one_hot(p, 2), one_hot(t, 2), symmetric=True).item() for t, p in cases]
        monai_nsd = [monai_metrics.compute_surface_dice(
            one_hot(p, 2), one_hot(t, 2), [1.0]).item() for t, p in cases]
    ours_msd = [mean_surface_distance(t, p, labels=[1]) for t, p in cases]
    ours_nsd = [normalized_surface_dice(t, p, labels=[1]) for t, p in cases]
    # Absent from both: MONAI NaN, here MSD 0 and NSD 1.
    assert np.isnan(monai_msd[0]) and np.isnan(monai_nsd[0])
    assert (ours_msd[0], ours_nsd[0]) == (0.0, 1.0)
    # Absent from one: MONAI MSD inf, here empty_value (NaN); NSD 0 in both.
    assert monai_msd[1:] == [np.inf, np.inf]
    assert np.all(np.isnan(ours_msd[1:]))
    assert monai_nsd[1:] == ours_nsd[1:] == [0.0, 0.0]


# ---------------------------------------------------------------------------
# Surface metric scorers and errors
# ---------------------------------------------------------------------------


def test_surface_scorers_call_the_metrics(scorer_data):
    X, y_true, y_pred = scorer_data
    est = FixedSegmenter(y_pred)
    diagonal = np.hypot(12, 14)
    msd = mean_surface_distance(y_true, y_pred, empty_value=diagonal)
    assert msd > 0
    assert neg_mean_surface_distance_scorer(est, X, y_true) == -msd
    nsd = normalized_surface_dice(y_true, y_pred)
    assert 0 < nsd < 1
    assert normalized_surface_dice_scorer(est, X, y_true) == nsd
    w = np.array([1.0, 0.0, 2.0, 0.5])
    assert normalized_surface_dice_scorer(
        est, X, y_true, sample_weight=w
    ) == normalized_surface_dice(y_true, y_pred, sample_weight=w)
    assert neg_mean_surface_distance_scorer(
        est, X, y_true, sample_weight=w
    ) == -mean_surface_distance(y_true, y_pred, sample_weight=w, empty_value=diagonal)


def test_surface_scorers_missed_structure_and_options(scorer_data):
    y_true = np.zeros((1, 6, 8), dtype=int)
    y_true[0, 2, 2] = 1
    missed = FixedSegmenter(np.zeros_like(y_true))
    assert neg_mean_surface_distance_scorer(missed, None, y_true) == -10.0
    assert normalized_surface_dice_scorer(missed, None, y_true) == 0.0
    X, y_true, y_pred = scorer_data
    est = FixedSegmenter(y_pred)
    nsd2 = make_segmentation_scorer("normalized_surface_dice", tolerance=2.0,
                                    spacing=(1.0, 0.5))
    assert nsd2(est, X, y_true) == normalized_surface_dice(
        y_true, y_pred, tolerance=2.0, spacing=(1.0, 0.5)
    )
    msd0 = make_segmentation_scorer("neg_mean_surface_distance", empty_value=0.0,
                                    labels=[1])
    assert msd0(est, X, y_true) == -mean_surface_distance(
        y_true, y_pred, empty_value=0.0, labels=[1]
    )


def test_grid_search_with_surface_scorers_selects_best_shift():
    y = random_label_batch(24, (6, 12, 12))
    grid = {"shift": [2, 0, 1]}
    for scorer in (neg_mean_surface_distance_scorer, normalized_surface_dice_scorer):
        search = GridSearchCV(ShiftSegmenter(), grid, scoring=scorer, cv=2)
        search.fit(y, y)
        assert search.best_params_ == {"shift": 0}
        scores = search.cv_results_["mean_test_score"]
        assert np.all(np.isfinite(scores))
        assert scores[1] == (0.0 if scorer is neg_mean_surface_distance_scorer else 1.0)


@pytest.mark.parametrize("metric", DISTANCE_METRICS)
def test_bad_spacing(metric):
    y = np.ones((2, 3, 4), dtype=int)
    for bad, match in [((1.0, 2.0, 3.0), "sequence of 2 numbers.*got 3 values"),
                       ([1.0], "sequence of 2 numbers"),
                       (0.0, "spacing must be a finite real number > 0"),
                       (-1.0, "spacing must be a finite real number > 0"),
                       (np.nan, "spacing must be"),
                       ("1", "spacing must be"),
                       ((1.0, np.inf), r"spacing\[1\] must be"),
                       ((1.0, [2.0]), r"spacing\[1\] must be"),
                       ((True, 1.0), r"spacing\[0\] must be")]:
        with pytest.raises(ValueError, match=match):
            metric(y, y, spacing=bad)


def test_bad_surface_metric_options():
    y = np.ones((2, 3, 3), dtype=int)
    for metric in (mean_surface_distance, normalized_surface_dice):
        with pytest.raises(ValueError, match="average must be one of"):
            metric(y, y, average="micro")
        with pytest.raises(TypeError, match="ignore_index"):
            metric(y, y, ignore_index=1.5)
    with pytest.raises(ValueError, match="empty_value"):
        mean_surface_distance(y, y, empty_value="max")
    with pytest.raises(TypeError, match="empty_value"):
        mean_surface_distance(y, y, empty_value=None)
    with pytest.raises(TypeError, match="symmetric must be a bool"):
        mean_surface_distance(y, y, symmetric="yes")
    for bad in (-0.5, np.nan, np.inf, "1", None, True):
        with pytest.raises(ValueError, match="tolerance must be a finite real number"):
            normalized_surface_dice(y, y, tolerance=bad)
    with pytest.raises(ValueError, match="needs explicit labels.*labels=None"):
        normalized_surface_dice(y, y, tolerance=[1.0])
    with pytest.raises(ValueError, match=r"one value per label \(2\); got 3"):
        normalized_surface_dice(y, y, labels=[0, 1], tolerance=[1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"tolerance\[1\] must be"):
        normalized_surface_dice(y, y, labels=[0, 1], tolerance=[1.0, -2.0])
    with pytest.raises(ValueError, match="metric must be one of"):
        make_segmentation_scorer("surface_dice")


# ---------------------------------------------------------------------------
# Calibration: reliability curve and expected calibration error
# ---------------------------------------------------------------------------

CALIBRATION_METRICS = [reliability_curve, expected_calibration_error]


@pytest.fixture
def probabilities():
    """300 predictions over 4 classes, labels drawn from sharpened probabilities."""
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.full(4, 0.7), size=300)
    sharp = proba**0.5 / (proba**0.5).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in sharp])
    return y, proba, rng.integers(1, 4, size=300)


def assert_same_calibration(first, second):
    """Two calls of the metrics give the same curve, edges and ECE."""
    (acc1, conf1, w1, edges1), ece1 = first
    (acc2, conf2, w2, edges2), ece2 = second
    np.testing.assert_array_equal(edges1, edges2)
    np.testing.assert_allclose(acc1, acc2, rtol=1e-12)
    np.testing.assert_allclose(conf1, conf2, rtol=1e-12)
    np.testing.assert_allclose(w1, w2, rtol=1e-12)
    assert ece1 == pytest.approx(ece2, rel=1e-12, abs=1e-15)


def calibration(y, proba, **kwargs):
    return (reliability_curve(y, proba, **kwargs),
            expected_calibration_error(y, proba, **kwargs))


def test_calibration_hand_computed():
    y = np.array([0, 1, 1, 2])
    proba = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1],
                      [0.7, 0.2, 0.1], [0.15, 0.15, 0.7]])
    # confidences 0.9 (right), 0.6 (right), 0.7 (wrong), 0.7 (right)
    accuracy, confidence, bin_weight, edges = reliability_curve(y, proba, n_bins=5)
    np.testing.assert_allclose(edges, [0, 0.2, 0.4, 0.6, 0.8, 1])
    np.testing.assert_array_equal(bin_weight, [0, 0, 1, 2, 1])
    np.testing.assert_allclose(accuracy, [np.nan, np.nan, 1, 0.5, 1])
    np.testing.assert_allclose(confidence, [np.nan, np.nan, 0.6, 0.7, 0.9])
    ece = expected_calibration_error(y, proba, n_bins=5)
    assert ece == pytest.approx((0.4 + 2 * 0.2 + 0.1) / 4)
    weighted = expected_calibration_error(y, proba, n_bins=5, sample_weight=[1, 1, 2, 1])
    assert weighted == pytest.approx((0.4 + 3 * abs(1 / 3 - 0.7) + 0.1) / 5)
    # One bin: overall accuracy 3/4 against mean confidence 0.725.
    assert expected_calibration_error(y, proba, n_bins=1) == pytest.approx(0.025)
    # Two bins of equal count split at 0.7: {0.6, 0.7, 0.7} and {0.9}.
    accuracy, confidence, bin_weight, edges = reliability_curve(
        y, proba, n_bins=2, strategy="quantile")
    np.testing.assert_array_equal(edges, [0, 0.7, 1])
    np.testing.assert_array_equal(bin_weight, [3, 1])
    np.testing.assert_allclose(accuracy, [2 / 3, 1])
    np.testing.assert_allclose(confidence, [2 / 3, 0.9])
    assert expected_calibration_error(
        y, proba, n_bins=2, strategy="quantile") == pytest.approx(0.1 / 4)


def test_calibration_binary_and_classes():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.7, 0.4, 0.25])
    # 1-D: the probability of the second class; confidences max(p, 1 - p) are
    # 0.9, 0.7, 0.6 (wrong: predicted 0) and 0.75.
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(
        (0.4 * 0 + 0.6 + 2 * 0.275 + 0.1) / 4)
    assert_same_calibration(calibration(y, p, n_bins=5),
                            calibration(y, np.column_stack([1 - p, p]), n_bins=5))
    names = np.array(["no", "yes"])
    assert_same_calibration(calibration(names[y], p, classes=names),
                            calibration(y, p))
    # Columns in any order, as long as classes says which is which.
    proba = np.column_stack([1 - p, p])
    assert_same_calibration(calibration(1 - y, proba[:, ::-1], classes=[1, 0]),
                            calibration(1 - y, proba))


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_perfect_gives_zero(strategy):
    y = np.array([2, 0, 1, 1, 0])
    assert expected_calibration_error(y, np.eye(3)[y], strategy=strategy) == 0.0
    # Not only certainty: in each bin accuracy equals confidence.
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    proba = np.array([[0.75, 0.25]] * 4 + [[0.25, 0.75]] * 4)
    assert expected_calibration_error(y, proba, n_bins=4, strategy=strategy) == 0.0
    # Every prediction wrong with confidence 1: the worst case.
    assert expected_calibration_error(1 - y, np.eye(2)[y], strategy=strategy) == 1.0


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [1, 7, 10])
def test_calibration_integer_weights_equal_repeated_rows(probabilities, strategy,
                                                          n_bins):
    y, proba, k = probabilities
    options = {"n_bins": n_bins, "strategy": strategy}
    weighted = calibration(y, proba, sample_weight=k, **options)
    repeated = calibration(np.repeat(y, k), np.repeat(proba, k, axis=0), **options)
    assert_same_calibration(weighted, repeated)
    assert 0.01 < weighted[1] < 0.5


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_scaled_weights_change_nothing(probabilities, strategy):
    y, proba, k = probabilities
    for weight in (k, None):
        expected = calibration(y, proba, sample_weight=weight, strategy=strategy)
        base = np.ones(len(y)) if weight is None else weight
        for scale in (1e-5, 0.1, 3.7, 1e7):
            (acc, conf, bin_weight, edges), ece = calibration(
                y, proba, sample_weight=base * scale, strategy=strategy)
            # bin_weight is a sum of weights: it scales, nothing else does
            assert_same_calibration(((acc, conf, bin_weight / scale, edges), ece),
                                    expected)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_zero_weight_equals_removing_the_row(probabilities, strategy):
    y, proba, k = probabilities
    weight = k.astype(float)
    weight[::3] = 0
    kept = weight > 0
    assert_same_calibration(
        calibration(y, proba, sample_weight=weight, strategy=strategy),
        calibration(y[kept], proba[kept], sample_weight=weight[kept], strategy=strategy),
    )


def test_quantile_edges_equal_an_exact_weighted_quantile(probabilities):
    y, proba, k = probabilities
    confidence = proba.max(axis=1)
    order = np.argsort(confidence)
    cumulative = np.cumsum(k[order])  # integers: exact
    total = int(cumulative[-1])
    for n_bins in (3, 10, 17):
        *_, edges = reliability_curve(y, proba, n_bins=n_bins, strategy="quantile",
                                      sample_weight=k)
        # the smallest confidence whose cumulative weight reaches b / n_bins
        first = [np.argmax(n_bins * cumulative >= b * total) for b in range(1, n_bins)]
        np.testing.assert_array_equal(edges, [0, *confidence[order][first], 1])
        _, _, bin_weight, _ = reliability_curve(y, proba, n_bins=n_bins,
                                                strategy="quantile")
        # 300 distinct confidences: the bins are as even as counts allow.
        assert bin_weight.max() - bin_weight.min() <= 1


def test_quantile_bins_with_tied_confidences():
    y = np.array([0, 1, 1, 0, 1])
    proba = np.eye(2)[[0, 1, 1, 0, 0]]  # all confidence 1, the last one wrong
    accuracy, confidence, bin_weight, edges = reliability_curve(
        y, proba, n_bins=4, strategy="quantile")
    np.testing.assert_array_equal(edges, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(bin_weight, [5, 0, 0, 0])
    assert accuracy[0] == 0.8 and np.all(np.isnan(accuracy[1:]))
    assert expected_calibration_error(y, proba, n_bins=4,
                                      strategy="quantile") == pytest.approx(0.2)


def test_calibration_agrees_with_the_display(probabilities):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skweight.display import ReliabilityDisplay

    y, proba, k = probabilities
    try:
        for strategy in ("uniform", "quantile"):
            options = {"n_bins": 8, "strategy": strategy, "sample_weight": k}
            shown = ReliabilityDisplay.from_predictions(y, proba, **options)
            (accuracy, confidence, bin_weight, edges), ece = calibration(
                y, proba, **options)
            np.testing.assert_array_equal(shown.accuracy, accuracy)
            np.testing.assert_array_equal(shown.confidence, confidence)
            np.testing.assert_array_equal(shown.bin_weight, bin_weight)
            np.testing.assert_array_equal(shown.bin_edges, edges)
            assert shown.ece == ece
    finally:
        plt.close("all")


def test_calibration_inputs_are_not_modified(probabilities):
    y, proba, k = probabilities
    copies = y.copy(), proba.copy(), k.copy()
    calibration(y, proba, sample_weight=k, strategy="quantile")
    for before, after in zip(copies, (y, proba, k), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("metric", CALIBRATION_METRICS)
def test_calibration_bad_input_messages(metric, probabilities):
    y, proba, _ = probabilities
    outside, missing = proba.copy(), proba.copy()
    outside[7] = [1.25, -0.25, 0, 0]  # sums to 1
    missing[7, 1] = np.nan
    cases = [
        (ValueError, r"y_prob must hold probabilities in \[0, 1\]; got values from "
                     r"-0\.25 to 1\.25\.", {"y_prob": outside}),
        (ValueError, r"y_prob must hold probabilities in \[0, 1\]; it contains NaN",
         {"y_prob": missing}),
        (ValueError, r"rows of y_prob must sum to 1.*not logits", {"y_prob": proba / 2}),
        (ValueError, r"y_prob must have shape \(N, n_classes\).*got shape \(300, 1\)",
         {"y_prob": proba[:, :1]}),
        (ValueError, "y_prob is empty", {"y_true": y[:0], "y_prob": proba[:0]}),
        (TypeError, "y_prob must be an array of probabilities; got a list",
         {"y_prob": [["a", "b"]] * 300}),
        (ValueError, "y_true has 299 labels but y_prob has 300 rows", {"y_true": y[1:]}),
        (ValueError, r"y_true contains labels that are not classes of y_prob: \[7\]"
                     r".*pass classes=", {"y_true": np.r_[y[:-1], 7]}),
        (ValueError, r"classes must list the 4 labels of y_prob's columns, got \[0, 1\]",
         {"classes": [0, 1]}),
        (ValueError, "n_bins must be an int >= 1; got 0", {"n_bins": 0}),
        (ValueError, "n_bins must be an int >= 1; got 2.5", {"n_bins": 2.5}),
        (ValueError, "n_bins must be an int >= 1; got True", {"n_bins": True}),
        (ValueError, r"strategy must be \"uniform\" or \"quantile\"; got 'equal'",
         {"strategy": "equal"}),
        (ValueError, r"strategy must be \"uniform\" or \"quantile\"; got None",
         {"strategy": None}),
        (ValueError, r"sample_weight.*\(3,\)", {"sample_weight": np.ones(3)}),
        (ValueError, "sample_weight contains negative values",
         {"sample_weight": -np.ones(300)}),
        (ValueError, "sample_weight has only zero weights",
         {"sample_weight": np.zeros(300)}),
    ]
    for error, match, changes in cases:
        args = {"y_true": y, "y_prob": proba, **changes}
        with pytest.raises(error, match=match):
            metric(args.pop("y_true"), args.pop("y_prob"), **args)


# -- overlapping 0/1 masks (multilabel=True) -----------------------------------------


def test_multilabel_masks_are_scored_per_channel():
    rng = np.random.default_rng(0)
    Y = (rng.random((4, 3, 6, 6)) < 0.4).astype(int)
    P = (rng.random((4, 3, 6, 6)) < 0.4).astype(int)
    for score in (dice_score, iou_score):
        per = score(Y, P, multilabel=True, average=None)
        expected = [score(Y[:, c], P[:, c], labels=[1]) for c in range(3)]
        np.testing.assert_allclose(per, expected)
        assert score(Y, P, multilabel=True) == pytest.approx(np.mean(expected))
        np.testing.assert_allclose(score(Y, P, multilabel=True, labels=[2], average=None),
                                   expected[2:])
        micro = [score(Y[:, c], P[:, c], labels=[1], average="micro") for c in range(3)]
        assert score(Y, P, multilabel=True, average="micro") == pytest.approx(
            np.mean(micro))
    # weights per image, per pixel (every channel) or per channel
    w = rng.uniform(0.5, 2, 4)
    per_pixel = np.broadcast_to(w[:, None, None], (4, 6, 6))
    a = dice_score(Y, P, multilabel=True, sample_weight=w)
    b = dice_score(Y, P, multilabel=True, sample_weight=np.broadcast_to(
        w[:, None, None, None], Y.shape))
    assert a == pytest.approx(dice_score(Y, P, multilabel=True, sample_weight=w))
    assert np.isfinite(dice_score(Y, P, multilabel=True, sample_weight=per_pixel))
    assert np.isfinite(b)


def test_multilabel_masks_bad_input():
    Y = np.zeros((2, 2, 4, 4), int)
    with pytest.raises(ValueError, match="must be 0/1 masks of the same shape"):
        dice_score(Y, Y[:, :1], multilabel=True)
    with pytest.raises(ValueError, match="y_pred must hold 0/1 masks"):
        dice_score(Y, Y + 2, multilabel=True)
