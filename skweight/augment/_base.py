"""The base class of the batch transforms: calling convention, parameters, repr."""

import inspect

from ._checks import _check_generator, _check_images, _check_targets, _check_weights


class Transform:
    """Base class of the batch transforms: parameters, calling convention, repr.

    A subclass lists its parameters as constructor arguments stored under
    the same names, checks them in ``_check_params`` (returning the values
    it works with) and implements ``_run``. Parameters are validated at
    construction, by ``set_params`` and at every call, so that settings
    changed by attribute assignment are caught too.

    Examples
    --------
    >>> import torch
    >>> from skweight.augment import RandomShift, Transform
    >>> shift = RandomShift(max_shift=2)
    >>> isinstance(shift, Transform)
    True
    >>> shift.set_params(p=0.5)
    RandomShift(max_shift=2, p=0.5, fill=0.0, fill_label=None)
    >>> X, w = torch.zeros(4, 1, 8, 8), torch.ones(4, 8, 8)
    >>> gen = torch.Generator().manual_seed(0)
    >>> Xs, y, ws = shift(X, None, generator=gen, sample_weight=w)
    >>> Xs.shape, y, ws.shape
    (torch.Size([4, 1, 8, 8]), None, torch.Size([4, 8, 8]))
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
            Parameter names mapped to their values.
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
            This transform, with the new parameters.
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
