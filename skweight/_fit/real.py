"""Real-valued targets: a regressor's, standardised for the loss.

:class:`RealTargets` implements the protocol of
:class:`skweight._fit.targets.Targets` for targets ``(N,)`` or ``(N, T)``:
their scaling (weighted mean and standard deviation, in float64, for any
unit), per-target loss weights, the checks of the network's outputs and
the predictions in the user's units.
"""

import numpy as np
import torch

from .targets import Targets

__all__ = ["RealTargets", "column_scale", "constant_columns", "weighted_mean_std"]


# The smallest positive normal float32: targets the network must output
# unscaled (standardize_target=False) need to be representable in float32.
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class RealTargets(Targets):
    """Real-valued targets ``(N, T)``, standardised for the loss.

    Parameters
    ----------
    mean, scale : ndarray of shape (n_outputs,)
        The loss sees ``(y - mean) / scale``; predictions are
        ``output * scale + mean``.
    weight : None or ndarray of shape (n_outputs,)
        Per-target loss weights with mean 1.
    one_d : bool
        Whether ``fit`` got a 1-D ``y`` (predictions are then 1-D).
    standardize : bool
        Whether ``mean`` and ``scale`` standardise (else they are 0 and 1,
        and targets must be representable in float32).
    """

    _state = ("mean", "scale", "weight", "one_d", "standardize")

    def __init__(self, mean, scale, weight, one_d, standardize):
        self.mean = mean
        self.scale = scale
        self.weight = weight
        self.one_d = one_d
        self.standardize = standardize

    @property
    def n_outputs(self):
        """Number of targets."""
        return len(self.mean)

    @classmethod
    def learn(cls, y, sample_weight, *, standardize, target_weight):
        """Learn the scaling of each target and the per-target loss weights.

        Parameters
        ----------
        y : ndarray of shape (N,) or (N, T), float64
            1-D ``y`` gives 1-D predictions.
        sample_weight : None or ndarray of shape (N,)
        standardize : bool
            Standardise with the weighted mean and standard deviation
            (constant targets get scale 1).
        target_weight : None, "balanced" or array-like of shape (T,)

        Returns
        -------
        targets : RealTargets
        """
        one_d = y.ndim == 1
        y = y.reshape(len(y), -1)
        n_outputs = y.shape[1]
        mean, std = weighted_mean_std(y, sample_weight)
        scale = np.where(constant_columns(y, std), 1.0, std)
        if standardize:
            loss_scale = np.ones(n_outputs)
        else:
            mean, scale, loss_scale = np.zeros(n_outputs), np.ones(n_outputs), scale
        weight = _resolve_target_weight(target_weight, n_outputs, loss_scale)
        return cls(mean, scale, weight, one_d, standardize)

    def encode(self, y, continuing=False):
        """Return ``(y - mean) / scale`` as float32 (the mask is always None).

        Parameters
        ----------
        y : ndarray of shape (N,) or (N, T), float64
        continuing : bool
            Whether a fitted network is trained further.

        Returns
        -------
        target : torch.Tensor of float32 and shape (N, T)
        mask : None
        """
        y = y.reshape(len(y), -1)
        if y.shape[1] != self.n_outputs:
            raise ValueError(
                f"y has {y.shape[1]} target(s), but the network being trained "
                f"further has {self.n_outputs} output(s)."
            )
        if not self.standardize:
            _check_representable(y)
        scaled = (y - self.mean) / self.scale
        return torch.from_numpy(scaled.astype(np.float32)), None

    def decode(self, target, weight=None):
        """Return targets in the user's units (float64), 1-D if ``y`` was."""
        mean = torch.as_tensor(self.mean, device=target.device)
        scale = torch.as_tensor(self.scale, device=target.device)
        y = target.double() * scale + mean
        return y.reshape(-1) if self.one_d else y

    def seen_prior(self, dataset, counts):
        """Return the targets the loss sees and their weights (as served).

        A loss with a label prior (Balanced MSE) fits it to them.
        """
        weight = None if dataset.weight is None else dataset.weight.numpy()
        if counts is not None:
            weight = counts if weight is None else counts * weight
        return dataset.target.numpy(), weight

    def start_phase(self, criterion, prior, criterion_params):
        """Fit a loss's label prior (Balanced MSE) to the training targets of this phase."""
        crit = getattr(criterion, "_orig_mod", criterion)
        if callable(getattr(crit, "fit_prior", None)):
            targets, weight = prior
            crit.fit_prior(targets, weight)

    def element_weights(self, weight, target):
        """Turn per-target weights into per-element weights ``(N, T)``.

        Then any loss that accepts element weights (or returns element
        losses) applies them.
        """
        if self.weight is None:
            return weight
        tw = torch.as_tensor(self.weight, dtype=target.dtype, device=target.device)
        if weight is None:
            weight = torch.ones(len(target), dtype=target.dtype, device=target.device)
        return weight.reshape(-1, 1) * tw.reshape(1, -1)

    def duplicated_weights(self, requested):
        """Per-target weights, when the estimator applies them (None otherwise)."""
        if requested is None:
            return None
        return "target_weight", ("target_weight",), "target weights"

    def check_output(self, out, n_samples, spatial):
        """Check the outputs' shape ``(N, T)`` (``(N,)`` for one target)."""
        if out.ndim == 1 and self.n_outputs == 1:
            return out.reshape(-1, 1)
        if tuple(out.shape) != (n_samples, self.n_outputs):
            raise ValueError(
                f"The module returned outputs of shape {tuple(out.shape)}, but "
                f"({n_samples}, {self.n_outputs}) was expected: one column per "
                f"target."
            )
        return out

    def inverse(self, out):
        """Return the network's outputs ``(N, T)`` in the user's units (float64 ndarray)."""
        y = np.asarray(out, dtype=np.float64) * self.scale + self.mean
        return y.ravel() if self.one_d else y


def column_scale(values):
    """Largest magnitude of each column (1 for all-zero columns)."""
    top = np.max(np.abs(values), axis=0)
    return np.where(top > 0, top, 1.0)


def weighted_mean_std(values, weights):
    """Column-wise weighted mean and (population) standard deviation.

    Computed on the columns divided by their largest magnitude, so that
    values of any unit (1e-20 or 1e200) neither underflow nor overflow when
    squared. ``weights`` is None or non-negative weights of shape (N,).
    """
    scale = column_scale(values)
    v = values / scale
    if weights is None:
        mean, std = v.mean(axis=0), v.std(axis=0)
    else:
        w = weights / weights.sum()
        mean = w @ v
        std = np.sqrt(w @ np.square(v - mean))
    return mean * scale, std * scale


def constant_columns(values, std):
    """Columns whose spread is at rounding level relative to their magnitude.

    Dividing such a column by its std would blow rounding noise up to O(1).
    The test is relative to the column's largest magnitude, so it does not
    depend on the target's unit.
    """
    return std <= 10 * np.finfo(np.float64).eps * column_scale(values)


def _check_representable(y):
    nonzero = np.abs(y[y != 0])
    if nonzero.size and (nonzero.max() > _FLOAT32_MAX / 10 or
                         nonzero.min() < _FLOAT32_TINY):
        raise ValueError(
            f"y has values down to {nonzero.min():.3g} and up to "
            f"{nonzero.max():.3g} in magnitude, which the network cannot output "
            f"in float32 with standardize_target=False; use "
            f"standardize_target=True (targets of any unit are then learned "
            f"alike) or rescale y."
        )


def _resolve_target_weight(tw, n_outputs, loss_scale):
    """Per-target loss weights with mean 1 (None: every target weighs the same)."""
    if tw is None:
        return None
    if isinstance(tw, str):  # "balanced", checked with the parameters
        # 1 / variance, as ratios to the smallest variance: finite for any unit.
        weights = np.square(loss_scale.min() / loss_scale)
    else:
        try:
            weights = np.array(tw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"target_weight must be an array of non-negative numbers, got {tw!r}."
            ) from exc
        if weights.shape != (n_outputs,):
            raise ValueError(
                f"target_weight has {weights.size} entries, but y has {n_outputs} "
                f"target(s); pass one weight per target."
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                f"target_weight must contain finite non-negative numbers, got "
                f"{weights.tolist()}."
            )
        if not np.any(weights > 0):
            raise ValueError(
                f"target_weight gives every target a weight of 0: {weights.tolist()}."
            )
        weights = weights / weights.max()
    return weights / weights.mean()
