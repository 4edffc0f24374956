"""Class and sample weights: validation, computation and normalisation.

The estimators minimise the weighted mean ``sum_i w_i l_i / sum_i w_i``. The
weights are normalised once, in float64, over the training set so that their
mean is 1; a mini-batch mean of ``w_i l_i`` is then an unbiased estimate of the
objective, and weights spanning 1e-100..1 survive the cast to float32 (the
largest becomes O(1) instead of the smallest underflowing to 0 first).
"""

import numbers
import warnings

import numpy as np

__all__ = [
    "ESS_WARN_FRACTION",
    "check_sample_weight",
    "compute_class_weight",
    "effective_sample_size",
    "normalize_weights",
]

#: Below this fraction of the number of weighted elements, the effective
#: sample size triggers a warning. With mean-1 weights the variance of a
#: mini-batch loss estimate grows by ``N / ESS``: at 1 %, a batch of 64
#: samples carries less than one sample's worth of information, so training
#: is driven by the few heaviest samples and the gradient noise of the rest.
ESS_WARN_FRACTION = 0.01


def check_sample_weight(sample_weight, n_samples, *, extra_shape=None,
                        name="sample_weight"):
    """Validate sample weights and return them as float64.

    Parameters
    ----------
    sample_weight : None or array-like
        Non-negative, finite weights of shape ``(n_samples,)`` or, when
        ``extra_shape`` is given, ``(n_samples, *extra_shape)`` (per element,
        e.g. per pixel).
    n_samples : int
    extra_shape : None or tuple of int
        The trailing shape per-element weights may have.
    name : str

    Returns
    -------
    sample_weight : None or ndarray of dtype float64
        A new array (the caller's is never modified).
    """
    if sample_weight is None:
        return None
    if hasattr(sample_weight, "detach"):  # torch tensor
        sample_weight = sample_weight.detach().cpu().numpy()
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    try:
        w = np.array(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be an array of non-negative numbers: {exc}"
        ) from exc
    allowed = [(n_samples,)]
    if extra_shape is not None:
        allowed.append((n_samples, *extra_shape))
    if w.shape not in allowed:
        expected = " or ".join(str(s) for s in allowed)
        raise ValueError(
            f"{name}.shape == {w.shape}, expected {expected}."
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinity.")
    if np.any(w < 0):
        raise ValueError(
            f"{name} contains negative values (min {w.min()}); weights must be "
            f">= 0."
        )
    if not np.any(w > 0):
        raise ValueError(
            f"{name} has only zero weights ({w.size} of them); at least one "
            f"weight must be positive."
        )
    return w


def compute_class_weight(class_weight, y, classes, sample_weight=None):
    """Per-class weights for encoded labels.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        ``"balanced"`` gives class ``k`` the weight
        ``sum(w) / (n_classes * sum(w[y == k]))``: the formula of
        :func:`sklearn.utils.class_weight.compute_class_weight`, with counts
        replaced by summed sample weights so that weighted classes are
        balanced too. A dict maps original labels to weights; labels it omits
        get weight 1.
    y : ndarray of int
        Encoded labels in ``0..len(classes) - 1`` (any shape; e.g. masks).
    classes : ndarray
        The original labels, ``classes[k]`` is encoded as ``k``.
    sample_weight : None or ndarray
        Weights broadcastable to ``y``.

    Returns
    -------
    weights : None or ndarray of shape (n_classes,), dtype float64
    """
    if class_weight is None:
        return None
    n_classes = len(classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict {{label: "
                f"weight}}, got the string {class_weight!r}."
            )
        y = np.asarray(y)
        if sample_weight is None:
            sw = np.ones(y.shape)
        else:
            sw = np.asarray(sample_weight, dtype=np.float64)
            # Per-image weights for per-pixel labels apply to every pixel.
            sw = np.broadcast_to(sw.reshape(sw.shape + (1,) * (y.ndim - sw.ndim)),
                                 y.shape)
        counts = np.bincount(y.ravel(), weights=sw.ravel(), minlength=n_classes)
        total = counts.sum()
        with np.errstate(divide="ignore"):
            weights = np.where(counts > 0, total / (n_classes * counts), 0.0)
        return weights
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"class_weight must be None, 'balanced' or a dict {{label: weight}}, "
            f"got {type(class_weight).__name__}: {class_weight!r}."
        )
    weights = np.ones(n_classes, dtype=np.float64)
    index = {_label_key(c): k for k, c in enumerate(classes)}
    unknown = [label for label in class_weight if _label_key(label) not in index]
    if unknown:
        raise ValueError(
            f"class_weight has labels {unknown!r} that are not in the classes "
            f"found in y: {list(classes)!r}."
        )
    for label, value in class_weight.items():
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not np.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"class_weight[{label!r}] must be a finite number >= 0, got "
                f"{value!r}."
            )
        weights[index[_label_key(label)]] = float(value)
    if not np.any(weights > 0):
        raise ValueError("class_weight gives every class a weight of 0.")
    return weights


def _label_key(label):
    # NumPy scalars and Python scalars of equal value must match (np.int64(3)
    # vs 3, np.str_('a') vs 'a').
    return label.item() if isinstance(label, np.generic) else label


def normalize_weights(weights):
    """Scale weights to mean 1, in float64, without underflow.

    Parameters
    ----------
    weights : ndarray
        Non-negative weights, at least one positive.

    Returns
    -------
    weights : ndarray of dtype float64, mean 1
    """
    w = np.asarray(weights, dtype=np.float64)
    top = w.max()
    if top <= 0:
        raise ValueError("The training weights are all zero: nothing to learn from.")
    # Dividing by the maximum first keeps the sum finite and away from the
    # subnormal range whatever the original scale (1e-300 or 1e300).
    w = w / top
    return w / w.mean()


def effective_sample_size(weights):
    """Kish's effective sample size ``(sum w)^2 / sum w^2``.

    Parameters
    ----------
    weights : ndarray

    Returns
    -------
    ess : float
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    w = w / w.max()
    return float(w.sum() ** 2 / np.dot(w, w))


def warn_if_small_ess(weights, what="samples"):
    """Warn when the effective sample size is below ``ESS_WARN_FRACTION * N``.

    Parameters
    ----------
    weights : ndarray
    what : str
        What the weights are attached to, for the message.
    """
    n = np.size(weights)
    ess = effective_sample_size(weights)
    if ess < ESS_WARN_FRACTION * n:
        warnings.warn(
            f"The effective sample size of the training weights, "
            f"(sum w)^2 / sum w^2 = {ess:.3g}, is below "
            f"{ESS_WARN_FRACTION:.0%} of the {n} weighted {what}: a few heavy "
            f"{what} dominate the objective and mini-batch gradients are "
            f"noisy. Consider flattening the weights (e.g. a power < 1 or a "
            f"log transform), larger batches, or more data.",
            UserWarning,
            stacklevel=4,
        )
    return ess
