"""Geometric transforms: masks and weight maps move with their pixels."""

import numbers

import torch
import torch.nn.functional as F

from ._base import Transform
from ._checks import (
    _check_axes,
    _check_axes_fit,
    _check_fill,
    _check_fill_label,
    _check_floating,
    _check_p,
    _check_range,
    _fill_value,
)
from ._kernels import _choose, _nearest, _shift, _uniform

_INTERPOLATIONS = ("bilinear", "nearest")


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

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import RandomRot90
    >>> X = torch.rand(4, 1, 8, 8)
    >>> masks = (X[:, 0] > 0.5).long()
    >>> gen = torch.Generator().manual_seed(0)
    >>> Xr, mr = RandomRot90(p=1.0)(X, masks, generator=gen)
    >>> bool(((Xr[:, 0] > 0.5).long() == mr).all())  # the masks turn with the images
    True
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

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import RandomShift
    >>> X = torch.rand(4, 1, 8, 8)
    >>> masks = (X[:, 0] > 0.5).long()
    >>> gen = torch.Generator().manual_seed(0)
    >>> Xs, ms = RandomShift(max_shift=2)(X, masks, generator=gen)
    >>> bool(((Xs[:, 0] > 0.5).long() == ms).all())  # filled with 0 and label 0
    True
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

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import RandomAffine
    >>> X = torch.rand(4, 1, 8, 8)
    >>> masks = (X[:, 0] > 0.5).long()
    >>> affine = RandomAffine(degrees=30, interpolation="nearest")
    >>> Xa, ma = affine(X, masks, generator=torch.Generator().manual_seed(0))
    >>> bool(((Xa[:, 0] > 0.5).long() == ma).all())  # the same nearest-neighbour grid
    True
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
