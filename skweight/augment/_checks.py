"""Checks of the batch (images, targets, weights, generator) and of parameters."""

import numbers

import torch

from .._validation import check_real

_AXIS_NAMES = {-1: "width", -2: "height", -3: "depth"}


def is_mask(X, y):
    """Whether ``y`` is a label mask for the images ``X`` (and not targets).

    Parameters
    ----------
    X : Tensor of shape (N, C, H, W) or (N, C, D, H, W)
        Images or volumes.
    y : None or Tensor
        Per-sample targets, label masks or None.

    Returns
    -------
    mask : bool
        True when ``y.ndim >= 2`` and ``y.shape[1:] == X.shape[2:]``: one
        label per pixel (or voxel). Per-sample targets ``(N,)`` or ``(N, T)``
        are not masks.

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import is_mask
    >>> X = torch.zeros(2, 1, 8, 8)
    >>> is_mask(X, torch.zeros(2, 8, 8, dtype=torch.long)), is_mask(X, torch.zeros(2))
    (True, False)
    """
    return y is not None and y.ndim >= 2 and tuple(y.shape[1:]) == tuple(X.shape[2:])


def _check_images(X):
    if not isinstance(X, torch.Tensor):
        raise TypeError(
            f"X must be a torch.Tensor of shape (N, C, H, W) or (N, C, D, H, W); "
            f"got {type(X).__name__}."
        )
    if X.ndim not in (4, 5):
        raise ValueError(
            f"X must have shape (N, C, H, W) or (N, C, D, H, W); got shape "
            f"{tuple(X.shape)}."
        )


def _check_same_batch(X, t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be None or a torch.Tensor; got {type(t).__name__}.")
    if t.ndim == 0 or t.shape[0] != X.shape[0]:
        raise ValueError(
            f"{name}.shape == {tuple(t.shape)} but X has {X.shape[0]} samples; "
            f"expected {X.shape[0]} rows."
        )
    if t.device != X.device:
        raise ValueError(f"{name} is on {t.device} but X is on {X.device}.")


def _check_targets(X, y):
    """Validate ``y`` against ``X``; return whether it is a mask."""
    if y is None:
        return False
    _check_same_batch(X, y, "y")
    mask_shape = (X.shape[0], *X.shape[2:])
    if is_mask(X, y):
        if y.is_floating_point() or y.is_complex():
            raise TypeError(
                f"y has the shape of label masks {mask_shape} but dtype {y.dtype}; "
                f"masks must hold integer labels (they are moved, never interpolated)."
            )
        return True
    if y.ndim > 2:
        raise ValueError(
            f"y.shape == {tuple(y.shape)}: expected per-sample targets "
            f"({X.shape[0]},) or ({X.shape[0]}, T), or label masks {mask_shape}."
        )
    return False


def _check_weights(X, sample_weight):
    """Validate ``sample_weight``; return whether it is a per-pixel map."""
    if sample_weight is None:
        return False
    _check_same_batch(X, sample_weight, "sample_weight")
    if sample_weight.ndim == 1:
        return False
    if tuple(sample_weight.shape[1:]) == tuple(X.shape[2:]):
        return True
    raise ValueError(
        f"sample_weight.shape == {tuple(sample_weight.shape)}: expected "
        f"({X.shape[0]},) (one weight per sample) or {(X.shape[0], *X.shape[2:])} "
        f"(one weight per pixel)."
    )


def _check_generator(generator, device):
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be None or a torch.Generator; got {type(generator).__name__}."
        )
    where = generator.device
    same = where.type == device.type and (
        where.index is None or device.index is None or where.index == device.index
    )
    if not same:
        # torch's own error does not say which argument was wrong.
        raise ValueError(
            f"generator is on {where} but X is on {device}; the random numbers are "
            f"drawn where the batch lives, so the generator must be on X's device."
        )


def _check_floating(X, transform):
    if not X.is_floating_point():
        raise TypeError(
            f"{type(transform).__name__} needs floating-point images; X has dtype "
            f"{X.dtype}."
        )


def _check_p(p):
    return check_real(p, "p", low=0.0, high=1.0)


def _check_fill(fill):
    return check_real(fill, "fill")


def _check_fill_label(fill_label):
    if fill_label is None:
        return None
    if isinstance(fill_label, bool) or not isinstance(fill_label, numbers.Integral):
        raise TypeError(
            f"fill_label must be None or an int (the label of pixels that come from "
            f"outside the image, e.g. the segmenter's ignore_index); got {fill_label!r}."
        )
    return int(fill_label)


def _fill_value(fill_label, dtype):
    """``fill_label`` (None: 0) after checking ``dtype`` can hold it."""
    value = 0 if fill_label is None else fill_label
    if dtype == torch.bool:
        low, high = 0, 1
    else:
        info = torch.iinfo(dtype)
        low, high = info.min, info.max
    if not low <= value <= high:
        raise ValueError(
            f"fill_label={fill_label!r} does not fit the masks' dtype {dtype} "
            f"(range {low}..{high})."
        )
    return value


def _check_axes(axes, name, *, count=None):
    """Return ``axes`` as a tuple of distinct spatial axes: -1 (width), -2, -3 (depth)."""
    values = (axes,) if isinstance(axes, numbers.Integral) else axes
    expected = (
        f"{'a pair' if count == 2 else 'an int or a tuple'} of distinct spatial axes "
        f"among -1 (width), -2 (height), -3 (depth)"
    )
    try:
        values = tuple(values)
    except TypeError:
        values = None
    valid = (
        values is not None
        and len(values) > 0
        and (count is None or len(values) == count)
        and all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) and a in _AXIS_NAMES
            for a in values
        )
        and len(set(values)) == len(values)
    )
    if not valid:
        raise ValueError(f"{name} must be {expected}; got {axes!r}.")
    return tuple(int(a) for a in values)


def _check_axes_fit(X, axes, name):
    """Refuse depth axes on 2-D images."""
    n_spatial = X.ndim - 2
    for axis in axes:
        if -axis > n_spatial:
            raise ValueError(
                f"{name}={axes!r} includes {axis} ({_AXIS_NAMES[axis]}), but X of shape "
                f"{tuple(X.shape)} has {n_spatial} spatial axes."
            )


def _check_range(value, name, *, low=None, low_open=False, symmetric_about=None):
    """Validate a range: a ``(lo, hi)`` pair with ``lo <= hi``.

    When ``symmetric_about`` (``c``) is given, a non-negative real ``r`` is
    accepted too and means ``(c - r, c + r)``.
    """
    if symmetric_about is not None and isinstance(value, numbers.Real):
        r = check_real(value, name, low=0.0)
        return symmetric_about - r, symmetric_about + r
    try:
        lo, hi = value
    except (TypeError, ValueError):
        form = "a non-negative real or " if symmetric_about is not None else ""
        raise ValueError(
            f"{name} must be {form}a pair (low, high); got {value!r}."
        ) from None
    lo = check_real(lo, f"{name}[0]", low=low, low_open=low_open)
    hi = check_real(hi, f"{name}[1]", low=low, low_open=low_open)
    if lo > hi:
        raise ValueError(
            f"{name} must be a pair (low, high) with low <= high; got {value!r}."
        )
    return lo, hi
