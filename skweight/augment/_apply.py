"""Calling transforms and user callables on a batch: apply, apply_weighted."""

# Apart from _base.py: wrapping torchvision objects needs TorchvisionTransform,
# itself a Transform; here both import without a cycle.
import inspect

from ._base import Transform
from ._checks import (
    _check_generator,
    _check_images,
    _check_same_batch,
    _check_targets,
    _check_weights,
    is_mask,
)
from ._torchvision import TorchvisionTransform


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
        Images or volumes.
    y : None or Tensor
        Per-sample targets or label masks (see :func:`is_mask`).
    generator : None or torch.Generator
        On ``X``'s device.

    Returns
    -------
    X : Tensor
        The transformed images.
    y : None or Tensor
        The targets or masks that ``transform`` returned.

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import apply
    >>> def invert(X, y):
    ...     return 1 - X, y
    >>> X, y = apply(invert, torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
    >>> X.max().item(), y.tolist()
    (1.0, [0, 1])
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
        ``transform(X, y[, generator=...]) -> (X, y)``, or, for per-pixel
        weights, ``transform(X, y, sample_weight=...[, generator=...]) -> (X,
        y, sample_weight)``.
    X : Tensor of shape (N, C, H, W) or (N, C, D, H, W)
        Images or volumes.
    y : None or Tensor
        Per-sample targets or label masks (see :func:`is_mask`).
    sample_weight : None or Tensor of shape (N,), (N, H, W) or (N, D, H, W)
        Per-sample weights or per-pixel weight maps.
    generator : None or torch.Generator
        On ``X``'s device.

    Returns
    -------
    X : Tensor
        The transformed images.
    y : None or Tensor
        The targets or masks that ``transform`` returned.
    sample_weight : None or Tensor
        The weights: per-sample weights as given, weight maps as moved by
        ``transform``.

    Raises
    ------
    TypeError
        For per-pixel weights and a callable without a ``sample_weight``
        keyword: it could move pixels and leave the weights behind.

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import RandomShift, apply_weighted
    >>> X, w = torch.ones(2, 1, 4, 4), torch.ones(2, 4, 4)
    >>> gen = torch.Generator().manual_seed(0)
    >>> Xs, _, ws = apply_weighted(RandomShift(max_shift=1), X, None, w, gen)
    >>> bool(((Xs[:, 0] == 0) == (ws == 0)).all())  # pixels shifted in weigh 0
    True
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
