"""Figures for fitted estimators, following scikit-learn's Display API.

Each display is a small class that holds the numbers a figure shows and
draws them with matplotlib:

- :class:`TrainingCurveDisplay`: training and validation loss (or any other
  per-epoch value) from an estimator's ``history_``;
- :class:`SegmentationDisplay`: an image, its true and predicted label
  masks, and a map of the errors (false positives, false negatives);
- :class:`ReliabilityDisplay`: a top-label reliability diagram with the
  expected calibration error (ECE);
- :class:`MultiLabelPrecisionRecallDisplay`: one precision-recall curve per
  label of a multi-label classifier, with each label's average precision.

As in scikit-learn, ``from_estimator`` and ``from_predictions`` compute the
numbers and draw them; ``plot(ax=...)`` draws an existing display again,
on new axes or next to other displays; the drawn figure is in ``figure_``
and its axes in ``ax_``. matplotlib is imported only when something is
drawn, so the module imports without it.
"""

import numbers
import warnings

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.utils.validation import check_is_fitted

from ._validation import (
    check_int,
    check_real,
    check_sample_weight,
    is_zero_one,
    per_element,
)
from .metrics import expected_calibration_error, reliability_curve

__all__ = [
    "MultiLabelPrecisionRecallDisplay",
    "ReliabilityDisplay",
    "SegmentationDisplay",
    "TrainingCurveDisplay",
]

# Colours of the error map: red for what the prediction adds, blue for what
# it misses (the usual convention of overlay figures), yellow for a pixel of
# the right region but the wrong class.
_ERROR_COLORS = {
    "false_positive": (0.90, 0.10, 0.10),
    "false_negative": (0.10, 0.35, 0.95),
    "wrong_class": (1.00, 0.80, 0.00),
}
_ERROR_NAMES = {
    "false_positive": "false positive",
    "false_negative": "false negative",
    "wrong_class": "wrong class",
}
_REFERENCE_LABEL = "perfectly calibrated"


def _pyplot():
    """Import ``matplotlib.pyplot`` or say how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skweight.display needs matplotlib to draw figures. Install it with "
            "`pip install matplotlib` (or the extra that brings it: "
            "`pip install 'skweight[plot]'`, or 'skweight[docs]')."
        ) from exc
    return plt


def _check_fitted(estimator, needs=None):
    """Raise NotFittedError for an unfitted estimator, TypeError for a non-estimator."""
    if not hasattr(estimator, "fit"):
        raise TypeError(
            f"estimator must be a fitted skweight (or scikit-learn) estimator, got "
            f"{type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    if needs is not None and not callable(getattr(estimator, needs, None)):
        raise TypeError(
            f"{type(estimator).__name__} has no {needs} method; this display needs "
            f"one."
        )


def _to_numpy(array, name):
    """Return a NumPy view of an array-like or torch tensor (never written to)."""
    if hasattr(array, "detach"):  # torch tensor
        return array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like, got {type(array).__name__}.") from exc


# ---------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------


class TrainingCurveDisplay:
    """Training and validation loss, or any per-epoch value, against the epoch.

    Build it with :meth:`from_estimator`; the constructor only stores the
    curves.

    Parameters
    ----------
    epochs : ndarray of shape (n_epochs,)
        The epoch numbers (1-based, as in skorch's history).
    curves : dict of str to ndarray of shape (n_epochs,)
        The value of each recorded key at each epoch, float64; ``NaN`` where
        the key was not recorded that epoch (e.g. ``valid_loss`` before a
        validation split was used).
    estimator_name : str, default=None
        Name prefixed to the legend entries, e.g. to tell two fits apart on
        shared axes.

    Attributes
    ----------
    lines_ : dict of str to matplotlib Line2D
        The drawn curve of each key.
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure holding ``ax_``.

    See Also
    --------
    ReliabilityDisplay : Calibration of predicted probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.display import TrainingCurveDisplay
    >>> display = TrainingCurveDisplay(
    ...     epochs=np.arange(1, 4),
    ...     curves={"train_loss": np.array([1.0, 0.6, 0.4]),
    ...             "valid_loss": np.array([1.1, 0.8, 0.7])})
    >>> display = display.plot()
    >>> sorted(display.lines_)
    ['train_loss', 'valid_loss']
    """

    def __init__(self, epochs, curves, *, estimator_name=None):
        self.epochs = epochs
        self.curves = curves
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, keys=None, name=None, ax=None, log_scale=False,
                       line_kw=None):
        """Plot the per-epoch values recorded in a fitted estimator's history.

        Parameters
        ----------
        estimator : fitted skweight estimator or skorch ``NeuralNet``
            Its ``history_`` holds one record per epoch.
        keys : None, str or list of str, default=None
            The per-epoch keys to draw. ``None`` draws ``train_loss`` and,
            when a validation split was used (``train_split=0.2``),
            ``valid_loss``. Any other recorded key works, e.g. the name of
            a ``skorch.callbacks.EpochScoring``.
        name : str, default=None
            Prefix of the legend entries; ``None`` adds none.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        log_scale : bool, default=False
            Whether the y axis is logarithmic.
        line_kw : dict, default=None
            Keyword arguments for matplotlib's ``plot``, for every curve.

        Returns
        -------
        display : TrainingCurveDisplay
            The display, drawn.
        """
        history = cls._history(estimator)
        recorded = cls._recorded_keys(history)
        if keys is None:
            keys = [key for key in ("train_loss", "valid_loss") if key in recorded]
            if not keys:
                raise ValueError(
                    f"The history of {type(estimator).__name__} records neither "
                    f"train_loss nor valid_loss; pass keys= among {sorted(recorded)}."
                )
        else:
            keys = cls._check_keys(keys, recorded)
        epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(history)],
                          dtype=np.int64)
        curves = {key: cls._values(history, key) for key in keys}
        display = cls(epochs, curves, estimator_name=name)
        return display.plot(ax=ax, log_scale=log_scale, line_kw=line_kw)

    @staticmethod
    def _history(estimator):
        if not hasattr(estimator, "history_") and not hasattr(estimator, "fit"):
            raise TypeError(
                f"estimator must be a skweight estimator or skorch NeuralNet with a "
                f"training history, got {type(estimator).__name__}."
            )
        history = getattr(estimator, "history_", None)
        if history is None or len(history) == 0:
            raise NotFittedError(
                f"This {type(estimator).__name__} instance has no training history "
                f"yet. Call 'fit' before using this display."
            )
        return history

    @staticmethod
    def _recorded_keys(history):
        """Keys recorded in at least one epoch (the per-batch list left out)."""
        return {key for row in history for key in row if key != "batches"}

    @staticmethod
    def _check_keys(keys, recorded):
        if isinstance(keys, str):
            keys = [keys]
        try:
            keys = list(keys)
        except TypeError:
            raise TypeError(
                f"keys must be None, a str or a list of str, got {keys!r}."
            ) from None
        if not keys or not all(isinstance(key, str) for key in keys):
            raise TypeError(f"keys must be None, a str or a list of str, got {keys!r}.")
        missing = [key for key in keys if key not in recorded]
        if missing:
            raise ValueError(
                f"keys {missing} are not recorded in the history; recorded per-epoch "
                f"keys are {sorted(recorded)}."
            )
        return keys

    @staticmethod
    def _values(history, key):
        values = np.full(len(history), np.nan)
        for i, row in enumerate(history):
            if key not in row:
                continue
            try:
                values[i] = float(row[key])
            except (TypeError, ValueError):
                raise TypeError(
                    f"The history's {key!r} holds {type(row[key]).__name__} values, "
                    f"not numbers; only numeric keys can be drawn."
                ) from None
        return values

    def plot(self, ax=None, *, log_scale=False, line_kw=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        log_scale : bool, default=False
            Whether the y axis is logarithmic.
        line_kw : dict, default=None
            Keyword arguments for matplotlib's ``plot``, for every curve.

        Returns
        -------
        display : TrainingCurveDisplay
            This display, with ``lines_``, ``ax_`` and ``figure_`` set.
        """
        plt = _pyplot()
        from matplotlib.ticker import MaxNLocator

        if ax is None:
            _, ax = plt.subplots()
        line_kw = {} if line_kw is None else dict(line_kw)
        prefix = f"{self.estimator_name}: " if self.estimator_name else ""
        self.lines_ = {}
        for key, values in self.curves.items():
            kw = {"marker": "o", "markersize": 3, "label": f"{prefix}{key}", **line_kw}
            (self.lines_[key],) = ax.plot(self.epochs, values, **kw)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if all(k.endswith("loss") for k in self.curves) else "value")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_scale:
            ax.set_yscale("log")
        ax.legend()
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


# ---------------------------------------------------------------------------
# Segmentation overlays
# ---------------------------------------------------------------------------


def _display_image(image):
    """``image`` as (H, W) or (H, W, 3) for imshow, from (H, W), (1, H, W), (3, H, W)."""
    image = _to_numpy(image, "image")
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    elif image.ndim != 2:
        raise ValueError(
            f"image must have shape (H, W), (1, H, W) or (3, H, W) (channels first, "
            f"as the estimators take it), got shape {image.shape}. For other "
            f"channel counts pass one channel, e.g. image[0]; for a volume, one "
            f"slice."
        )
    if image.dtype.kind not in "biuf":
        raise TypeError(f"image must hold numbers, got dtype {image.dtype}.")
    return image


def _check_mask(mask, name, shape):
    mask = _to_numpy(mask, name)
    if mask.shape != shape:
        raise ValueError(
            f"{name} must be a label mask of shape (H, W) = {shape}, matching the "
            f"image, got shape {mask.shape}."
        )
    if mask.dtype.kind not in "biuf" or (
        mask.dtype.kind == "f" and not np.all(mask == np.round(mask))
    ):
        raise ValueError(f"{name} must hold integer class labels, got dtype {mask.dtype}.")
    return mask


class SegmentationDisplay:
    """An image with its true and predicted masks and a map of the errors.

    Four panels: the image; the image with the true labels overlaid; with
    the predicted labels; and with the errors: false positives (red),
    false negatives (blue) and, between several foreground classes,
    pixels given the wrong class (yellow). Build it with
    :meth:`from_estimator` or :meth:`from_predictions`; the constructor
    computes the error maps.

    Parameters
    ----------
    image : array-like of shape (H, W), (1, H, W) or (3, H, W)
        The image, channels first as the estimators take it.
    y_true, y_pred : array-like of shape (H, W)
        True and predicted integer label masks.
    label : int, default=None
        The class whose errors are mapped. ``None`` maps foreground errors:
        any class but ``background`` counts as foreground, a false positive
        is a background pixel predicted as foreground, a false negative a
        foreground pixel predicted as background, and a foreground pixel
        predicted as another foreground class is a wrong-class error. With
        a label ``k``, a false positive is a pixel predicted ``k`` that is
        not ``k``, a false negative a pixel of ``k`` predicted otherwise.
    background : int, default=0
        The background label (the segmenter's ``classes_[0]``).
    ignore_index : int, default=None
        Pixels whose true label is ``ignore_index`` are no error of any
        kind (and are not drawn as a class).

    Attributes
    ----------
    false_positive, false_negative, wrong_class : ndarray of bool, shape (H, W)
        The error maps (``wrong_class`` is all False when ``label`` is
        given).
    error_counts : dict of str to int
        The number of pixels in each map.
    ax_ : ndarray of 4 matplotlib Axes
        The panels: image, truth, prediction, errors.
    figure_ : matplotlib Figure
        The figure holding the panels.

    See Also
    --------
    skweight.metrics.dice_score : Overlap of the masks as a number.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.display import SegmentationDisplay
    >>> image = np.zeros((4, 4))
    >>> y_true = np.array([[0, 1, 1, 0]] * 4)
    >>> y_pred = np.array([[0, 0, 1, 1]] * 4)
    >>> display = SegmentationDisplay.from_predictions(image, y_true, y_pred)
    >>> display.error_counts
    {'false_positive': 4, 'false_negative': 4, 'wrong_class': 0}
    """

    def __init__(self, image, y_true, y_pred, *, label=None, background=0,
                 ignore_index=None):
        self.image = _display_image(image)
        shape = self.image.shape[:2]
        self.y_true = _check_mask(y_true, "y_true", shape)
        self.y_pred = _check_mask(y_pred, "y_pred", shape)
        for value, name in ((label, "label"), (background, "background")):
            if value is not None and (
                not isinstance(value, numbers.Integral) or isinstance(value, bool)
            ):
                raise TypeError(f"{name} must be an int label, got {value!r}.")
        if ignore_index is not None and (
            not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool)
        ):
            raise TypeError(f"ignore_index must be None or an int, got {ignore_index!r}.")
        self.label = label
        self.background = background
        self.ignore_index = ignore_index
        self._compute_errors()

    def _compute_errors(self):
        counted = (np.ones(self.y_true.shape, dtype=bool) if self.ignore_index is None
                   else self.y_true != self.ignore_index)
        if self.label is None:
            true_in = self.y_true != self.background
            pred_in = self.y_pred != self.background
            self.wrong_class = true_in & pred_in & (self.y_true != self.y_pred) & counted
        else:
            true_in = self.y_true == self.label
            pred_in = self.y_pred == self.label
            self.wrong_class = np.zeros(self.y_true.shape, dtype=bool)
        self.false_positive = pred_in & ~true_in & counted
        self.false_negative = true_in & ~pred_in & counted
        self.error_counts = {name: int(getattr(self, name).sum()) for name in _ERROR_COLORS}

    @classmethod
    def from_predictions(cls, image, y_true, y_pred, *, label=None, background=0,
                         ignore_index=None, ax=None, alpha=0.5, cmap="gray"):
        """Plot an image with given true and predicted masks.

        Parameters
        ----------
        image : array-like of shape (H, W), (1, H, W) or (3, H, W)
            The image, channels first.
        y_true, y_pred : array-like of shape (H, W)
            True and predicted integer label masks.
        label : int, default=None
            The class whose errors are mapped; ``None`` maps foreground
            errors (see the class docstring).
        background : int, default=0
            The background label.
        ignore_index : int, default=None
            True label of pixels left out of the error maps.
        ax : array-like of 4 matplotlib Axes, default=None
            The panels to draw on; ``None`` makes a new figure.
        alpha : float, default=0.5
            Opacity of the overlays.
        cmap : str, default="gray"
            Colour map of a one-channel image.

        Returns
        -------
        display : SegmentationDisplay
            The display, drawn.
        """
        display = cls(image, y_true, y_pred, label=label, background=background,
                      ignore_index=ignore_index)
        return display.plot(ax=ax, alpha=alpha, cmap=cmap)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, index=0, label=None, ax=None, alpha=0.5,
                       cmap="gray"):
        """Predict the mask of one image with a fitted segmenter and plot it.

        Parameters
        ----------
        estimator : fitted CNNSegmenter
            Its ``classes_[0]`` is the background and its ``ignore_index``
            is honoured.
        X : array-like or tensor of shape (N, C, H, W) or (N, H, W)
            Images, as given to the estimator's ``predict``.
        y : array-like of shape (N, H, W)
            Their true label masks.
        index : int, default=0
            Which image to show; only this image is predicted.
        label : int, default=None
            A label among ``classes_`` whose errors are mapped; ``None``
            maps foreground errors.
        ax : array-like of 4 matplotlib Axes, default=None
            The panels to draw on; ``None`` makes a new figure.
        alpha : float, default=0.5
            Opacity of the overlays.
        cmap : str, default="gray"
            Colour map of a one-channel image.

        Returns
        -------
        display : SegmentationDisplay
            The display, drawn.
        """
        _check_fitted(estimator, needs="predict")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise TypeError(
                f"estimator must be a fitted segmenter with classes_, got "
                f"{type(estimator).__name__}."
            )
        if label is not None and label not in set(classes.tolist()):
            raise ValueError(
                f"label={label!r} is not among the classes {classes.tolist()}."
            )
        n_samples = len(X)
        index = check_int(index, "index")
        if not -n_samples <= index < n_samples:
            raise ValueError(
                f"index must be in [{-n_samples}, {n_samples}) for {n_samples} images, "
                f"got {index}."
            )
        index = index % n_samples
        one = X[index:index + 1]
        image = _to_numpy(one, "X")[0]
        input_shape = getattr(estimator, "input_shape_", None)
        if image.ndim == 1 and input_shape is not None:
            image = image.reshape(input_shape)
        y_true = _to_numpy(y, "y")
        if y_true.ndim != 3 or len(y_true) != n_samples:
            raise ValueError(
                f"y must hold label masks of shape (N, H, W) with N = {n_samples}, the "
                f"number of images, got shape {y_true.shape}. SegmentationDisplay "
                f"shows 2-D images: for a volume, pass one slice to from_predictions."
            )
        y_pred = _to_numpy(estimator.predict(one), "y_pred")[0]
        display = cls(image, y_true[index], y_pred, label=label, background=classes[0],
                      ignore_index=getattr(estimator, "ignore_index", None))
        return display.plot(ax=ax, alpha=alpha, cmap=cmap)

    def _class_colors(self):
        """One colour per foreground label present in either mask."""
        present = np.union1d(np.unique(self.y_true), np.unique(self.y_pred))
        skip = {self.background, self.ignore_index}
        labels = [lab for lab in present.tolist() if lab not in skip]
        plt = _pyplot()
        palette = plt.get_cmap("tab10")
        return {lab: palette(i % 10)[:3] for i, lab in enumerate(labels)}

    @staticmethod
    def _overlay(masks_colors, shape, alpha):
        rgba = np.zeros((*shape, 4))
        for mask, color in masks_colors:
            rgba[mask, :3] = color
            rgba[mask, 3] = alpha
        return rgba

    def plot(self, ax=None, *, alpha=0.5, cmap="gray"):
        """Draw the four panels: image, truth, prediction, errors.

        Parameters
        ----------
        ax : array-like of 4 matplotlib Axes, default=None
            The panels to draw on; ``None`` makes a new figure.
        alpha : float, default=0.5
            Opacity of the overlays, in [0, 1].
        cmap : str, default="gray"
            Colour map of a one-channel image.

        Returns
        -------
        display : SegmentationDisplay
            This display, with ``ax_`` and ``figure_`` set.
        """
        plt = _pyplot()
        from matplotlib.patches import Patch

        alpha = check_real(alpha, "alpha", low=0, high=1)
        shape = self.y_true.shape
        if ax is None:
            # Panels 3.2 inches wide, as tall as the image's aspect asks,
            # plus room for the titles.
            figsize = (4 * 3.2, 3.2 * shape[0] / shape[1] + 0.8)
            _, ax = plt.subplots(1, 4, figsize=figsize, layout="constrained")
        axes = np.asarray(ax, dtype=object).ravel()
        if axes.size != 4:
            raise ValueError(
                f"ax must hold 4 matplotlib Axes (image, truth, prediction, errors), "
                f"got {axes.size}."
            )
        colors = self._class_colors()
        overlays = [
            None,
            [(self.y_true == lab, col) for lab, col in colors.items()],
            [(self.y_pred == lab, col) for lab, col in colors.items()],
            [(getattr(self, name), col) for name, col in _ERROR_COLORS.items()],
        ]
        counts = self.error_counts
        error_title = (f"errors: {counts['false_positive']} FP, "
                       f"{counts['false_negative']} FN")
        if counts["wrong_class"]:
            error_title += f", {counts['wrong_class']} wrong class"
        titles = ["image", "truth", "prediction", error_title]
        if self.label is not None:
            titles[3] += f" (class {self.label})"
        for panel, overlay, title in zip(axes, overlays, titles, strict=True):
            panel.imshow(self.image, cmap=cmap if self.image.ndim == 2 else None)
            if overlay:
                panel.imshow(self._overlay(overlay, shape, alpha))
            panel.set_title(title)
            panel.set_axis_off()
        handles = [Patch(color=col, label=f"class {lab}") for lab, col in colors.items()]
        if handles:
            axes[1].legend(handles=handles, loc="lower left", fontsize="small")
        shown = [name for name in _ERROR_COLORS if name != "wrong_class" or counts[name]]
        axes[3].legend(handles=[Patch(color=_ERROR_COLORS[n], label=_ERROR_NAMES[n])
                                for n in shown], loc="lower left", fontsize="small")
        self.ax_ = axes
        self.figure_ = axes[0].figure
        return self


# ---------------------------------------------------------------------------
# Reliability diagram
# ---------------------------------------------------------------------------


class ReliabilityDisplay:
    """Top-label reliability diagram with the expected calibration error.

    For each prediction the confidence is the largest predicted
    probability and the prediction is right when that class is the true
    one. Confidences are grouped into ``n_bins`` bins; a calibrated model
    has, in each bin, an accuracy equal to the mean confidence (the
    diagonal). The expected calibration error is
    ``ECE = sum_b (W_b / W) |acc_b - conf_b|`` with ``W_b`` the (weighted)
    number of predictions in bin ``b`` [1]_. The numbers are those of
    :func:`skweight.metrics.reliability_curve` and
    :func:`skweight.metrics.expected_calibration_error`, whose Notes define
    them exactly. Several displays can share one axes, e.g. to compare a
    classifier's probabilities with ``class_prior=None`` and
    ``class_prior="train"``.

    Parameters
    ----------
    accuracy : ndarray of shape (n_bins,)
        Weighted fraction of right predictions per bin (``NaN`` if empty).
    confidence : ndarray of shape (n_bins,)
        Weighted mean confidence per bin (``NaN`` if empty).
    bin_weight : ndarray of shape (n_bins,)
        Sum of the sample weights per bin (the counts, unweighted).
    bin_edges : ndarray of shape (n_bins + 1,)
        Edges of the bins.
    ece : float
        The expected calibration error.
    estimator_name : str, default=None
        Name shown in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The drawn curve.
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure holding ``ax_``.

    See Also
    --------
    skweight.metrics.reliability_curve : The numbers drawn.
    skweight.metrics.expected_calibration_error : The number in the legend.
    sklearn.calibration.CalibrationDisplay : Calibration of one class's
        probability, for binary problems.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration
       of Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.display import ReliabilityDisplay
    >>> y_true = np.array([0, 1, 1, 2])
    >>> y_prob = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1],
    ...                    [0.7, 0.2, 0.1], [0.15, 0.15, 0.7]])
    >>> display = ReliabilityDisplay.from_predictions(y_true, y_prob, n_bins=5)
    >>> display.bin_weight  # predictions per bin
    array([0., 0., 1., 2., 1.])
    >>> # (|1 - 0.6| * 1 + |0.5 - 0.7| * 2 + |1 - 0.9| * 1) / 4
    >>> round(display.ece, 3)
    0.225
    """

    def __init__(self, accuracy, confidence, bin_weight, bin_edges, ece, *,
                 estimator_name=None):
        self.accuracy = accuracy
        self.confidence = confidence
        self.bin_weight = bin_weight
        self.bin_edges = bin_edges
        self.ece = ece
        self.estimator_name = estimator_name

    @classmethod
    def from_predictions(cls, y_true, y_prob, *, classes=None, n_bins=10,
                         strategy="uniform", sample_weight=None, name=None, ref_line=True,
                         ax=None, **kwargs):
        """Plot the reliability diagram of given probabilities.

        Parameters
        ----------
        y_true : array-like of shape (N,)
            True labels.
        y_prob : array-like of shape (N, n_classes) or (N,)
            Predicted probabilities (``predict_proba``); a 1-D array is the
            probability of the second class of a binary problem.
        classes : array-like of shape (n_classes,), default=None
            The label of each column of ``y_prob`` (an estimator's
            ``classes_``); ``None`` means ``0..n_classes-1``.
        n_bins : int, default=10
            Number of confidence bins.
        strategy : {"uniform", "quantile"}, default="uniform"
            Bins of equal width over [0, 1], or of about equal weight (see
            :func:`skweight.metrics.reliability_curve`).
        sample_weight : array-like of shape (N,), default=None
            Weights of the predictions in the bins and the ECE.
        name : str, default=None
            Name shown in the legend.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration (once per
            axes, however many displays share them).
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        **kwargs : dict
            Keyword arguments for matplotlib's ``plot``.

        Returns
        -------
        display : ReliabilityDisplay
            The display, drawn.
        """
        # Torch tensors are converted here: the metrics take NumPy arrays.
        y_true, y_prob = _to_numpy(y_true, "y_true"), _to_numpy(y_prob, "y_prob")
        if classes is not None:
            classes = _to_numpy(classes, "classes")
        options = {"n_bins": n_bins, "strategy": strategy,
                   "sample_weight": sample_weight, "classes": classes}
        curve = reliability_curve(y_true, y_prob, **options)
        ece = expected_calibration_error(y_true, y_prob, **options)
        display = cls(*curve, ece, estimator_name=name)
        return display.plot(ax=ax, ref_line=ref_line, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, n_bins=10, strategy="uniform",
                       sample_weight=None, name=None, ref_line=True, ax=None, **kwargs):
        """Plot the reliability diagram of a fitted estimator's ``predict_proba``.

        Parameters
        ----------
        estimator : fitted classifier or segmenter
            Anything with ``predict_proba`` and ``classes_``. A segmenter's
            pixels are the predictions (pixels labelled ``ignore_index``
            left out).
        X : array-like or tensor
            Images, as given to ``predict_proba``.
        y : array-like of shape (N,) or (N, H, W)
            True labels, or label masks for a segmenter.
        n_bins : int, default=10
            Number of confidence bins.
        strategy : {"uniform", "quantile"}, default="uniform"
            Bins of equal width over [0, 1], or of about equal weight (see
            :func:`skweight.metrics.reliability_curve`).
        sample_weight : array-like of shape (N,) or (N, H, W), default=None
            Weights of the predictions: per sample, or for a segmenter per
            image or per pixel.
        name : str, default=None
            Name shown in the legend; ``None`` uses the estimator's class
            name.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        **kwargs : dict
            Keyword arguments for matplotlib's ``plot``.

        Returns
        -------
        display : ReliabilityDisplay
            The display, drawn.
        """
        _check_fitted(estimator, needs="predict_proba")
        proba = _to_numpy(estimator.predict_proba(X), "predict_proba's output")
        y = _to_numpy(y, "y")
        if proba.ndim > 2:
            proba, y, sample_weight = cls._pixels(estimator, proba, y, sample_weight)
        name = type(estimator).__name__ if name is None else name
        return cls.from_predictions(
            y, proba, classes=getattr(estimator, "classes_", None), n_bins=n_bins,
            strategy=strategy, sample_weight=sample_weight, name=name, ref_line=ref_line,
            ax=ax, **kwargs,
        )

    @staticmethod
    def _pixels(estimator, proba, y, sample_weight):
        """Flatten a segmenter's (N, K, *spatial) probabilities to one row per pixel."""
        spatial = (proba.shape[0], *proba.shape[2:])
        if y.shape != spatial:
            raise ValueError(
                f"y must hold label masks of shape {spatial} for these images, got "
                f"shape {y.shape}."
            )
        weight = check_sample_weight(sample_weight, len(y), extra_shape=spatial[1:])
        if weight is not None:
            weight = per_element(weight, spatial)
        rows = np.moveaxis(proba, 1, -1).reshape(-1, proba.shape[1])
        labels = y.ravel()
        weight = None if weight is None else weight.ravel()
        ignore = getattr(estimator, "ignore_index", None)
        if ignore is not None:
            kept = labels != ignore
            rows, labels = rows[kept], labels[kept]
            weight = None if weight is None else weight[kept]
        return rows, labels, weight

    def plot(self, ax=None, *, name=None, ref_line=True, **kwargs):
        """Draw the diagram.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        name : str, default=None
            Name shown in the legend; ``None`` uses ``estimator_name``.
        ref_line : bool, default=True
            Whether to draw the diagonal of perfect calibration (once per
            axes).
        **kwargs : dict
            Keyword arguments for matplotlib's ``plot``.

        Returns
        -------
        display : ReliabilityDisplay
            This display, with ``line_``, ``ax_`` and ``figure_`` set.
        """
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4.8), layout="constrained")
        name = self.estimator_name if name is None else name
        label = f"ECE = {self.ece:.3f}"
        if name is not None:
            label = f"{name} ({label})"
        drawn = [line.get_label() for line in ax.get_lines()]
        if ref_line and _REFERENCE_LABEL not in drawn:
            ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label=_REFERENCE_LABEL)
        filled = self.bin_weight > 0
        kw = {"marker": "s", "label": label, **kwargs}
        (self.line_,) = ax.plot(self.confidence[filled], self.accuracy[filled], **kw)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (largest probability)",
               ylabel="accuracy", aspect="equal")
        ax.legend(loc="upper left")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


# ---------------------------------------------------------------------------
# Multi-label precision-recall curves
# ---------------------------------------------------------------------------


def _check_indicator(y_true, y_score):
    """``(Y, P)`` as float64 arrays of shape (N, n_labels), checked."""
    if hasattr(y_true, "toarray"):  # MultiLabelBinarizer(sparse_output=True)
        y_true = y_true.toarray()
    Y, P = _to_numpy(y_true, "y_true"), _to_numpy(y_score, "y_score")
    if Y.ndim != 2:
        hint = (" For one binary label use sklearn.metrics.PrecisionRecallDisplay."
                if Y.ndim == 1 else "")
        raise ValueError(
            f"y_true must be a multilabel indicator of shape (N, n_labels), got shape "
            f"{Y.shape}.{hint}"
        )
    if Y.dtype.kind not in "biuf" or not is_zero_one(Y):
        raise ValueError(
            "y_true must be a multilabel indicator of 0/1 (one column per label, e.g. "
            "from sklearn.preprocessing.MultiLabelBinarizer)."
        )
    if P.shape != Y.shape:
        raise ValueError(
            f"y_score must have the shape of y_true, {Y.shape} (one score per sample "
            f"and label, e.g. predict_proba), got shape {P.shape}."
        )
    if P.dtype.kind not in "biuf" or not np.all(np.isfinite(P)):
        raise ValueError("y_score must hold finite numbers.")
    return Y.astype(np.float64), P.astype(np.float64)


class MultiLabelPrecisionRecallDisplay:
    """Precision-recall curves of a multi-label classifier, one per label.

    For each label the curve is scikit-learn's
    :func:`~sklearn.metrics.precision_recall_curve` of that label's column
    and the legend gives its average precision
    (:func:`~sklearn.metrics.average_precision_score`); a rare label's
    curve shows what a single number such as the macro F1 hides: how much
    precision each level of its recall costs. The legend's title gives the
    macro average precision (the mean over labels: scikit-learn's
    ``scoring="average_precision"``) and the micro average precision (all
    (sample, label) pairs ranked together, dominated by the frequent
    labels). Build it with :meth:`from_estimator` or
    :meth:`from_predictions`; the constructor only stores the curves.

    Parameters
    ----------
    precision, recall : list of ndarray
        The curve of each label, as
        :func:`~sklearn.metrics.precision_recall_curve` returns them
        (recall decreasing).
    average_precision : ndarray of shape (n_labels,)
        The average precision of each label.
    micro_precision, micro_recall : ndarray, default=None
        The micro-averaged curve: every (sample, label) pair one
        prediction.
    micro_average_precision : float, default=None
        Its average precision.
    prevalence : ndarray of shape (n_labels,), default=None
        The (weighted) fraction of positives of each label: the precision
        of a random ranking, drawn by ``chance_level=True``.
    label_names : list of str, default=None
        Names of the labels in the legend; ``None`` uses ``0..n_labels-1``.
    estimator_name : str, default=None
        Name shown in the legend's title.

    Attributes
    ----------
    macro_average_precision : float
        The mean of ``average_precision`` over the labels.
    lines_ : dict of int to matplotlib Line2D
        The drawn curve of each label drawn, by column index.
    micro_line_ : matplotlib Line2D or None
        The drawn micro-averaged curve.
    chance_level_ : dict of int to matplotlib Line2D
        The drawn chance levels, by column index (empty unless drawn).
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure holding ``ax_``.

    See Also
    --------
    sklearn.metrics.PrecisionRecallDisplay : The curve of one binary label.
    sklearn.metrics.average_precision_score : The numbers in the legend.

    Notes
    -----
    Weights follow the classifier's: ``sample_weight`` of shape ``(N,)``
    weighs every label of a sample, one of shape ``(N, n_labels)`` each
    (sample, label) pair on its own. The curve and the average precision
    of label ``c`` are then scikit-learn's with ``sample_weight[:, c]``,
    and the micro average ranks all pairs with their own weights.

    A label without positives (of positive weight) has no recall: its
    curve is not drawn, a warning names it, and its average precision is
    0, the value scikit-learn gives it, so that
    ``macro_average_precision`` is the ``"average_precision"`` scorer's
    number.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.display import MultiLabelPrecisionRecallDisplay
    >>> Y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    >>> proba = np.array([[0.9, 0.2], [0.6, 0.4], [0.7, 0.3], [0.1, 0.8]])
    >>> display = MultiLabelPrecisionRecallDisplay.from_predictions(Y, proba)
    >>> display.average_precision.round(3)
    array([0.833, 1.   ])
    >>> round(display.macro_average_precision, 4)
    0.9167
    """

    def __init__(self, precision, recall, average_precision, *, micro_precision=None,
                 micro_recall=None, micro_average_precision=None, prevalence=None,
                 label_names=None, estimator_name=None):
        self.precision = precision
        self.recall = recall
        self.average_precision = np.asarray(average_precision, dtype=np.float64)
        self.micro_precision = micro_precision
        self.micro_recall = micro_recall
        self.micro_average_precision = micro_average_precision
        self.prevalence = prevalence
        self.label_names = label_names
        self.estimator_name = estimator_name
        self.macro_average_precision = float(np.mean(self.average_precision))

    @classmethod
    def from_predictions(cls, y_true, y_score, *, sample_weight=None, label_names=None,
                         labels=None, drop_intermediate=False, name=None, micro=False,
                         chance_level=False, ax=None, **kwargs):
        """Plot the precision-recall curve of each label from given scores.

        Parameters
        ----------
        y_true : array-like or sparse matrix of shape (N, n_labels)
            The 0/1 multilabel indicator (one column per label).
        y_score : array-like of shape (N, n_labels)
            A score per sample and label, higher for positive, e.g.
            ``predict_proba``.
        sample_weight : array-like of shape (N,) or (N, n_labels), default=None
            Weights per sample, or per (sample, label) pair.
        label_names : array-like of shape (n_labels,), default=None
            Names of the labels in the legend (e.g. a
            ``MultiLabelBinarizer``'s ``classes_``); ``None`` uses the
            column indices.
        labels : array-like of int, default=None
            The columns whose curves are drawn (all are computed);
            ``None`` draws every label with positives.
        drop_intermediate : bool, default=False
            Whether to drop the thresholds that do not change the drawn
            curve (see :func:`~sklearn.metrics.precision_recall_curve`);
            the average precisions are computed on the full curves.
        name : str, default=None
            Name shown in the legend's title.
        micro : bool, default=False
            Whether to draw the micro-averaged curve too.
        chance_level : bool, default=False
            Whether to draw each drawn label's chance level: a horizontal
            line at its prevalence.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        **kwargs : dict
            Keyword arguments for matplotlib's ``plot``, for every curve.

        Returns
        -------
        display : MultiLabelPrecisionRecallDisplay
            The display, drawn.
        """
        Y, P = _check_indicator(y_true, y_score)
        n_samples, n_labels = Y.shape
        weight = check_sample_weight(sample_weight, n_samples, extra_shape=(n_labels,),
                                     element="(sample, label) pair")
        W = np.ones(Y.shape) if weight is None else per_element(weight, Y.shape)
        label_names = cls._check_label_names(label_names, n_labels)
        positive = (W * Y).sum(axis=0)
        empty = np.flatnonzero(positive <= 0)
        if empty.size:
            warnings.warn(
                f"Label(s) {empty.tolist()} have no positive (of positive weight) in "
                f"y_true: their recall is undefined, their curves are not drawn and "
                f"their average precision is 0, as scikit-learn counts it.",
                UserWarning, stacklevel=2,
            )
        precision, recall, average_precision = [], [], np.zeros(n_labels)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No positive class found")
            for c in range(n_labels):
                w = None if weight is None else W[:, c]
                p, r, _ = precision_recall_curve(Y[:, c], P[:, c], sample_weight=w,
                                                 drop_intermediate=drop_intermediate)
                precision.append(p)
                recall.append(r)
                average_precision[c] = average_precision_score(Y[:, c], P[:, c],
                                                               sample_weight=w)
            micro_w = None if weight is None else W.ravel()
            micro_p, micro_r, _ = precision_recall_curve(
                Y.ravel(), P.ravel(), sample_weight=micro_w,
                drop_intermediate=drop_intermediate)
            micro_ap = float(average_precision_score(Y.ravel(), P.ravel(),
                                                     sample_weight=micro_w))
        prevalence = positive / W.sum(axis=0).clip(min=np.finfo(np.float64).tiny)
        display = cls(precision, recall, average_precision, micro_precision=micro_p,
                      micro_recall=micro_r, micro_average_precision=micro_ap,
                      prevalence=prevalence, label_names=label_names,
                      estimator_name=name)
        if labels is None:
            labels = [c for c in range(n_labels) if positive[c] > 0]
        return display.plot(ax=ax, labels=labels, micro=micro, chance_level=chance_level,
                            **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, sample_weight=None, label_names=None,
                       labels=None, drop_intermediate=False, name=None, micro=False,
                       chance_level=False, ax=None, **kwargs):
        """Plot the precision-recall curve of each label of a fitted classifier.

        Parameters
        ----------
        estimator : fitted multi-label classifier
            Anything whose ``predict_proba`` returns one probability per
            label, ``(N, n_labels)``: a ``CNNClassifier`` fitted on a
            multilabel indicator, or a scikit-learn multi-label classifier
            such as ``MLPClassifier``.
        X : array-like or tensor
            Images, as given to ``predict_proba``.
        y : array-like or sparse matrix of shape (N, n_labels)
            The true 0/1 multilabel indicator.
        sample_weight : array-like of shape (N,) or (N, n_labels), default=None
            Weights per sample, or per (sample, label) pair.
        label_names : array-like of shape (n_labels,), default=None
            Names of the labels in the legend; ``None`` uses the column
            indices.
        labels : array-like of int, default=None
            The columns whose curves are drawn; ``None`` draws every label
            with positives.
        drop_intermediate : bool, default=False
            Whether to drop the thresholds that do not change the drawn
            curve.
        name : str, default=None
            Name shown in the legend's title; ``None`` uses the
            estimator's class name.
        micro : bool, default=False
            Whether to draw the micro-averaged curve too.
        chance_level : bool, default=False
            Whether to draw each drawn label's prevalence.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        **kwargs : dict
            Keyword arguments for matplotlib's ``plot``, for every curve.

        Returns
        -------
        display : MultiLabelPrecisionRecallDisplay
            The display, drawn.
        """
        _check_fitted(estimator, needs="predict_proba")
        proba = estimator.predict_proba(X)
        if isinstance(proba, list):  # scikit-learn's per-output lists
            raise ValueError(
                f"{type(estimator).__name__}.predict_proba returns one array per "
                f"output; this display needs one probability per label, (N, "
                f"n_labels), as a multi-label CNNClassifier or MLPClassifier gives."
            )
        name = type(estimator).__name__ if name is None else name
        return cls.from_predictions(
            y, proba, sample_weight=sample_weight, label_names=label_names,
            labels=labels, drop_intermediate=drop_intermediate, name=name, micro=micro,
            chance_level=chance_level, ax=ax, **kwargs,
        )

    @staticmethod
    def _check_label_names(label_names, n_labels):
        if label_names is None:
            return None
        names = [str(n) for n in _to_numpy(label_names, "label_names").ravel()]
        if len(names) != n_labels:
            raise ValueError(
                f"label_names has {len(names)} entries, but y_true has {n_labels} "
                f"labels."
            )
        return names

    def _check_labels(self, labels):
        n_labels = len(self.average_precision)
        if labels is None:
            return list(range(n_labels))
        labels = np.atleast_1d(_to_numpy(labels, "labels"))
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise TypeError(
                f"labels must be column indices (ints), got {labels.tolist()!r}."
            )
        out = [int(c) for c in labels]
        bad = [c for c in out if not 0 <= c < n_labels]
        if bad:
            raise ValueError(
                f"labels {bad} are not columns of y_true (0..{n_labels - 1})."
            )
        return out

    def plot(self, ax=None, *, labels=None, name=None, micro=False, chance_level=False,
             **kwargs):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` makes a new figure.
        labels : array-like of int, default=None
            The columns whose curves are drawn; ``None`` draws every label
            (a label without positives is skipped).
        name : str, default=None
            Name shown in the legend's title; ``None`` uses
            ``estimator_name``.
        micro : bool, default=False
            Whether to draw the micro-averaged curve too (black, dashed).
        chance_level : bool, default=False
            Whether to draw each drawn label's prevalence (dotted, in its
            colour).
        **kwargs : dict
            Keyword arguments for matplotlib's ``plot``, for every curve.

        Returns
        -------
        display : MultiLabelPrecisionRecallDisplay
            This display, with ``lines_``, ``micro_line_``,
            ``chance_level_``, ``ax_`` and ``figure_`` set.
        """
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4.8), layout="constrained")
        labels = self._check_labels(labels)
        names = (self.label_names if self.label_names is not None
                 else [str(c) for c in range(len(self.average_precision))])
        palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        self.lines_, self.chance_level_, self.micro_line_ = {}, {}, None
        for c in labels:
            recall = np.asarray(self.recall[c])
            if not np.all(np.isfinite(recall)) or (
                self.prevalence is not None and self.prevalence[c] <= 0
            ):
                continue  # no positives: no curve
            kw = {"drawstyle": "steps-post", "color": palette(c % palette.N),
                  "label": f"{names[c]} (AP = {self.average_precision[c]:.2f})",
                  **kwargs}
            (self.lines_[c],) = ax.plot(recall, self.precision[c], **kw)
            if chance_level and self.prevalence is not None:
                (self.chance_level_[c],) = ax.plot(
                    [0, 1], [self.prevalence[c]] * 2, linestyle=":",
                    color=self.lines_[c].get_color(), label="_nolegend_")
        if micro:
            if self.micro_recall is None:
                raise ValueError("This display holds no micro-averaged curve.")
            kw = {"drawstyle": "steps-post", "color": "black", "linestyle": "--",
                  "label": f"micro (AP = {self.micro_average_precision:.2f})",
                  **kwargs}
            (self.micro_line_,) = ax.plot(self.micro_recall, self.micro_precision, **kw)
        name = self.estimator_name if name is None else name
        title = f"macro AP = {self.macro_average_precision:.3f}"
        if self.micro_average_precision is not None:
            title += f", micro AP = {self.micro_average_precision:.3f}"
        if name:
            title = f"{name}: {title}"
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="recall",
               ylabel="precision")
        ax.legend(title=title, loc="best", fontsize="small",
                  title_fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
