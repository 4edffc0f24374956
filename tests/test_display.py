"""Tests of skweight.display: the numbers each display computes and draws."""

import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression

from skweight import CNNClassifier, CNNSegmenter
from skweight.datasets import make_disk_scenes
from skweight.display import (
    MultiLabelPrecisionRecallDisplay,
    ReliabilityDisplay,
    SegmentationDisplay,
    TrainingCurveDisplay,
)
from skweight.metrics import expected_calibration_error

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits(digit_images):
    return digit_images(n_class=4, flat=True)


@pytest.fixture(scope="module")
def classifier(digits):
    X, y = digits
    return CNNClassifier(input_shape=(1, 8, 8), max_epochs=3, train_split=0.25,
                         module__channels=(4, 8), module__hidden_units=16,
                         random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def scenes():
    return make_disk_scenes(6, image_size=16, square_size=4, random_state=0)


@pytest.fixture(scope="module")
def segmenter(scenes):
    X, y = scenes
    return CNNSegmenter(max_epochs=2, module__channels=(4, 8), random_state=0).fit(X, y)


@pytest.mark.slow
def test_import_does_not_load_matplotlib():
    code = "import sys, skweight.display; print('matplotlib' in sys.modules)"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    curves = TrainingCurveDisplay(np.arange(1, 3), {"train_loss": np.array([1.0, 0.5])})
    with pytest.raises(ImportError, match=r"skweight\[plot\]"):
        curves.plot()


# ---------------------------------------------------------------------------
# TrainingCurveDisplay
# ---------------------------------------------------------------------------


def test_training_curves_equal_the_history(classifier):
    shown = TrainingCurveDisplay.from_estimator(classifier)
    history = classifier.history_
    np.testing.assert_array_equal(shown.epochs, [1, 2, 3])
    assert list(shown.curves) == ["train_loss", "valid_loss"]
    for key in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(shown.curves[key], history[:, key], rtol=0, atol=0)
        np.testing.assert_allclose(shown.lines_[key].get_ydata(), history[:, key])
        np.testing.assert_array_equal(shown.lines_[key].get_xdata(), [1, 2, 3])
    assert shown.ax_.get_ylabel() == "loss"
    assert shown.figure_ is shown.ax_.figure


def test_training_curves_other_keys_shared_axes_and_log_scale(classifier):
    fig, ax = plt.subplots()
    first = TrainingCurveDisplay.from_estimator(classifier, keys="train_loss", ax=ax,
                                                name="a")
    second = TrainingCurveDisplay.from_estimator(classifier, keys=["dur"], ax=ax,
                                                 log_scale=True, line_kw={"color": "k"})
    assert first.ax_ is ax and second.ax_ is ax and second.figure_ is fig
    assert [line.get_label() for line in ax.get_lines()] == ["a: train_loss", "dur"]
    np.testing.assert_allclose(second.curves["dur"], classifier.history_[:, "dur"])
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "value"
    assert second.lines_["dur"].get_color() == "k"


class _Net:
    """Stand-in for a fitted skorch net: an estimator with a history_."""

    def __init__(self, history):
        self.history_ = history

    def fit(self):
        pass


def test_training_curves_nan_where_a_key_is_missing():
    net = _Net([{"epoch": 1, "train_loss": 2.0},
                {"epoch": 2, "train_loss": 1.0, "valid_loss": 1.5}])
    shown = TrainingCurveDisplay.from_estimator(net)
    np.testing.assert_array_equal(shown.curves["valid_loss"], [np.nan, 1.5])
    np.testing.assert_array_equal(shown.curves["train_loss"], [2.0, 1.0])


def test_training_curves_errors(classifier):
    with pytest.raises(NotFittedError, match="no training history"):
        TrainingCurveDisplay.from_estimator(CNNClassifier())
    with pytest.raises(TypeError, match="estimator must be"):
        TrainingCurveDisplay.from_estimator(object())
    with pytest.raises(ValueError, match=r"\['valid_acc'\] are not recorded.*train_loss"):
        TrainingCurveDisplay.from_estimator(classifier, keys=["valid_acc"])
    with pytest.raises(TypeError, match="keys must be"):
        TrainingCurveDisplay.from_estimator(classifier, keys=[1])
    with pytest.raises(TypeError, match="'note' holds str values, not numbers"):
        TrainingCurveDisplay.from_estimator(_Net([{"epoch": 1, "note": "slow"}]),
                                            keys="note")
    with pytest.raises(ValueError, match="neither train_loss nor valid_loss"):
        TrainingCurveDisplay.from_estimator(_Net([{"epoch": 1, "dur": 0.1}]))


# ---------------------------------------------------------------------------
# SegmentationDisplay
# ---------------------------------------------------------------------------


def _hand_count(y_true, y_pred, background=0, label=None, ignore=None):
    """Count the error pixels one by one."""
    fp = fn = wrong = 0
    for t, p in zip(y_true.ravel().tolist(), y_pred.ravel().tolist(), strict=True):
        if t == ignore:
            continue
        if label is None:
            fp += t == background and p != background
            fn += t != background and p == background
            wrong += t != background and p != background and t != p
        else:
            fp += p == label and t != label
            fn += t == label and p != label
    return {"false_positive": fp, "false_negative": fn, "wrong_class": wrong}


@pytest.fixture
def masks():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=(9, 11))
    y_pred = np.where(rng.random((9, 11)) < 0.6, y_true, rng.integers(0, 3, size=(9, 11)))
    return rng.random((9, 11)), y_true, y_pred


@pytest.mark.parametrize("label", [None, 1, 2])
def test_error_maps_equal_a_hand_count(masks, label):
    image, y_true, y_pred = masks
    shown = SegmentationDisplay.from_predictions(image, y_true, y_pred, label=label)
    expected = _hand_count(y_true, y_pred, label=label)
    assert shown.error_counts == expected
    assert sum(expected.values()) > 10  # the masks do disagree
    # the maps are disjoint and hold exactly the pixels counted
    total = shown.false_positive.astype(int) + shown.false_negative + shown.wrong_class
    assert total.max() == 1 and total.sum() == sum(expected.values())


def test_error_maps_background_and_ignore_index(masks):
    image, y_true, y_pred = masks
    shown = SegmentationDisplay(image, y_true, y_pred, background=2, ignore_index=1)
    assert shown.error_counts == _hand_count(y_true, y_pred, background=2, ignore=1)
    assert not np.any(shown.false_negative[y_true == 1])


def test_segmentation_panels_and_overlay_colours(masks):
    image, y_true, y_pred = masks
    before = [a.copy() for a in masks]
    shown = SegmentationDisplay.from_predictions(image, y_true, y_pred, alpha=0.25)
    for a, b in zip(masks, before, strict=True):
        np.testing.assert_array_equal(a, b)  # the caller's arrays are untouched
    assert shown.ax_.shape == (4,) and shown.figure_ is shown.ax_[0].figure
    assert [ax.get_title() for ax in shown.ax_[:3]] == ["image", "truth", "prediction"]
    counts = shown.error_counts
    assert shown.ax_[3].get_title() == (
        f"errors: {counts['false_positive']} FP, {counts['false_negative']} FN, "
        f"{counts['wrong_class']} wrong class")
    overlay = np.asarray(shown.ax_[3].get_images()[1].get_array())
    row, col = np.argwhere(shown.false_positive)[0]
    np.testing.assert_allclose(overlay[row, col], [0.9, 0.1, 0.1, 0.25])
    row, col = np.argwhere(shown.false_negative)[0]
    np.testing.assert_allclose(overlay[row, col], [0.1, 0.35, 0.95, 0.25])
    assert np.all(overlay[~(shown.false_positive | shown.false_negative
                            | shown.wrong_class), 3] == 0)
    # the truth panel colours each foreground pixel, and nothing else
    truth = np.asarray(shown.ax_[1].get_images()[1].get_array())
    np.testing.assert_array_equal(truth[..., 3] > 0, y_true != 0)


def test_segmentation_reuses_given_axes_and_image_layouts(masks):
    image, y_true, y_pred = masks
    fig, axes = plt.subplots(2, 2)
    shown = SegmentationDisplay.from_predictions(np.stack([image] * 3), y_true, y_pred,
                                                 ax=axes)
    assert shown.figure_ is fig and list(shown.ax_) == list(axes.ravel())
    assert shown.image.shape == (9, 11, 3)
    assert SegmentationDisplay(image[None], y_true, y_pred).image.shape == (9, 11)


def test_segmentation_errors(masks):
    image, y_true, y_pred = masks
    with pytest.raises(ValueError, match=r"image must have shape.*got shape \(2, 9, 11\)"):
        SegmentationDisplay(np.stack([image] * 2), y_true, y_pred)
    with pytest.raises(ValueError, match=r"y_pred must be a label mask of shape"):
        SegmentationDisplay(image, y_true, y_pred[:, :5])
    with pytest.raises(ValueError, match="integer class labels"):
        SegmentationDisplay(image, y_true + 0.5, y_pred)
    with pytest.raises(TypeError, match="label must be an int"):
        SegmentationDisplay(image, y_true, y_pred, label="1")
    with pytest.raises(ValueError, match="ax must hold 4"):
        SegmentationDisplay(image, y_true, y_pred).plot(ax=plt.subplots(1, 3)[1])
    with pytest.raises(ValueError, match="alpha"):
        SegmentationDisplay(image, y_true, y_pred).plot(alpha=2)


def test_segmentation_from_estimator(segmenter, scenes):
    X, y = scenes
    shown = SegmentationDisplay.from_estimator(segmenter, X, y, index=-2)
    np.testing.assert_array_equal(shown.y_pred, segmenter.predict(X)[4])
    np.testing.assert_array_equal(shown.y_true, y[4])
    np.testing.assert_array_equal(shown.image, X[4, 0])
    assert shown.error_counts == _hand_count(y[4], shown.y_pred)
    per_class = SegmentationDisplay.from_estimator(segmenter, X, y, index=4, label=1)
    assert per_class.error_counts == _hand_count(y[4], shown.y_pred, label=1)


def test_segmentation_from_estimator_errors(segmenter, scenes):
    X, y = scenes
    with pytest.raises(NotFittedError):
        SegmentationDisplay.from_estimator(CNNSegmenter(), X, y)
    with pytest.raises(ValueError, match=r"index must be in \[-6, 6\).*got 6"):
        SegmentationDisplay.from_estimator(segmenter, X, y, index=6)
    with pytest.raises(ValueError, match="label=7 is not among the classes"):
        SegmentationDisplay.from_estimator(segmenter, X, y, label=7)
    with pytest.raises(ValueError, match="shape"):
        SegmentationDisplay.from_estimator(segmenter, X, y[:, None])


# ---------------------------------------------------------------------------
# ReliabilityDisplay
# ---------------------------------------------------------------------------


def _hand_reliability(y_true, proba, n_bins, weight):
    """Bins (lo, hi] of [0, 1] filled one prediction at a time."""
    totals = np.zeros((n_bins, 3))  # weight, weighted hits, weighted confidence
    for label, row, w in zip(y_true, proba, weight, strict=True):
        confidence = row.max()
        b = 0
        while b < n_bins - 1 and confidence > (b + 1) / n_bins:
            b += 1
        totals[b] += w, w * (row.argmax() == label), w * confidence
    filled = totals[:, 0] > 0
    acc = totals[filled, 1] / totals[filled, 0]
    conf = totals[filled, 2] / totals[filled, 0]
    ece = np.sum(totals[filled, 0] * np.abs(acc - conf)) / totals[:, 0].sum()
    return totals[:, 0], acc, conf, ece


@pytest.fixture
def predictions():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.full(4, 0.7), size=300)
    # labels drawn from sharpened probabilities: over-confident-ish, not trivial
    sharp = proba**0.5 / (proba**0.5).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in sharp])
    return y, proba, rng.integers(1, 4, size=300).astype(float)


@pytest.mark.parametrize("n_bins", [1, 7, 10])
def test_reliability_bins_equal_a_hand_computation(predictions, n_bins):
    y, proba, weight = predictions
    for w in (None, weight):
        shown = ReliabilityDisplay.from_predictions(y, proba, n_bins=n_bins,
                                                    sample_weight=w)
        bin_weight, acc, conf, ece = _hand_reliability(
            y, proba, n_bins, np.ones(len(y)) if w is None else w)
        filled = shown.bin_weight > 0
        np.testing.assert_allclose(shown.bin_weight, bin_weight)
        np.testing.assert_allclose(shown.accuracy[filled], acc)
        np.testing.assert_allclose(shown.confidence[filled], conf)
        assert np.all(np.isnan(shown.accuracy[~filled]))
        assert shown.ece == pytest.approx(ece, rel=1e-12)
        np.testing.assert_allclose(shown.bin_edges, np.linspace(0, 1, n_bins + 1))
        # the curve drawn is the filled bins' (confidence, accuracy)
        np.testing.assert_allclose(shown.line_.get_xdata(), conf)
        np.testing.assert_allclose(shown.line_.get_ydata(), acc)
    assert 0.01 < shown.ece < 0.5


def test_reliability_weights_count_as_copies(predictions):
    y, proba, weight = predictions
    k = weight.astype(int)
    weighted = ReliabilityDisplay.from_predictions(y, proba, sample_weight=weight * 1e-5)
    copies = ReliabilityDisplay.from_predictions(np.repeat(y, k), np.repeat(proba, k, 0))
    assert weighted.ece == pytest.approx(copies.ece, rel=1e-12)
    np.testing.assert_allclose(weighted.bin_weight * 1e5, copies.bin_weight)


def test_reliability_perfect_and_binary_predictions():
    y = np.array([0, 1, 1, 0])
    shown = ReliabilityDisplay.from_predictions(y, np.eye(2)[y])
    assert shown.ece == 0 and shown.bin_weight[-1] == 4
    # a 1-D array is the probability of the second class
    binary = ReliabilityDisplay.from_predictions(y, np.array([0.2, 0.7, 0.4, 0.35]))
    # confidences 0.8, 0.7, 0.6, 0.65 (right, right, wrong, right)
    assert binary.ece == pytest.approx((0.2 + 0.3 + 0.35 + 0.6) / 4)


def test_reliability_labels_through_classes(predictions):
    y, proba, _ = predictions
    names = np.array(["a", "b", "c", "d"])
    by_name = ReliabilityDisplay.from_predictions(names[y], proba, classes=names)
    by_index = ReliabilityDisplay.from_predictions(y, proba)
    assert by_name.ece == by_index.ece
    # unsorted classes: the columns follow the order given
    order = np.array([2, 0, 3, 1])
    shuffled = ReliabilityDisplay.from_predictions(y, proba[:, order], classes=order)
    assert shuffled.ece == pytest.approx(by_index.ece, rel=1e-12)


def test_reliability_displays_share_axes(predictions):
    y, proba, _ = predictions
    first = ReliabilityDisplay.from_predictions(y, proba, name="raw")
    flat = (proba + 1) / (proba + 1).sum(axis=1, keepdims=True)
    second = ReliabilityDisplay.from_predictions(y, flat, name="flat", ax=first.ax_)
    labels = [line.get_label() for line in first.ax_.get_lines()]
    assert labels == ["perfectly calibrated", f"raw (ECE = {first.ece:.3f})",
                      f"flat (ECE = {second.ece:.3f})"]
    assert second.figure_ is first.figure_
    assert [t.get_text() for t in first.ax_.get_legend().get_texts()] == labels


def test_reliability_from_estimator(classifier, digits):
    X, y = digits
    shown = ReliabilityDisplay.from_estimator(classifier, X, y, n_bins=5)
    direct = ReliabilityDisplay.from_predictions(y, classifier.predict_proba(X), n_bins=5)
    assert shown.ece == direct.ece
    assert shown.line_.get_label() == f"CNNClassifier (ECE = {shown.ece:.3f})"
    # strategy reaches the metrics: bins of about equal count
    quantile = ReliabilityDisplay.from_estimator(classifier, X, y, n_bins=5,
                                                 strategy="quantile")
    assert quantile.ece == expected_calibration_error(
        y, classifier.predict_proba(X), n_bins=5, strategy="quantile")
    assert quantile.bin_weight.max() - quantile.bin_weight.min() <= 0.05 * len(y)
    # prior correction after fit: a second curve on the same axes
    corrected = classifier.set_params(class_prior="train")
    try:
        again = ReliabilityDisplay.from_estimator(corrected, X, y, n_bins=5,
                                                  name="train prior", ax=shown.ax_)
    finally:
        classifier.set_params(class_prior=None)
    assert len(shown.ax_.get_lines()) == 3 and again.ax_ is shown.ax_


def test_reliability_from_segmenter_counts_pixels(segmenter, scenes):
    X, y = scenes
    w = np.arange(1.0, 7.0)
    shown = ReliabilityDisplay.from_estimator(segmenter, X, y, sample_weight=w)
    proba = segmenter.predict_proba(X)
    rows = np.moveaxis(proba, 1, -1).reshape(-1, proba.shape[1])
    pixel_w = np.repeat(w, 16 * 16)
    direct = ReliabilityDisplay.from_predictions(y.ravel(), rows, sample_weight=pixel_w)
    assert shown.ece == pytest.approx(direct.ece, rel=1e-12)
    assert shown.bin_weight.sum() == pytest.approx(pixel_w.sum())


def test_reliability_errors(classifier, digits, predictions):
    X, y = digits
    y4, proba, _ = predictions
    with pytest.raises(NotFittedError):
        ReliabilityDisplay.from_estimator(CNNClassifier(), X, y)
    fitted = LinearRegression().fit(X, y)
    with pytest.raises(TypeError, match="no predict_proba"):
        ReliabilityDisplay.from_estimator(fitted, X, y)
    with pytest.raises(ValueError, match="sum to 1"):
        ReliabilityDisplay.from_predictions(y4, proba * 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\].*got values from -"):
        ReliabilityDisplay.from_predictions(y4, -proba)
    with pytest.raises(ValueError, match=r"not classes of y_prob: \[7\].*pass classes="):
        ReliabilityDisplay.from_predictions(np.r_[y4[:-1], 7], proba)
    with pytest.raises(ValueError, match="n_bins must be an int >= 1; got 0"):
        ReliabilityDisplay.from_predictions(y4, proba, n_bins=0)
    with pytest.raises(ValueError, match="y_true has 299 labels but y_prob has 300"):
        ReliabilityDisplay.from_predictions(y4[:-1], proba)
    with pytest.raises(ValueError, match=r"shape \(N, n_classes\)"):
        ReliabilityDisplay.from_predictions(y4, proba[:, :1])
    with pytest.raises(ValueError, match="sample_weight"):
        ReliabilityDisplay.from_predictions(y4, proba, sample_weight=np.ones(3))


# ---------------------------------------------------------------------------
# MultiLabelPrecisionRecallDisplay
# ---------------------------------------------------------------------------


@pytest.fixture
def multilabel_scores():
    """Four labels of falling prevalence, scores that rank them imperfectly."""
    rng = np.random.default_rng(3)
    Y = (rng.random((400, 4)) < [0.5, 0.2, 0.08, 0.03]).astype(int)
    proba = np.clip(0.35 * Y + rng.random(Y.shape) * 0.7, 0, 1)
    return Y, proba, rng.integers(1, 4, size=400).astype(float)


@pytest.fixture(scope="module")
def multilabel_fit(digits, tiny_cnn):
    """A CNNClassifier on three overlapping labels of the 8x8 digits."""
    X, y = digits
    Y = np.stack([np.isin(y, (0, 1)), np.isin(y, (1, 2)), y == 3], axis=1).astype(int)
    clf = CNNClassifier(input_shape=(1, 8, 8), max_epochs=3, **tiny_cnn).fit(X, Y)
    return clf, X, Y


def test_multilabel_pr_numbers_equal_scikit_learns_per_label(multilabel_scores):
    from sklearn.metrics import average_precision_score, precision_recall_curve

    Y, proba, w = multilabel_scores
    for weight in (None, w):
        shown = MultiLabelPrecisionRecallDisplay.from_predictions(
            Y, proba, sample_weight=weight)
        for c in range(4):
            p, r, _ = precision_recall_curve(Y[:, c], proba[:, c], sample_weight=weight)
            np.testing.assert_array_equal(shown.precision[c], p)
            np.testing.assert_array_equal(shown.recall[c], r)
            assert shown.average_precision[c] == average_precision_score(
                Y[:, c], proba[:, c], sample_weight=weight)
            # the drawn curve is that one
            np.testing.assert_array_equal(shown.lines_[c].get_xdata(), r)
            np.testing.assert_array_equal(shown.lines_[c].get_ydata(), p)
        for average in ("macro", "micro"):
            expected = average_precision_score(Y, proba, average=average,
                                               sample_weight=weight)
            got = getattr(shown, f"{average}_average_precision")
            assert got == pytest.approx(expected, rel=1e-12)
    # the scores rank the labels imperfectly: the curves are not trivial
    assert np.sum(shown.average_precision < 0.95) >= 3


def test_multilabel_pr_per_element_weights(multilabel_scores):
    from sklearn.metrics import average_precision_score

    Y, proba, w = multilabel_scores
    W = np.random.default_rng(4).integers(0, 3, size=Y.shape).astype(float)
    shown = MultiLabelPrecisionRecallDisplay.from_predictions(Y, proba, sample_weight=W)
    for c in range(4):
        assert shown.average_precision[c] == average_precision_score(
            Y[:, c], proba[:, c], sample_weight=W[:, c])
    # the micro average ranks every (sample, label) pair with its own weight:
    # integer weights count as copies of the pairs
    k = W.ravel().astype(int)
    copies = average_precision_score(np.repeat(Y.ravel(), k), np.repeat(proba.ravel(), k))
    assert shown.micro_average_precision == pytest.approx(copies, rel=1e-12)
    np.testing.assert_allclose(shown.prevalence, (W * Y).sum(0) / W.sum(0))
    # weights per sample, given per pair, change nothing
    per_sample = MultiLabelPrecisionRecallDisplay.from_predictions(Y, proba,
                                                                   sample_weight=w)
    per_pair = MultiLabelPrecisionRecallDisplay.from_predictions(
        Y, proba, sample_weight=np.repeat(w[:, None], 4, axis=1))
    np.testing.assert_allclose(per_pair.average_precision, per_sample.average_precision)
    assert per_pair.micro_average_precision == pytest.approx(
        per_sample.micro_average_precision, rel=1e-12)


def test_multilabel_pr_legend_labels_micro_and_chance_level(multilabel_scores):
    Y, proba, _ = multilabel_scores
    names = ["cat", "dog", "owl", "yak"]
    shown = MultiLabelPrecisionRecallDisplay.from_predictions(
        Y, proba, label_names=names, labels=[3, 1], micro=True, chance_level=True,
        name="net", linewidth=3)
    ap = shown.average_precision
    texts = [t.get_text() for t in shown.ax_.get_legend().get_texts()]
    assert texts == [f"yak (AP = {ap[3]:.2f})", f"dog (AP = {ap[1]:.2f})",
                     f"micro (AP = {shown.micro_average_precision:.2f})"]
    assert shown.ax_.get_legend().get_title().get_text() == (
        f"net: macro AP = {shown.macro_average_precision:.3f}, "
        f"micro AP = {shown.micro_average_precision:.3f}")
    assert sorted(shown.lines_) == [1, 3] and shown.lines_[1].get_linewidth() == 3
    # the chance level of a label is its prevalence, in the label's colour
    for c in (1, 3):
        np.testing.assert_allclose(shown.chance_level_[c].get_ydata(), Y[:, c].mean())
        assert shown.chance_level_[c].get_color() == shown.lines_[c].get_color()
    # a second display shares the axes; plot() draws this one again elsewhere
    fig, ax = plt.subplots()
    again = shown.plot(ax=ax, labels=[0])
    assert again.ax_ is ax and again.figure_ is fig and list(again.lines_) == [0]
    assert again.micro_line_ is None and again.chance_level_ == {}


def test_multilabel_pr_label_without_positives(multilabel_scores):
    from sklearn.metrics import average_precision_score

    Y, proba, _ = multilabel_scores
    Y = Y.copy()
    Y[:, 2] = 0
    with pytest.warns(UserWarning, match=r"Label\(s\) \[2\] have no positive"):
        shown = MultiLabelPrecisionRecallDisplay.from_predictions(Y, proba)
    assert shown.average_precision[2] == 0 and sorted(shown.lines_) == [0, 1, 3]
    with pytest.warns(UserWarning, match="No positive class"):
        expected = average_precision_score(Y, proba, average="macro")
    assert shown.macro_average_precision == pytest.approx(expected, rel=1e-12)
    # weight 0 on a label's positives leaves it without positives too
    W = np.ones(Y.shape)
    W[Y[:, 3] == 1, 3] = 0
    with pytest.warns(UserWarning, match=r"Label\(s\) \[2, 3\]"):
        MultiLabelPrecisionRecallDisplay.from_predictions(Y, proba, sample_weight=W)


def test_multilabel_pr_from_estimator_equals_scikit_learns_scorers(multilabel_fit):
    from sklearn.metrics import average_precision_score, get_scorer, make_scorer

    clf, X, Y = multilabel_fit
    shown = MultiLabelPrecisionRecallDisplay.from_estimator(clf, X, Y, micro=True)
    direct = MultiLabelPrecisionRecallDisplay.from_predictions(Y, clf.predict_proba(X))
    np.testing.assert_array_equal(shown.average_precision, direct.average_precision)
    assert shown.ax_.get_legend().get_title().get_text().startswith("CNNClassifier: ")
    # the macro number is scoring="average_precision"'s; the micro one that of
    # the micro-averaged scorer
    assert shown.macro_average_precision == pytest.approx(
        get_scorer("average_precision")(clf, X, Y), rel=1e-12)
    micro = make_scorer(average_precision_score, average="micro",
                        response_method="predict_proba")
    assert shown.micro_average_precision == pytest.approx(micro(clf, X, Y), rel=1e-12)
    # sparse indicators (MultiLabelBinarizer(sparse_output=True)) are taken too
    from scipy.sparse import csr_matrix

    sparse = MultiLabelPrecisionRecallDisplay.from_estimator(clf, X, csr_matrix(Y))
    np.testing.assert_array_equal(sparse.average_precision, shown.average_precision)


def test_multilabel_pr_errors(multilabel_scores, multilabel_fit, classifier, digits):
    from sklearn.ensemble import RandomForestClassifier

    Y, proba, _ = multilabel_scores
    show = MultiLabelPrecisionRecallDisplay.from_predictions
    with pytest.raises(ValueError, match="PrecisionRecallDisplay"):
        show(Y[:, 0], proba[:, 0])
    with pytest.raises(ValueError, match=r"0/1"):
        show(Y * 2, proba)
    with pytest.raises(ValueError, match=r"shape of y_true, \(400, 4\)"):
        show(Y, proba[:, :3])
    with pytest.raises(ValueError, match="finite"):
        show(Y, proba * np.nan)
    with pytest.raises(ValueError, match="sample_weight"):
        show(Y, proba, sample_weight=np.ones((400, 3)))
    with pytest.raises(ValueError, match="label_names has 2 entries"):
        show(Y, proba, label_names=["a", "b"])
    with pytest.raises(ValueError, match=r"labels \[4\] are not columns"):
        show(Y, proba, labels=[0, 4])
    with pytest.raises(TypeError, match="column indices"):
        show(Y, proba, labels=["a"])
    clf, X, Yd = multilabel_fit
    with pytest.raises(NotFittedError):
        MultiLabelPrecisionRecallDisplay.from_estimator(CNNClassifier(), X, Yd)
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, Yd)
    with pytest.raises(ValueError, match="one array per output"):
        MultiLabelPrecisionRecallDisplay.from_estimator(forest, X, Yd)
    # a classifier of one label per image: its (N, n_classes) probabilities
    # are no indicator's
    Xs, ys = digits
    with pytest.raises(ValueError, match="multilabel indicator"):
        MultiLabelPrecisionRecallDisplay.from_estimator(classifier, Xs, ys)
