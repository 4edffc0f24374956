"""Seeded, batch-wise data augmentation that runs where the batch lives.

The transforms here act on a whole mini-batch at once, on its device (the
GPU when training there), and are meant for the estimators' ``augment``
parameter, which applies them to training batches only. Every transform is
a callable::

    X, y = transform(X, y=None, *, generator=None)

Conventions shared by all of them:

- ``X`` is a float tensor of images ``(N, C, H, W)`` or volumes
  ``(N, C, D, H, W)``.
- ``y`` is None, per-sample targets or label masks, told apart by shape
  (:func:`is_mask`): ``y`` is a mask when ``y.ndim >= 2`` and
  ``y.shape[1:] == X.shape[2:]``, i.e. ``(N, H, W)`` or ``(N, D, H, W)``.
  Masks must hold integers and move jointly with their images, by nearest
  neighbour: a label is never interpolated, so a mask only ever contains
  the labels it had, plus ``fill_label`` where pixels come from outside the
  image; pixels labelled ``ignore_index`` stay ignored. Per-sample targets
  ``(N,)`` or ``(N, T)`` (classification, regression) come back unchanged.
- Randomness comes only from ``generator``, a :class:`torch.Generator` on
  ``X``'s device (None draws from torch's global RNG for that device). Each
  sample gets its own decisions (flip or not, angle, shift, ...), and a
  transform draws the same number of random numbers for batches of the same
  shape, whatever its settings and the values in the batch: a seeded
  generator repeats exactly, and changing one transform's ``p`` does not
  reshuffle the draws of the next one. CPU and CUDA generators produce
  different streams: the same seed gives the same augmentation on the same
  kind of device.
- A transform never reorders, drops or adds samples and never modifies its
  inputs in place: it returns new tensors on ``X``'s device with the input
  dtypes (per-sample targets are returned as they are). The estimator relies
  on this to keep per-sample weights aligned.
- Per-pixel weight maps ``(N, H, W)`` / ``(N, D, H, W)`` must move with
  their pixels too. Every transform here therefore also accepts a
  ``sample_weight`` keyword and then returns ``(X, y, sample_weight)``: a
  weight map is moved like a mask, with weight 0 where pixels come from
  outside the image; per-sample weights ``(N,)`` come back unchanged. See
  :func:`apply_weighted`.

A user's own callable works too, in the plain form ``(X, y) -> (X, y)``:
:func:`apply` passes ``generator`` only to callables whose signature takes
it, and wraps ``torchvision.transforms.v2`` objects in
:class:`TorchvisionTransform` (torchvision is optional and imported only
there).

The transforms are plain picklable objects whose constructor arguments are
public attributes, with scikit-learn's ``get_params``/``set_params``, so
that estimators holding them can be cloned, pickled and grid-searched.
Parameters are checked at construction and again at every call (the checks
are a few microseconds of Python, without any device work).
"""

import contextlib
import importlib
import inspect
import numbers

import torch
import torch.nn.functional as F

from ._validation import check_real

__all__ = [
    "BrightnessContrast",
    "Compose",
    "GaussianNoise",
    "RandomAffine",
    "RandomFlip",
    "RandomRot90",
    "RandomShift",
    "TorchvisionTransform",
    "Transform",
    "apply",
    "apply_weighted",
    "is_mask",
]

_AXIS_NAMES = {-1: "width", -2: "height", -3: "depth"}
_INTERPOLATIONS = ("bilinear", "nearest")


# ---------------------------------------------------------------------------
# Checks of the batch and of parameters
# ---------------------------------------------------------------------------


def is_mask(X, y):
    """Whether ``y`` is a label mask for the images ``X`` (and not targets).

    Parameters
    ----------
    X : Tensor of shape (N, C, H, W) or (N, C, D, H, W)
    y : None or Tensor

    Returns
    -------
    mask : bool
        True when ``y.ndim >= 2`` and ``y.shape[1:] == X.shape[2:]``: one
        label per pixel (or voxel). Per-sample targets ``(N,)`` or ``(N, T)``
        are not masks.
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


# ---------------------------------------------------------------------------
# Device-side helpers (no host synchronisation anywhere)
# ---------------------------------------------------------------------------


def _per_sample(values, t):
    """Per-sample values ``(N,)`` shaped to broadcast against ``t``."""
    return values.view(values.shape[0], *([1] * (t.ndim - 1)))


def _choose(flags, new, old):
    """Take ``new`` for the flagged samples, ``old`` for the others, exactly."""
    return torch.where(_per_sample(flags, new), new, old)


def _uniform(generator, device, n, low, high, shape=()):
    u = torch.rand((n, *shape), generator=generator, device=device)
    return low + (high - low) * u


def _fill_outside(t, inside, value):
    """``t`` with ``value`` wherever ``inside`` (broadcastable) is False."""
    return torch.where(inside, t, t.new_full((), value))


def _take(t, sources, fill):
    """Copy pixels of each sample of ``t`` from integer source positions.

    ``t`` is ``(N, ..., *spatial)`` (images with channels, masks, weight
    maps); ``sources`` holds one integer tensor per spatial axis, in order,
    each broadcastable to ``(N, *spatial)``: output pixel ``i`` of a sample is
    its input pixel ``(sources[0][i], sources[1][i], ...)``, or ``fill`` when
    that lies outside. One gather over the flattened pixels, so values are
    copied exactly whatever their dtype.
    """
    n, n_spatial = t.shape[0], len(sources)
    spatial = t.shape[t.ndim - n_spatial:]
    lead = t.shape[1:t.ndim - n_spatial]  # channels, if any
    inside, flat = True, 0
    for index, size in zip(sources, spatial, strict=True):
        inside = inside & (index >= 0) & (index < size)
        flat = flat * size + index.clamp(0, size - 1)
    flat = flat.expand(n, *spatial).reshape(n, *([1] * len(lead)), -1)
    moved = t.reshape(n, *lead, -1).gather(-1, flat.expand(n, *lead, -1)).view(t.shape)
    inside = inside.expand(n, *spatial).reshape(n, *([1] * len(lead)), *spatial)
    return _fill_outside(moved, inside, fill)


def _shift(t, shifts, fill):
    """Shift each sample of ``t`` by whole pixels.

    ``shifts`` is ``(N, n_axes)`` for the last ``n_axes`` axes; a pixel comes
    from ``i - shift`` along each axis, and ``fill`` where that is outside.
    """
    n_axes = shifts.shape[1]
    sources = []
    for j in range(n_axes):
        # source index along axis j, shaped (N, 1, ..., L, ..., 1)
        view = [-1 if k == j else 1 for k in range(n_axes)]
        positions = torch.arange(t.shape[j - n_axes], device=t.device).view(view)
        sources.append(positions[None] - shifts[:, j].view(-1, *([1] * n_axes)))
    return _take(t, sources, fill)


def _nearest(t, grid, fill):
    """Resample maps ``t`` (N, *spatial) at ``grid`` by nearest neighbour.

    ``grid`` is :func:`torch.nn.functional.affine_grid`'s output (coordinates
    in ``[-1, 1]``, x first, ``align_corners=False``). Indices are computed
    here rather than by ``grid_sample`` so that labels of any integer dtype
    (and weights) are copied exactly and the outside gets ``fill``.
    """
    n_spatial = grid.shape[-1]
    spatial = t.shape[t.ndim - n_spatial:]
    # grid[..., 0] indexes the last axis (x), grid[..., 1] the one before, ...
    sources = [
        torch.round(((grid[..., j] + 1) * spatial[-1 - j] - 1) / 2).long()
        for j in reversed(range(n_spatial))
    ]
    return _take(t, sources, fill)


# ---------------------------------------------------------------------------
# Calling transforms and user callables
# ---------------------------------------------------------------------------


def _takes_keyword(fn, name):
    """Whether ``fn`` can be called with the keyword ``name``."""
    if isinstance(fn, Transform) and type(fn).__call__ is Transform.__call__:
        return True  # the common case, without inspecting a signature per batch
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return any(
        (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        or p.kind == p.VAR_KEYWORD
        for p in parameters
    )


def _torchvision_kind(fn):
    """"v2" for a torchvision.transforms.v2 object, "v1" for an older one."""
    module = type(fn).__module__ or ""
    if module.startswith("torchvision.transforms.v2"):
        return "v2"
    if module.startswith("torchvision.transforms"):
        return "v1"
    return None


def _as_callable(transform):
    kind = _torchvision_kind(transform)
    if kind == "v2":
        return TorchvisionTransform(transform)
    if kind == "v1":
        raise TypeError(
            f"{transform!r} is a torchvision.transforms (v1) object, which cannot move "
            f"a mask with its image; use its torchvision.transforms.v2 counterpart."
        )
    if not callable(transform):
        raise TypeError(
            f"transform must be a callable (X, y) -> (X, y); got "
            f"{type(transform).__name__}: {transform!r}."
        )
    return transform


def _check_output(out, n_out, transform, X, y, mask):
    if not isinstance(out, (tuple, list)) or len(out) != n_out:
        form = "(X, y)" if n_out == 2 else "(X, y, sample_weight)"
        raise TypeError(
            f"{transform!r} must return a tuple {form}; got {type(out).__name__}."
        )
    X_out, y_out = out[0], out[1]
    _check_images(X_out)
    if X_out.shape[0] != X.shape[0]:
        raise ValueError(
            f"{transform!r} returned {X_out.shape[0]} images for {X.shape[0]}; a "
            f"transform must keep every sample, in order (weights follow the order)."
        )
    if y is not None:
        if y_out is None:
            raise ValueError(f"{transform!r} returned y=None for a y that was given.")
        _check_same_batch(X_out, y_out, "the returned y")
        if mask and not is_mask(X_out, y_out):
            raise ValueError(
                f"{transform!r} returned masks of shape {tuple(y_out.shape)} for images "
                f"of shape {tuple(X_out.shape)}; they no longer match."
            )
    return tuple(out)


def apply(transform, X, y=None, generator=None):
    """Apply a transform, or any ``(X, y) -> (X, y)`` callable, to a batch.

    ``generator`` is passed only when the callable's signature takes it, so
    that plain user functions work; ``torchvision.transforms.v2`` objects
    are wrapped in :class:`TorchvisionTransform`. The result is checked: the
    same number of samples, and masks that still match their images.

    Parameters
    ----------
    transform : callable
        ``transform(X, y[, generator=...]) -> (X, y)``.
    X : Tensor of shape (N, C, H, W) or (N, C, D, H, W)
    y : None or Tensor
        Per-sample targets or label masks (see :func:`is_mask`).
    generator : None or torch.Generator
        On ``X``'s device.

    Returns
    -------
    X, y : Tensor
        The transformed batch.
    """
    _check_images(X)
    mask = _check_targets(X, y)
    _check_generator(generator, X.device)
    fn = _as_callable(transform)
    if _takes_keyword(fn, "generator"):
        out = fn(X, y, generator=generator)
    else:
        out = fn(X, y)
    return _check_output(out, 2, transform, X, y, mask)


def apply_weighted(transform, X, y=None, sample_weight=None, generator=None):
    """Like :func:`apply`, with sample weights kept aligned with the pixels.

    Per-sample weights ``(N,)`` (and None) pass through unchanged: a
    transform keeps every sample in its place. Per-pixel weight maps
    ``(N, *spatial)`` must move with the pixels, so they are handed to the
    callable as its ``sample_weight`` keyword; the transforms of this module
    take it (weight 0 for pixels that come from outside the image), a user
    callable must take it and return ``(X, y, sample_weight)``.

    Parameters
    ----------
    transform : callable
    X : Tensor of shape (N, C, H, W) or (N, C, D, H, W)
    y : None or Tensor
    sample_weight : None or Tensor of shape (N,), (N, H, W) or (N, D, H, W)
    generator : None or torch.Generator

    Returns
    -------
    X, y, sample_weight : Tensor

    Raises
    ------
    TypeError
        For per-pixel weights and a callable without a ``sample_weight``
        keyword: it could move pixels and leave the weights behind.
    """
    _check_images(X)
    if not _check_weights(X, sample_weight):
        X, y = apply(transform, X, y, generator)
        return X, y, sample_weight
    mask = _check_targets(X, y)
    _check_generator(generator, X.device)
    fn = _as_callable(transform)
    if isinstance(fn, TorchvisionTransform) or not _takes_keyword(fn, "sample_weight"):
        raise TypeError(
            f"{transform!r} cannot take per-pixel sample weights: it may move pixels "
            f"and would leave their weights behind. Use skweight.augment transforms, "
            f"or a callable taking a sample_weight keyword and returning "
            f"(X, y, sample_weight)."
        )
    kwargs = {"sample_weight": sample_weight}
    if _takes_keyword(fn, "generator"):
        kwargs["generator"] = generator
    out = _check_output(fn(X, y, **kwargs), 3, transform, X, y, mask)
    w_out = out[2]
    if w_out is None or not _check_weights(out[0], w_out):
        raise ValueError(
            f"{transform!r} returned sample_weight that is not a per-pixel map for the "
            f"returned images."
        )
    return out


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------


class Transform:
    """Base class of the batch transforms: parameters, calling convention, repr.

    A subclass lists its parameters as constructor arguments stored under
    the same names, checks them in ``_check_params`` (returning the values
    it works with) and implements ``_run``. Parameters are validated at
    construction, by ``set_params`` and at every call, so that settings
    changed by attribute assignment are caught too.
    """

    def __call__(self, X, y=None, *, generator=None, sample_weight=None):
        """Transform a batch.

        Parameters
        ----------
        X : Tensor of shape (N, C, H, W) or (N, C, D, H, W)
            Images or volumes.
        y : None or Tensor
            Per-sample targets ``(N,)``/``(N, T)``, returned unchanged, or
            integer label masks ``(N, *X.shape[2:])``, moved with the images.
        generator : None or torch.Generator
            The source of all randomness, on ``X``'s device; None uses
            torch's global RNG.
        sample_weight : None or Tensor of shape (N,), (N, H, W) or (N, D, H, W)
            Optional: per-sample weights (returned unchanged) or per-pixel
            weight maps (moved with the pixels).

        Returns
        -------
        X, y : Tensor
            New tensors; ``y`` is the given object when it is not a mask.
        sample_weight : Tensor
            Only when ``sample_weight`` was given.
        """
        _check_images(X)
        mask = _check_targets(X, y)
        weight_map = _check_weights(X, sample_weight)
        _check_generator(generator, X.device)
        params = self._check_params()
        X_out, mask_out, map_out = self._run(
            params, X, y if mask else None, sample_weight if weight_map else None, generator
        )
        # Per-sample targets and weights come back as the very same objects.
        y_out = mask_out if mask else y
        if sample_weight is None:
            return X_out, y_out
        return X_out, y_out, (map_out if weight_map else sample_weight)

    def _check_params(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, params, X, mask, weight_map, generator):  # pragma: no cover
        """Return ``(X, mask, weight_map)``; ``mask``/``weight_map`` may be None."""
        raise NotImplementedError

    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep=True):
        """Get the constructor parameters, as scikit-learn's ``get_params``.

        Parameters
        ----------
        deep : bool, default=True
            Also list the parameters of parameters that have ``get_params``,
            as ``name__subname``.

        Returns
        -------
        params : dict
        """
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            params[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{k}", v) for k, v in value.get_params().items())
        return params

    def set_params(self, **params):
        """Set constructor parameters (``name__subname`` reaches nested ones).

        Parameters
        ----------
        **params : dict
            New values, checked before this returns.

        Returns
        -------
        self : Transform
        """
        valid = self._param_names()
        nested = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; valid "
                    f"parameters are {valid}."
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        self._check_params()
        return self

    def __repr__(self):
        """Return the constructor call, e.g. ``RandomFlip(axes=(-1,), p=0.5)``."""
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._param_names())
        return f"{type(self).__name__}({args})"


class _Geometric(Transform):
    """A transform that moves pixels: masks and weight maps move with them.

    Subclasses implement ``_draw`` (all random numbers, a fixed count per
    batch) and ``_move(t, draws, params, fill)``, which must move any tensor
    ``(N, ..., *spatial)`` exactly (a gather, no arithmetic on values) so
    that it serves images, masks and weight maps alike.
    """

    def _run(self, params, X, mask, weight_map, generator):
        draws = self._draw(params, X, generator)
        X = self._move_images(X, draws, params)
        if mask is not None:
            mask = self._move(mask, draws, params, _fill_value(params["fill_label"],
                                                                mask.dtype))
        if weight_map is not None:
            # Pixels from outside the image carry no information: weight 0.
            weight_map = self._move(weight_map, draws, params, 0)
        return X, mask, weight_map

    def _move_images(self, X, draws, params):
        return self._move(X, draws, params, params["fill"])


# ---------------------------------------------------------------------------
# Geometric transforms
# ---------------------------------------------------------------------------


class RandomFlip(_Geometric):
    """Flip each sample along spatial axes, each with probability ``p``.

    Parameters
    ----------
    axes : int or tuple of int, default=(-1,)
        Spatial axes counted from the end: ``-1`` flips left-right
        (horizontal), ``-2`` up-down (vertical), ``-3`` along the depth of
        volumes. Each axis is flipped independently.
    p : float in [0, 1], default=0.5
        Probability that a sample is flipped along a given axis.

    Notes
    -----
    Draws ``N * len(axes)`` uniform numbers per batch.

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import RandomFlip
    >>> X = torch.arange(4.0).view(1, 1, 1, 4)
    >>> RandomFlip(p=1.0)(X)[0].flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
    """

    def __init__(self, axes=(-1,), p=0.5):
        self.axes = axes
        self.p = p
        self._check_params()

    def _check_params(self):
        return {
            "axes": _check_axes(self.axes, "axes"),
            "p": _check_p(self.p),
            "fill": 0.0,
            "fill_label": None,
        }

    def _draw(self, params, X, generator):
        _check_axes_fit(X, params["axes"], "axes")
        u = torch.rand((X.shape[0], len(params["axes"])), generator=generator,
                       device=X.device)
        return u < params["p"]

    def _move(self, t, draws, params, fill):
        for j, axis in enumerate(params["axes"]):
            t = _choose(draws[:, j], t.flip(axis), t)
        return t


class RandomRot90(_Geometric):
    """Rotate each sample by a multiple of 90 degrees in a plane.

    With probability ``p`` a sample is rotated by 90, 180 or 270 degrees,
    each equally likely; otherwise it is left alone. The default ``p=0.75``
    therefore makes the four orientations equally likely.

    Parameters
    ----------
    axes : pair of int, default=(-2, -1)
        The plane of rotation, as spatial axes counted from the end (``-3``
        is the depth of volumes). The rotation goes from the first axis
        towards the second, as :func:`torch.rot90` with ``dims=axes``; the
        default turns images counter-clockwise as displayed with row 0 at
        the top. The plane must be square.
    p : float in [0, 1], default=0.75
        Probability that a sample is rotated.

    Notes
    -----
    Draws ``N`` uniform numbers and ``N`` integers per batch.
    """

    def __init__(self, axes=(-2, -1), p=0.75):
        self.axes = axes
        self.p = p
        self._check_params()

    def _check_params(self):
        return {
            "axes": _check_axes(self.axes, "axes", count=2),
            "p": _check_p(self.p),
            "fill": 0.0,
            "fill_label": None,
        }

    def _draw(self, params, X, generator):
        axes = params["axes"]
        _check_axes_fit(X, axes, "axes")
        if X.shape[axes[0]] != X.shape[axes[1]]:
            raise ValueError(
                f"RandomRot90 needs a square plane: X has sizes {X.shape[axes[0]]} and "
                f"{X.shape[axes[1]]} along axes={axes}. A 180-degree turn of any image "
                f"is RandomFlip(axes={axes}) with both flips."
            )
        n = X.shape[0]
        rotate = torch.rand(n, generator=generator, device=X.device) < params["p"]
        quarter_turns = torch.randint(1, 4, (n,), generator=generator, device=X.device)
        return rotate, quarter_turns

    def _move(self, t, draws, params, fill):
        rotate, quarter_turns = draws
        out = t
        for k in (1, 2, 3):
            out = _choose(rotate & (quarter_turns == k), torch.rot90(t, k, params["axes"]),
                          out)
        return out


class RandomShift(_Geometric):
    """Shift each sample by a random whole number of pixels.

    Each sample is shifted, with probability ``p``, by an integer drawn
    uniformly from ``[-max_shift, max_shift]`` along each spatial axis;
    pixels that come from outside the image get ``fill`` (masks:
    ``fill_label``). This is the same as padding by ``max_shift`` and
    cropping back to the original size at a random place (the "random crop
    with padding" of CIFAR training [1]_), without building the padded batch.

    Parameters
    ----------
    max_shift : int or tuple of int, default=4
        Largest shift in pixels, one for all spatial axes or one per axis
        (``(height, width)`` or ``(depth, height, width)``).
    p : float in [0, 1], default=1.0
        Probability that a sample is shifted (a drawn shift may be 0).
    fill : float, default=0.0
        Image value of the pixels shifted in.
    fill_label : None or int, default=None
        Mask label of the pixels shifted in. None labels them 0, the first
        class (background, with the estimators' label encoding), which
        matches an image filled with 0. Pass the segmenter's
        ``ignore_index`` to have them ignored. Labels already in the mask,
        ``ignore_index`` included, are only ever moved.

    Notes
    -----
    Draws ``N`` uniform numbers, then ``N`` per spatial axis, per batch.

    References
    ----------
    .. [1] K. He, X. Zhang, S. Ren and J. Sun, "Deep residual learning for
       image recognition", CVPR 2016 (4-pixel padding and random 32 x 32
       crops on CIFAR-10).
    """

    def __init__(self, max_shift=4, p=1.0, fill=0.0, fill_label=None):
        self.max_shift = max_shift
        self.p = p
        self.fill = fill
        self.fill_label = fill_label
        self._check_params()

    def _check_params(self):
        shifts = self.max_shift
        single = isinstance(shifts, numbers.Integral) and not isinstance(shifts, bool)
        values = (shifts,) if single else shifts
        try:
            values = tuple(values)
        except TypeError:
            values = ()
        valid = len(values) in (1, 2, 3) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0
            for v in values
        )
        if not valid or (not single and len(values) == 1):
            raise ValueError(
                f"max_shift must be an int >= 0 or a tuple of 2 or 3 of them (one per "
                f"spatial axis); got {shifts!r}."
            )
        return {
            "max_shift": tuple(int(v) for v in values),
            "single": single,
            "p": _check_p(self.p),
            "fill": _check_fill(self.fill),
            "fill_label": _check_fill_label(self.fill_label),
        }

    def _draw(self, params, X, generator):
        n_spatial = X.ndim - 2
        limits = params["max_shift"]
        if params["single"]:
            limits = limits * n_spatial
        if len(limits) != n_spatial:
            raise ValueError(
                f"max_shift={self.max_shift!r} gives {len(limits)} axes, but X of shape "
                f"{tuple(X.shape)} has {n_spatial} spatial axes."
            )
        n = X.shape[0]
        shift = torch.rand(n, generator=generator, device=X.device) < params["p"]
        u = torch.rand((n, n_spatial), generator=generator, device=X.device)
        columns = [
            torch.floor(u[:, j] * (2 * m + 1)).long().clamp(max=2 * m) - m
            for j, m in enumerate(limits)
        ]
        # A sample that is not shifted gets shift 0: the gather is then exact.
        return torch.stack(columns, dim=1) * shift[:, None]

    def _move(self, t, draws, params, fill):
        return _shift(t, draws, fill)


class RandomAffine(_Geometric):
    """Rotate and scale each sample about its centre by a small random amount.

    Images are resampled with ``torch.nn.functional.grid_sample`` (bilinear,
    i.e. trilinear for volumes, or nearest); masks and weight maps always by
    nearest neighbour on the same grid, so labels are moved, never mixed.
    Rotation and scaling act in pixel units: a non-square image is rotated
    rigidly, not in its normalised coordinates.

    Parameters
    ----------
    degrees : float or pair of float, default=10.0
        Rotation angle drawn uniformly from ``[-degrees, degrees]`` or from
        the given ``(low, high)`` range. Positive angles turn from the first
        of ``axes`` towards the second, as :func:`torch.rot90` does; for the
        default axes, counter-clockwise as displayed with row 0 at the top.
    scale : pair of float, default=(0.9, 1.1)
        Zoom factor drawn uniformly from this range; above 1 magnifies.
        The same factor applies to every spatial axis.
    p : float in [0, 1], default=1.0
        Probability that a sample is transformed.
    axes : pair of int, default=(-2, -1)
        Plane of rotation (spatial axes from the end; ``-3`` is the depth of
        volumes). Volumes are rotated about the remaining axis.
    interpolation : {"bilinear", "nearest"}, default="bilinear"
        Resampling of the images.
    fill : float, default=0.0
        Image value outside the original image; near the border, bilinear
        resampling blends towards it.
    fill_label : None or int, default=None
        Mask label outside the original image, as in :class:`RandomShift`.

    Notes
    -----
    Draws ``3 N`` uniform numbers per batch (whether to transform, angle,
    scale). A sample that is not transformed is returned exactly.
    """

    def __init__(self, degrees=10.0, scale=(0.9, 1.1), p=1.0, axes=(-2, -1),
                 interpolation="bilinear", fill=0.0, fill_label=None):
        self.degrees = degrees
        self.scale = scale
        self.p = p
        self.axes = axes
        self.interpolation = interpolation
        self.fill = fill
        self.fill_label = fill_label
        self._check_params()

    def _check_params(self):
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {_INTERPOLATIONS}; got "
                f"{self.interpolation!r}."
            )
        return {
            "degrees": _check_range(self.degrees, "degrees", symmetric_about=0.0),
            "scale": _check_range(self.scale, "scale", low=0.0, low_open=True),
            "p": _check_p(self.p),
            "axes": _check_axes(self.axes, "axes", count=2),
            "interpolation": self.interpolation,
            "fill": _check_fill(self.fill),
            "fill_label": _check_fill_label(self.fill_label),
        }

    def _draw(self, params, X, generator):
        _check_axes_fit(X, params["axes"], "axes")
        _check_floating(X, self)
        n, device = X.shape[0], X.device
        transform = torch.rand(n, generator=generator, device=device) < params["p"]
        angle = _uniform(generator, device, n, *params["degrees"])
        zoom = _uniform(generator, device, n, *params["scale"])
        return transform, self._grid(X, angle, zoom, params["axes"])

    @staticmethod
    def _grid(X, angle, zoom, axes):
        """Build the sampling grid mapping each output pixel to its source position."""
        n_spatial = X.ndim - 2
        # float32 at least: half-precision coordinates are off by a fraction
        # of a pixel on images a few hundred pixels wide.
        dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
        radians = torch.deg2rad(angle.to(dtype))
        cos, sin = torch.cos(radians), torch.sin(radians)
        # Coordinate j of affine_grid runs along spatial axis -1 - j, in units
        # of half that axis' size: the pixel rotation R is conjugated by those
        # sizes (theta = S^-1 R S) so that it stays rigid on non-square images.
        ia, ib = -axes[0] - 1, -axes[1] - 1
        size_a, size_b = X.shape[axes[0]], X.shape[axes[1]]
        theta = torch.eye(n_spatial, n_spatial + 1, dtype=dtype, device=X.device)
        theta = theta.repeat(len(angle), 1, 1)
        theta[:, ib, ib], theta[:, ib, ia] = cos, -sin * (size_a / size_b)
        theta[:, ia, ib], theta[:, ia, ia] = sin * (size_b / size_a), cos
        theta = theta / zoom.to(dtype)[:, None, None]
        return F.affine_grid(theta, list(X.shape), align_corners=False)

    def _move_images(self, X, draws, params):
        transform, grid = draws
        work = X if X.dtype in (torch.float32, torch.float64) else X.float()
        fill = params["fill"]
        # grid_sample pads with zeros: shifting by the fill makes the outside
        # (and the blend towards it at the border) the fill value.
        moved = F.grid_sample(work - fill if fill else work, grid.to(work.dtype),
                              mode=params["interpolation"],
                              padding_mode="zeros", align_corners=False)
        if fill:
            moved = moved + fill
        return _choose(transform, moved.to(X.dtype), X)

    def _move(self, t, draws, params, fill):
        transform, grid = draws
        return _choose(transform, _nearest(t, grid, fill), t)


# ---------------------------------------------------------------------------
# Intensity transforms
# ---------------------------------------------------------------------------


class _Intensity(Transform):
    """A transform of image values only: masks and weights stay as they are."""

    def _run(self, params, X, mask, weight_map, generator):
        _check_floating(X, self)
        X = self._change(params, X, generator)
        return X, mask, weight_map


class BrightnessContrast(_Intensity):
    """Random brightness offset and contrast factor per sample.

    With probability ``p``, a sample becomes ``(X - m) * c + m + b``, where
    ``m`` is the mean of each of its channels, ``c`` is drawn uniformly from
    ``[1 - contrast, 1 + contrast]`` and ``b`` from
    ``[-brightness, brightness]``; ``c`` and ``b`` are shared by the
    channels of a sample. The offset is additive because the images need not
    lie in [0, 1] (standardised inputs have mean 0, where a multiplicative
    brightness would be a contrast change). Values are not clipped.

    Parameters
    ----------
    brightness : float >= 0, default=0.1
        Largest offset, in the units of ``X``.
    contrast : float in [0, 1], default=0.1
        Largest relative change of contrast.
    p : float in [0, 1], default=1.0
        Probability that a sample is changed.

    Notes
    -----
    Draws ``3 N`` uniform numbers per batch.
    """

    def __init__(self, brightness=0.1, contrast=0.1, p=1.0):
        self.brightness = brightness
        self.contrast = contrast
        self.p = p
        self._check_params()

    def _check_params(self):
        return {
            "brightness": check_real(self.brightness, "brightness", low=0.0),
            "contrast": check_real(self.contrast, "contrast", low=0.0, high=1.0),
            "p": _check_p(self.p),
        }

    def _change(self, params, X, generator):
        n, device = X.shape[0], X.device
        change = torch.rand(n, generator=generator, device=device) < params["p"]
        b = params["brightness"]
        c = params["contrast"]
        offset = _per_sample(_uniform(generator, device, n, -b, b).to(X.dtype), X)
        factor = _per_sample(_uniform(generator, device, n, 1 - c, 1 + c).to(X.dtype), X)
        mean = X.mean(dim=tuple(range(2, X.ndim)), keepdim=True)
        return _choose(change, (X - mean) * factor + mean + offset, X)


class GaussianNoise(_Intensity):
    """Add zero-mean Gaussian noise to each sample with probability ``p``.

    Parameters
    ----------
    std : float >= 0, default=0.05
        Standard deviation of the noise, in the units of ``X``.
    p : float in [0, 1], default=1.0
        Probability that a sample gets noise.

    Notes
    -----
    Draws ``N`` uniform numbers and one normal number per element of ``X``
    per batch, in ``X``'s dtype.
    """

    def __init__(self, std=0.05, p=1.0):
        self.std = std
        self.p = p
        self._check_params()

    def _check_params(self):
        return {"std": check_real(self.std, "std", low=0.0), "p": _check_p(self.p)}

    def _change(self, params, X, generator):
        noisy = torch.rand(X.shape[0], generator=generator, device=X.device) < params["p"]
        noise = torch.randn(X.shape, generator=generator, device=X.device, dtype=X.dtype)
        return _choose(noisy, X + params["std"] * noise, X)


# ---------------------------------------------------------------------------
# Composition and torchvision
# ---------------------------------------------------------------------------


class Compose(Transform):
    """Apply transforms one after the other, with one generator.

    Parameters
    ----------
    transforms : list of callables
        Transforms of this module, ``torchvision.transforms.v2`` objects
        (wrapped in :class:`TorchvisionTransform`) or plain callables
        ``(X, y) -> (X, y)``; each is called through :func:`apply`, so
        ``generator`` reaches those that take it.

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import Compose, GaussianNoise, RandomFlip
    >>> augment = Compose([RandomFlip(axes=(-2, -1)), GaussianNoise(std=0.05)])
    >>> X = torch.zeros(8, 1, 16, 16)
    >>> masks = torch.zeros(8, 16, 16, dtype=torch.long)
    >>> Xa, ya = augment(X, masks, generator=torch.Generator().manual_seed(0))
    >>> Xa.shape, ya.shape
    (torch.Size([8, 1, 16, 16]), torch.Size([8, 16, 16]))
    """

    def __init__(self, transforms):
        self.transforms = transforms
        self._check_params()

    def _check_params(self):
        if not isinstance(self.transforms, (list, tuple)):
            raise TypeError(
                f"transforms must be a list of callables; got "
                f"{type(self.transforms).__name__}: {self.transforms!r}."
            )
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] is not callable: {t!r}.")
        return {}

    def _run(self, params, X, mask, weight_map, generator):
        for t in self.transforms:
            if weight_map is None:
                X, mask = apply(t, X, mask, generator)
            else:
                X, mask, weight_map = apply_weighted(t, X, mask, weight_map, generator)
        return X, mask, weight_map

    def __repr__(self):
        """Return the constructor call, one transform per line."""
        inner = "".join(f"    {t!r},\n" for t in self.transforms)
        return f"{type(self).__name__}([\n{inner}])"


def _tv_tensors():
    try:
        return importlib.import_module("torchvision.tv_tensors")
    except ImportError as exc:
        raise ImportError(
            "TorchvisionTransform needs torchvision (with transforms.v2 and "
            "tv_tensors, version 0.16 or later); it is an optional dependency of "
            "skweight and could not be imported."
        ) from exc


class TorchvisionTransform(Transform):
    """Use a ``torchvision.transforms.v2`` transform as a batch transform.

    Images go to torchvision as ``tv_tensors.Image`` (volumes as
    ``tv_tensors.Video`` whose frames are the depth slices, so spatial
    transforms act in the height-width plane, equally on every slice) and
    masks as ``tv_tensors.Mask``, which torchvision moves with their image by
    nearest neighbour. Per-sample targets are not shown to torchvision and
    come back unchanged. :func:`apply` and :class:`Compose` wrap
    torchvision v2 objects in this class by themselves.

    Parameters
    ----------
    transform : torchvision.transforms.v2.Transform
        Any v2 transform or v2 ``Compose``. Its fill values (e.g.
        ``fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}``) decide what
        comes from outside the image.
    per_sample : bool, default=True
        True calls the transform once per sample, so each image gets its own
        random parameters as with the other transforms of this module (a
        Python loop over the batch). False calls it once on the whole batch,
        which torchvision transforms with a single draw: every sample is
        transformed alike. Faster, but less varied.

    Notes
    -----
    torchvision draws from torch's global RNG. With a ``generator``, this
    class draws one seed from it and runs the transform with the global
    RNG (CPU, and CUDA on a GPU) seeded by that seed and restored afterwards,
    holding skweight's lock on the global RNG: the result repeats with the
    generator and the caller's random numbers are untouched. Drawing the seed
    is one host synchronisation per batch on a GPU. Without a generator the
    global RNG is used as it is. Per-pixel weight maps cannot be passed
    through torchvision (its fill for them would be the masks' fill).
    """

    def __init__(self, transform, per_sample=True):
        self.transform = transform
        self.per_sample = per_sample
        self._check_params()

    def _check_params(self):
        if not callable(self.transform):
            raise TypeError(
                f"transform must be a torchvision.transforms.v2 transform; got "
                f"{type(self.transform).__name__}: {self.transform!r}."
            )
        if not isinstance(self.per_sample, bool):
            raise TypeError(
                f"per_sample must be a bool (True or False); got {self.per_sample!r}."
            )
        return {}

    def _run(self, params, X, mask, weight_map, generator):
        tv = _tv_tensors()
        if weight_map is not None:  # apply_weighted refuses this earlier
            raise TypeError("TorchvisionTransform cannot move per-pixel sample weights.")
        volumes = X.ndim == 5
        with self._seeded(generator, X.device):
            if self.per_sample:
                # Sliced before wrapping: indexing a tv_tensor gives a plain tensor.
                pairs = [self._call_tv(tv, X[i], None if mask is None else mask[i], volumes)
                         for i in range(X.shape[0])]
                X = torch.stack([x for x, _ in pairs])
                mask = None if mask is None else torch.stack([m for _, m in pairs])
            else:
                X, mask = self._call_tv(tv, X, mask, volumes)
        return X, mask, None

    @staticmethod
    def _seeded(generator, device):
        if generator is None:
            return contextlib.nullcontext()
        # Imported here: only this adapter touches torch's global RNG.
        from ._seeding import seeded_section

        seed = torch.randint(0, 2**62, (1,), generator=generator, device=device)
        return seeded_section(int(seed.item()), device)

    def _call_tv(self, tv, X, mask, volumes):
        """One torchvision call, on one sample or on the whole batch."""
        # Volumes (..., C, D, H, W) become videos (..., D, C, H, W): their
        # depth slices are the frames.
        images = tv.Video(X.transpose(-4, -3)) if volumes else tv.Image(X)
        if mask is None:
            out_images, out_mask = self.transform(images), None
        else:
            out_images, out_mask = self.transform(images, tv.Mask(mask))
            out_mask = out_mask.as_subclass(torch.Tensor)
        out_images = out_images.as_subclass(torch.Tensor)
        if volumes:
            out_images = out_images.transpose(-4, -3)
        return out_images, out_mask
