"""Input coercion: turn what users pass as ``X`` into an image tensor.

Everything the estimators accept (NumPy arrays, torch tensors, pandas frames,
nested lists; 2-D flattened, 3-D single-channel or 4-D images) ends up here as
a tensor of shape ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) in the dtype it is
stored in: integer images stay integers (a quarter of float32's bytes for
``uint8``) and are scaled per batch on the device by :func:`scale_inputs`;
floats are float32. The caller's array is never written to: a tensor may
share memory with it (a read-only memmap too), but nothing downstream works
in place on that tensor.
"""

import numbers
import warnings

import numpy as np
import torch

__all__ = [
    "INTEGER_IMAGE_RANGE",
    "check_images",
    "check_input_scale",
    "check_input_shape",
    "scale_inputs",
    "to_numpy_1d",
]


def check_input_shape(input_shape, ndims=(2,)):
    """Validate the ``input_shape`` parameter.

    Parameters
    ----------
    input_shape : None or tuple of int
        ``(C, H, W)`` or ``(H, W)`` (one channel); with ``3 in ndims`` also
        ``(C, D, H, W)`` for volumes.
    ndims : tuple of int, default=(2,)
        The numbers of spatial dimensions accepted.

    Returns
    -------
    shape : None or tuple of int
        The shape as ``(C, H, W)`` (or ``(C, D, H, W)``).
    """
    if input_shape is None:
        return None
    lengths = (2, 3, 4) if 3 in ndims else (2, 3)
    form = "(C, H, W), (H, W) or (C, D, H, W)" if 3 in ndims else "(C, H, W) or (H, W)"
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(
            f"input_shape must be None or a tuple {form} of positive ints, "
            f"got {input_shape!r}."
        )
    shape = tuple(input_shape)
    if len(shape) not in lengths or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
        for s in shape
    ):
        raise ValueError(
            f"input_shape must be a tuple {form} of positive ints, "
            f"got {input_shape!r}."
        )
    shape = tuple(int(s) for s in shape)
    return shape if len(shape) != 2 else (1, *shape)


def _as_array_or_tensor(X, name):
    if hasattr(X, "tocsr") or hasattr(X, "to_dense") and not isinstance(X, torch.Tensor):
        raise TypeError(
            f"Sparse data was passed for {name}, but dense data is required. Use "
            f"'.toarray()' to convert to a dense numpy array."
        )
    if isinstance(X, torch.Tensor):
        if X.is_sparse:
            raise TypeError(
                f"Sparse data was passed for {name}, but dense data is required. "
                f"Use '.to_dense()' to convert it."
            )
        return X.detach()
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # pandas DataFrame
        X = X.to_numpy()
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} could not be converted to an array: {exc}") from exc
    return arr


def _check_dtype(arr, name):
    if isinstance(arr, torch.Tensor):
        if arr.is_complex():
            raise ValueError(f"Complex data not supported; {name} has dtype {arr.dtype}.")
        return
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported; {name} has dtype {arr.dtype}.")
    if kind == "O":
        # Object arrays of numbers (e.g. from a list of mixed ints/floats) are fine.
        try:
            arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be numeric, got an array of dtype object that "
                f"cannot be converted to float: {exc}"
            ) from exc
    elif kind not in "biuf":
        raise TypeError(
            f"{name} must be numeric (bool, int, uint or float), got dtype "
            f"{arr.dtype}."
        )


def _as_image_tensor(arr):
    """Return the images as stored: integers stay integers, floats become float32.

    C-contiguous integer and float32 arrays are shared, not copied (a
    read-only memmap too: skweight never writes to it, so torch's warning
    about non-writable arrays does not apply). Integer images are scaled per
    batch on the device (:func:`scale_inputs`).
    """
    if isinstance(arr, torch.Tensor):
        if arr.dtype in _KEPT_INTEGERS:
            return arr
        if arr.dtype.is_floating_point or arr.dtype == torch.bool:
            return arr.to(torch.float32)
        return arr.to(torch.int64)  # uint32, uint64: too few torch kernels
    kept = arr.dtype in _KEPT_NUMPY_INTEGERS or (
        arr.dtype == np.float32 and arr.flags.c_contiguous
    )
    if kept:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-writable.*")
            return torch.from_numpy(np.ascontiguousarray(arr))
    if arr.dtype.kind in "ui":
        return torch.from_numpy(arr.astype(np.int64))
    # Values beyond float32's range become inf here and are reported by the
    # finiteness check that follows, with a clearer message than NumPy's.
    with np.errstate(over="ignore", invalid="ignore"):
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


_KEPT_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                  torch.uint16)
_KEPT_NUMPY_INTEGERS = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.int16,
                                                   np.int32, np.int64, np.uint16))

#: What ``input_scale="auto"`` divides integer images of these types by.
INTEGER_IMAGE_RANGE = {torch.uint8: 255.0, torch.uint16: 65535.0}


def check_input_scale(input_scale):
    """Validate the ``input_scale`` parameter.

    Parameters
    ----------
    input_scale : "auto", None or positive number

    Returns
    -------
    input_scale : "auto", None or float
    """
    if input_scale is None or (isinstance(input_scale, str) and input_scale == "auto"):
        return input_scale
    if isinstance(input_scale, numbers.Real) and not isinstance(input_scale, bool) and (
        np.isfinite(input_scale) and input_scale > 0
    ):
        return float(input_scale)
    raise ValueError(
        f"input_scale must be 'auto' (uint8 images / 255, uint16 / 65535, other "
        f"integers unscaled), None (integer inputs passed unscaled as int64, e.g. "
        f"token ids) or a positive number that multiplies the inputs, got "
        f"{input_scale!r}."
    )


def scale_inputs(x, input_scale, user_module):
    """Turn a batch of stored images into what the network takes (on its device).

    Parameters
    ----------
    x : torch.Tensor
        A batch as stored: integer or float32.
    input_scale : "auto", None or float
        The checked parameter. ``"auto"``: ``uint8`` images are divided by
        255 and ``uint16`` ones by 65535 (float32); other integers reach a
        user's module as int64 (ids, e.g. token ids) and the default
        networks as float32, unscaled; floats stay as they are. ``None``:
        every integer input reaches the network as int64, unscaled. A
        number multiplies every input (integers converted to float32
        first).
    user_module : bool
        Whether the network is the user's (not a default one).

    Returns
    -------
    x : torch.Tensor
    """
    if x.is_floating_point():
        return x if not isinstance(input_scale, float) else x * input_scale
    if input_scale is None:
        return x.long()
    if isinstance(input_scale, float):
        return x.to(torch.float32) * input_scale
    top = INTEGER_IMAGE_RANGE.get(x.dtype)
    if top is not None:
        # x / 255 in float32, rounded as NumPy's float32 division rounds: the
        # same numbers as images converted to float32 up front.
        return x.to(torch.float32) / top
    return x.long() if user_module else x.to(torch.float32)


def channels_last_hint(shape, name="X"):
    """Return a hint when an image array looks channels-last (Keras' ``(N, H, W, C)``).

    Parameters
    ----------
    shape : tuple of int
        The shape of a 4-D (or 5-D) array.
    name : str

    Returns
    -------
    hint : str
        Empty unless the last axis has 1, 3 or 4 entries and is shorter than
        every spatial axis before it.
    """
    if len(shape) not in (4, 5):
        return ""
    last, middle = shape[-1], shape[1:-1]
    if last not in (1, 3, 4) or not all(last < s for s in middle):
        return ""
    order = (0, len(shape) - 1, *range(1, len(shape) - 1))
    layout = "(N, H, W, C)" if len(shape) == 4 else "(N, D, H, W, C)"
    return (
        f"{name} of shape {tuple(shape)} looks like channels-last images {layout} "
        f"with {last} channel(s); skweight reads it as (N, C, ...) = {shape[1]} "
        f"channel(s) of size {tuple(shape[2:])}. If the channels come last, pass "
        f"{name}.transpose{order} (NumPy) or {name}.permute{order} (torch)."
    )


def check_images(X, *, input_shape=None, expected_shape=None, match_spatial=True,
                 n_features=None, estimator_name="the estimator", name="X",
                 ndims=(2,)):
    """Validate ``X`` and return its images as a tensor ``(N, C, H, W)``, as stored.

    Parameters
    ----------
    X : array-like or torch.Tensor
        ``(N, C, H, W)``, ``(N, H, W)`` (one channel) or ``(N, F)``; with
        ``3 in ndims`` also volumes ``(N, C, D, H, W)``. A 2-D ``X`` is
        reshaped to ``input_shape`` when given, otherwise to
        ``(N, 1, 1, F)``. Integer values are kept (see :func:`scale_inputs`).
    input_shape : None or tuple of int
        Validated ``(C, H, W)`` (or ``(C, D, H, W)``), see
        :func:`check_input_shape`.
    expected_shape : None or tuple of int
        The ``(C, *spatial)`` seen in ``fit``; prediction input must match it.
    match_spatial : bool
        Whether ``H`` and ``W`` must also match ``expected_shape`` (False for
        fully convolutional networks, which only need the channel count).
    n_features : None or int
        For 2-D ``X`` at predict time, the number of features seen in ``fit``.
    estimator_name : str
        Used in error messages.
    name : str
        Name used in error messages.
    ndims : tuple of int, default=(2,)
        The numbers of spatial dimensions accepted (2: images, 3: volumes).

    Returns
    -------
    images : torch.Tensor of shape (N, C, H, W) (or (N, C, D, H, W))
        Integer images in their dtype (uint32 and uint64 as int64), floats
        as float32; shared with ``X`` where it is C-contiguous.
    raw_shape : tuple of int
        The shape of ``X`` as given.
    """
    arr = _as_array_or_tensor(X, name)
    _check_dtype(arr, name)
    shape = tuple(arr.shape)
    max_ndim = 5 if 3 in ndims else 4
    if len(shape) < 2 or len(shape) > max_ndim:
        volumes = " or 5 (N, C, D, H, W)" if max_ndim == 5 else ""
        advice = " Reshape your data, e.g. X.reshape(-1, 1) for a single feature."
        if len(shape) == 5:
            advice = (f" {estimator_name} takes 2-D images, not volumes"
                      f" (CNNSegmenter segments volumes).")
        raise ValueError(
            f"Expected {name} with 2 dimensions (N, n_features), 3 (N, H, W) or "
            f"4 (N, C, H, W){volumes}, got {len(shape)}-D {name} of shape {shape}."
            f"{advice}"
        )
    hint = channels_last_hint(shape, name)
    if hint and expected_shape is None:
        warnings.warn(hint, UserWarning, stacklevel=4)
    if shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 "
            f"is required."
        )
    if len(shape) == 2 and shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 "
            f"is required."
        )
    if len(shape) == 2 and n_features is not None and shape[1] != n_features:
        raise ValueError(
            f"{name} has {shape[1]} features, but {estimator_name} is expecting "
            f"{n_features} features as input."
        )
    if isinstance(arr, np.ndarray) and arr.dtype.kind == "O":
        arr = arr.astype(np.float64)
    images = _as_image_tensor(arr)
    # Integers are finite. For floats a sum is NaN or inf whenever an
    # element is, and reducing is ~50x faster than torch.isfinite on the
    # CPU; only an overflowing sum of finite values needs the element-wise
    # check.
    if images.is_floating_point() and not (
        bool(torch.isfinite(images.sum())) or bool(torch.isfinite(images).all())
    ):
        raise ValueError(
            f"Input {name} contains NaN or infinity (or values too large for "
            f"float32)."
        )

    n = shape[0]
    if images.ndim == 2:
        if input_shape is not None:
            if shape[1] != int(np.prod(input_shape)):
                raise ValueError(
                    f"{name} has {shape[1]} features per sample, which does not "
                    f"match input_shape={input_shape} "
                    f"({int(np.prod(input_shape))} features)."
                )
            images = images.reshape(n, *input_shape)
        else:
            images = images.reshape(n, 1, 1, shape[1])
    elif images.ndim == 3:
        images = images.unsqueeze(1)
    if input_shape is not None and len(shape) != 2:
        if tuple(images.shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"{name} has image shape {tuple(images.shape[1:])}, which does not "
                f"match input_shape={input_shape}."
            )

    if expected_shape is not None:
        got = tuple(images.shape[1:])
        if got[0] != expected_shape[0]:
            raise ValueError(
                f"{name} has {got[0]} channel(s), but the estimator was fitted "
                f"with {expected_shape[0]} channel(s) (images of shape "
                f"{tuple(expected_shape)}).{' ' + hint if hint else ''}"
            )
        if len(got) != len(expected_shape):
            raise ValueError(
                f"{name} has images of shape {got}, but the estimator was fitted "
                f"on images of shape {tuple(expected_shape)} "
                f"({len(expected_shape) - 1} spatial dimensions)."
            )
        if match_spatial and got != tuple(expected_shape):
            raise ValueError(
                f"{name} has image shape {got}, but the estimator was fitted on "
                f"images of shape {tuple(expected_shape)}."
            )
    return images, shape


def to_numpy_1d(y, name="y"):
    """Return ``y`` as a 1-D NumPy array, accepting a column vector.

    Parameters
    ----------
    y : array-like or torch.Tensor
    name : str

    Returns
    -------
    y : ndarray of shape (n_samples,)
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning

        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected. "
            f"Please change the shape of {name} to (n_samples,), for example "
            f"using ravel().",
            DataConversionWarning,
            stacklevel=3,
        )
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D of shape (n_samples,), got shape {y.shape}."
        )
    return y
