"""Composition of transforms: Compose."""

from ._apply import apply, apply_weighted
from ._base import Transform


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
