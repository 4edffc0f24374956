"""Intensity transforms: image values change, masks and weights stay as they are."""

import torch

from .._validation import check_real
from ._base import Transform
from ._checks import _check_floating, _check_p
from ._kernels import _choose, _per_sample, _uniform


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

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import BrightnessContrast
    >>> X = torch.zeros(4, 1, 8, 8)
    >>> gen = torch.Generator().manual_seed(0)
    >>> Xb, _ = BrightnessContrast(brightness=0.5)(X, generator=gen)
    >>> bool(Xb.abs().max() <= 0.5)
    True
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

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import GaussianNoise
    >>> X = torch.zeros(2, 1, 64, 64)
    >>> Xn, _ = GaussianNoise(std=0.1)(X, generator=torch.Generator().manual_seed(0))
    >>> round(Xn.std().item(), 2)
    0.1
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
