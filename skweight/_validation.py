"""Validation rules and messages, in one place for the whole package.

The estimators, the losses and the metrics all check the same things
(sample weights, ``ignore_index``, labels, real-valued settings); the rules
and the wording of the errors live here so that a user meets one message
for one mistake, wherever it is made. The losses keep a torch-side check of
weight values (``skweight.losses._prepare``) that avoids a device sync, with
the message built here.
"""

import math
import numbers

import numpy as np

__all__ = [
    "check_bool",
    "check_class_mass",
    "check_ignore_index",
    "check_int",
    "check_real",
    "check_sample_weight",
    "encode_labels",
    "is_zero_one",
    "label_positions",
    "per_element",
    "sample_weight_shape_message",
    "unique_labels",
    "SAMPLE_WEIGHT_VALUES_MESSAGE",
]

#: The rule every weight obeys; the torch-side check cannot tell which value
#: broke it without a device sync, so it states the rule only.
SAMPLE_WEIGHT_VALUES_MESSAGE = "{name} must contain finite non-negative numbers"


def sample_weight_shape_message(name, got, n_samples, extra_shape=None,
                                unit="sample", element="element"):
    """Return the error message for a weight array of the wrong shape.

    Parameters
    ----------
    name : str
    got : tuple of int
        The shape received.
    n_samples : int
    extra_shape : None or tuple of int
        The trailing shape of per-element weights, when they are allowed.
    unit, element : str
        What one weight is attached to in each form (e.g. "image", "pixel").

    Returns
    -------
    message : str
    """
    expected = f"({n_samples},) (one weight per {unit})"
    if extra_shape is not None:
        expected += f" or {(n_samples, *extra_shape)} (one weight per {element})"
    return f"{name}.shape == {tuple(got)}, expected {expected}."


def check_sample_weight(sample_weight, n_samples, *, extra_shape=None,
                        name="sample_weight", unit="sample", element="element",
                        allow_all_zero=False):
    """Validate sample weights and return them as a new float64 array.

    Parameters
    ----------
    sample_weight : None, scalar or array-like
        Non-negative, finite weights of shape ``(n_samples,)`` or, when
        ``extra_shape`` is given, ``(n_samples, *extra_shape)`` (one
        weight per element, e.g. per pixel). A scalar is one weight for all.
    n_samples : int
    extra_shape : None or tuple of int
        The trailing shape per-element weights may have.
    name, unit, element : str
        Used in the messages.
    allow_all_zero : bool, default=False
        Whether weights that are all 0 are acceptable.

    Returns
    -------
    sample_weight : None or ndarray of dtype float64
        A new array: the caller's is never modified.
    """
    if sample_weight is None:
        return None
    if hasattr(sample_weight, "detach"):  # torch tensor
        sample_weight = sample_weight.detach().cpu().numpy()
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    try:
        w = np.array(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be an array of finite non-negative numbers, got "
            f"{type(sample_weight).__name__}: {exc}"
        ) from exc
    allowed = [(n_samples,)]
    if extra_shape is not None:
        allowed.append((n_samples, *extra_shape))
    if w.shape not in allowed:
        raise ValueError(sample_weight_shape_message(
            name, w.shape, n_samples, extra_shape, unit, element
        ))
    rule = SAMPLE_WEIGHT_VALUES_MESSAGE.format(name=name)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinity; {rule}.")
    if np.any(w < 0):
        raise ValueError(
            f"{name} contains negative values (min {w.min()!r}); {rule}."
        )
    if not allow_all_zero and not np.any(w > 0):
        raise ValueError(
            f"{name} has only zero weights ({w.size} of them); at least one "
            f"weight must be positive."
        )
    return w


def per_element(weights, shape):
    """Broadcast per-sample weights ``(N,)`` over the trailing axes of ``shape``.

    Parameters
    ----------
    weights : array-like of shape (N,) or ``shape``
    shape : tuple of int

    Returns
    -------
    weights : ndarray of dtype float64 and shape ``shape`` (a read-only view)
    """
    w = np.asarray(weights, dtype=np.float64)
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


def check_real(value, name, *, low=None, high=None, low_open=False):
    """Return ``value`` as a float after checking it is finite and in range.

    Parameters
    ----------
    value : object
    name : str
    low, high : None or float
        Inclusive bounds (``low`` exclusive when ``low_open``).
    low_open : bool, default=False

    Returns
    -------
    value : float
    """
    # bool is an Integral, but True as a gamma or a fraction is surely a bug.
    valid = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    valid = valid and math.isfinite(value)
    if valid and low is not None:
        valid = value > low if low_open else value >= low
    valid = valid and (high is None or value <= high)
    if not valid:
        left = "(" if low_open else "["
        if low is not None and high is not None:
            expected = f"in {left}{low}, {high}]"
        elif low is not None:
            expected = f"> {low}" if low_open else f">= {low}"
        elif high is not None:
            expected = f"<= {high}"
        else:
            expected = "finite"
        raise ValueError(f"{name} must be a finite real number {expected}; got {value!r}.")
    return float(value)


def check_class_mass(value, name):
    """Return per-class priors, counts or masses as a new 1-D float64 array.

    Parameters
    ----------
    value : array-like of shape (K,)
        Finite non-negative numbers, at least one positive. A tensor is
        read without being modified.
    name : str
        The parameter's name, for the messages.

    Returns
    -------
    mass : ndarray of shape (K,), dtype float64
    """
    if hasattr(value, "detach"):  # a torch tensor, read without modifying it
        value = value.detach().cpu().double().numpy()
    try:
        mass = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a 1-D array of finite non-negative numbers, one per "
            f"class; got {value!r}."
        ) from exc
    if mass.ndim != 1 or mass.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D array with one entry per class; got "
            f"shape {mass.shape}."
        )
    if not np.all(np.isfinite(mass)) or np.any(mass < 0):
        raise ValueError(
            f"{name} must contain finite non-negative numbers; got {mass.tolist()}."
        )
    if not np.any(mass > 0):
        raise ValueError(
            f"{name} is all zero ({mass.size} entries): its entries must be finite, "
            f"non-negative and not all 0."
        )
    return mass


def check_int(value, name, *, low=None, allow_none=False):
    """Return ``value`` as an int after checking its type and lower bound."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or (
        low is not None and value < low
    ):
        bound = "" if low is None else f" >= {low}"
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}an int{bound}; got {value!r}.")
    return int(value)


def check_bool(value, name):
    """Return ``value`` as a bool; refuse anything that is not one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool (True or False); got {value!r}.")
    return bool(value)


def check_ignore_index(ignore_index, name="ignore_index"):
    """Validate ``ignore_index``: None or an int label.

    Returns
    -------
    ignore_index : None or int
    """
    if ignore_index is None:
        return None
    if not isinstance(ignore_index, numbers.Integral) or isinstance(
        ignore_index, (bool, np.bool_)
    ):
        raise TypeError(
            f"{name} must be None or an int (the label of elements that neither "
            f"teach nor count), got {ignore_index!r}."
        )
    return int(ignore_index)


def label_positions(labels, classes):
    """Find each label in sorted ``classes``.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    classes : ndarray of shape (K,), sorted, K >= 1

    Returns
    -------
    positions : ndarray of shape (n,)
        The index in ``classes`` of each label (meaningless where unknown).
    unknown : ndarray of bool of shape (n,)
        Labels that are not among ``classes``.
    """
    positions = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    return positions, classes[positions] != labels


def is_zero_one(a):
    """Return whether every value of ``a`` is 0 or 1 (booleans included).

    Integers are checked by their minimum and maximum: no temporary of the
    array's size, which matters for a stack of 0/1 masks.
    """
    a = np.asarray(a)
    if a.dtype.kind == "b" or a.size == 0:
        return True
    if a.dtype.kind in "iu":
        return bool(a.min() >= 0 and a.max() <= 1)
    if a.dtype.kind == "f":
        return bool(((a == 0) | (a == 1)).all())
    return bool(np.isin(a, (0, 1)).all())


# Labels per chunk when masks are encoded: the temporaries of sorting and
# searching (30-40 bytes a label) stay bounded, whatever the masks' size.
_LABEL_CHUNK = 2**20


def unique_labels(y):
    """Return the sorted distinct values of ``y`` (any shape), chunk by chunk.

    ``np.unique`` on a whole stack of masks sorts a copy of it; here no
    temporary is larger than a chunk's.
    """
    flat = np.asarray(y).reshape(-1)
    if flat.size <= _LABEL_CHUNK:
        return np.unique(flat)
    return np.unique(np.concatenate([
        np.unique(flat[start:start + _LABEL_CHUNK])
        for start in range(0, flat.size, _LABEL_CHUNK)
    ]))


def encode_labels(y, classes=None, name="y", ignore=None, dtype=np.int64):
    """Encode labels as ``0..K-1``, learning ``classes`` when not given.

    Parameters
    ----------
    y : ndarray
        Labels of any shape.
    classes : None or ndarray
        Sorted known labels; labels outside them raise a ValueError.
    name : str
    ignore : None or int
        A label that is not a class (``ignore_index``): encoded as 0.
    dtype : numpy integer dtype, default=np.int64
        Of the encoded labels; it must hold ``len(classes) - 1``.

    Returns
    -------
    classes : ndarray
    encoded : ndarray of ``dtype``, same shape as ``y``
    """
    y = np.asarray(y)
    flat = y.reshape(-1)
    if classes is None:
        classes = unique_labels(flat)
    if len(classes) == 0:
        raise ValueError(f"{name} cannot be encoded: no classes are known.")
    encoded = np.empty(flat.shape, dtype=dtype)
    for start in range(0, flat.size, _LABEL_CHUNK):
        part = flat[start:start + _LABEL_CHUNK]
        idx, unknown = label_positions(part, classes)
        if ignore is not None:
            ignored = part == ignore
            idx[ignored] = 0
            unknown &= ~ignored
        if np.any(unknown):
            raise ValueError(
                f"{name} contains labels not seen in fit: "
                f"{np.unique(part[unknown])[:10].tolist()}; fitted classes are "
                f"{classes.tolist()}."
            )
        encoded[start:start + _LABEL_CHUNK] = idx
    return classes, encoded.reshape(y.shape)
