"""Class weights from encoded labels: the one implementation of ``class_weight``.

The estimators compute class weights from encoded labels ``0..K-1`` (and
masks of them) with the mass each element carries in the objective;
:func:`skweight.weighting.compute_class_weight` is the public form, on the
user's labels. Both call these functions.
"""

import numbers

import numpy as np

from ._validation import per_element

__all__ = [
    "balanced_class_weight",
    "class_sums",
    "class_weight_from_dict",
    "resolve_class_weight",
]

# Labels per np.bincount call: it widens labels to int64 (and weights to
# float64) whole, 16 bytes a pixel for a stack of one-byte masks.
_SUM_CHUNK = 2**20


def class_sums(codes, n_classes, weights=None):
    """Count the elements of each class, or sum their weights, a chunk of rows at a time.

    Parameters
    ----------
    codes : ndarray of int of shape (N, ...)
        Encoded labels in ``0..n_classes - 1``.
    n_classes : int
    weights : None or ndarray
        ``(N,)`` or ``codes``' shape (a broadcast view is not copied whole).

    Returns
    -------
    sums : ndarray of shape (n_classes,), dtype float64
    """
    codes = np.asarray(codes)
    sums = np.zeros(n_classes)
    if codes.size == 0:
        return sums
    step = max(1, _SUM_CHUNK // max(1, codes[0].size))
    for start in range(0, len(codes), step):
        part = codes[start:start + step]
        w = None if weights is None else np.ravel(
            per_element(weights[start:start + step], part.shape))
        sums += np.bincount(part.ravel(), weights=w, minlength=n_classes)
    return sums


def resolve_class_weight(class_weight, codes, classes, mass=None):
    """Per-class weights for encoded labels, from the ``class_weight`` parameter.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
    codes : ndarray of int
        Encoded labels in ``0..len(classes) - 1`` (any shape; e.g. masks).
    classes : ndarray
        The original labels, ``classes[k]`` is encoded as ``k``.
    mass : None or ndarray
        Non-negative weight of each element (``(N,)`` or ``codes``' shape).

    Returns
    -------
    weights : None or ndarray of shape (n_classes,), dtype float64
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict {{label: "
                f"weight}}, got the string {class_weight!r}."
            )
        return balanced_class_weight(codes, len(classes), mass)
    return class_weight_from_dict(class_weight, classes)


def balanced_class_weight(codes, n_classes, mass=None):
    """Weigh class ``k`` by ``sum(w) / (n_classes * sum(w[y == k]))``.

    The formula of :func:`sklearn.utils.class_weight.compute_class_weight`,
    with counts replaced by summed element weights, so that weighted classes
    are balanced too. A class without weight gets 0.

    Parameters
    ----------
    codes : ndarray of int
    n_classes : int
    mass : None or ndarray
        ``(N,)`` or ``codes``' shape, of any magnitude.

    Returns
    -------
    weights : ndarray of shape (n_classes,), dtype float64
    """
    w = None
    if mass is not None:
        # The formula is invariant to the weights' scale; dividing by the
        # maximum first keeps the sums finite for weights near 1e308.
        w = np.asarray(mass, dtype=np.float64)
        top = w.max() if w.size else 0.0
        w = w / top if top > 0 else w
    counts = class_sums(codes, n_classes, w)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (n_classes * counts[present])
    return weights


def class_weight_from_dict(class_weight, classes):
    """Per-class weights from ``{label: weight}``; labels it omits get 1.

    Parameters
    ----------
    class_weight : dict
    classes : ndarray

    Returns
    -------
    weights : ndarray of shape (n_classes,), dtype float64
    """
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"class_weight must be None, 'balanced' or a dict {{label: weight}}, "
            f"got {type(class_weight).__name__}: {class_weight!r}."
        )
    weights = np.ones(len(classes), dtype=np.float64)
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
            or isinstance(value, (bool, np.bool_))
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
