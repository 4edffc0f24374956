"""Regression losses with per-sample, per-element and per-target weights.

The element loss ``l_ij`` of sample ``i`` and target ``j`` is multiplied by
``sample_weight_i`` (or the element weight ``sample_weight_ij``) and by
``target_weight_j``. ``reduction="mean"`` is the plain mean of the weighted
element losses over all ``N * T`` elements, not divided by the sum of the
weights: the estimators normalise weights once over the training set, so
that a mini-batch mean is an unbiased estimate of the weighted objective.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import SAMPLE_WEIGHT_VALUES_MESSAGE
from ._base import WeightedLoss
from ._prepare import compute_dtype, sample_weight_view
from ._validation import check_real, check_reduction

__all__ = ["HuberLoss", "L1Loss", "MSELoss"]


def _check_target_weight(value):
    """Return per-target weights as a 1-D float32 tensor, or None."""
    if value is None:
        return None
    try:
        if isinstance(value, Tensor):
            weight = value.detach().to(dtype=torch.float32).clone()
        else:
            weight = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"target_weight must be a 1-D sequence with one weight per target; "
            f"got {value!r}."
        ) from exc
    if weight.ndim != 1 or weight.numel() == 0:
        raise ValueError(
            f"target_weight must be a non-empty 1-D sequence with one weight per "
            f"target; got shape {tuple(weight.shape)}."
        )
    if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise ValueError(
            f"target_weight must contain finite non-negative numbers; got "
            f"{weight.tolist()}."
        )
    return weight


def _check_pair(input, target):
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"input and target must be torch.Tensors; got {type(input).__name__} "
            f"and {type(target).__name__}."
        )
    if not input.is_floating_point():
        raise ValueError(
            f"input must be a floating point tensor; got dtype {input.dtype}."
        )
    if tuple(input.shape) != tuple(target.shape):
        # torch's own losses broadcast (N, 1) against (N,) into (N, N) with a
        # mere warning; here it is an error.
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match input shape "
            f"{tuple(input.shape)}; regression losses compare them element by "
            f"element."
        )
    if input.ndim == 0:
        raise ValueError("input must have a sample dimension (N, ...); got a scalar.")


def _element_weight(sample_weight, target_weight, target, dtype, check_values):
    """Product of sample and target weights, broadcastable to ``target``."""
    weight = None
    if sample_weight is not None:
        weight = sample_weight_view(sample_weight, target, dtype)
        if check_values and bool((~(weight >= 0) | torch.isinf(weight)).any()):
            raise ValueError(
                SAMPLE_WEIGHT_VALUES_MESSAGE.format(name="sample_weight") + "."
            )
    if target_weight is not None:
        n_targets = target.shape[1] if target.ndim > 1 else 1
        if target_weight.numel() != n_targets:
            raise ValueError(
                f"target_weight has {target_weight.numel()} entries but the target "
                f"has {n_targets} column(s) (dimension 1); expected one weight per "
                f"target."
            )
        tw = target_weight.to(device=target.device, dtype=dtype)
        if target.ndim > 1:
            tw = tw.reshape((1, n_targets) + (1,) * (target.ndim - 2))
        weight = tw if weight is None else weight * tw
    return weight


class _RegressionLoss(WeightedLoss):
    """Shared weighting and reduction; subclasses give ``_elements``."""

    def __init__(self, target_weight=None, reduction="mean"):
        super().__init__()
        self.register_buffer("target_weight", _check_target_weight(target_weight))
        self.reduction = check_reduction(reduction)

    def _elements(self, input, target):
        raise NotImplementedError

    def _loss(self, input, target, sample_weight, check_values):
        _check_pair(input, target)
        dtype = compute_dtype(input)
        x = input.to(dtype)
        t = target.to(device=x.device, dtype=dtype)
        loss = self._elements(x, t)
        weight = _element_weight(sample_weight, self.target_weight, t, dtype, check_values)
        if weight is not None:
            loss = loss * weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.mean()

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        tw = self.target_weight
        value = None if tw is None else [round(w, 4) for w in tw.tolist()]
        return f"target_weight={value}, reduction={self.reduction!r}"


class MSELoss(_RegressionLoss):
    """Squared error with sample and per-target weights.

    Parameters
    ----------
    target_weight : array-like of shape (T,), default=None
        Non-negative weight of each target (column of dimension 1).
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted element losses; "mean" is their plain
        mean over all elements (not divided by the sum of the weights).

    Notes
    -----
    ``l_ij = w_i * v_j * (input_ij - target_ij)**2`` with sample weight
    ``w_i`` and target weight ``v_j``. Without weights it equals
    ``torch.nn.MSELoss``.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import MSELoss
    >>> pred = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    >>> true = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    >>> MSELoss(target_weight=[1.0, 0.0])(pred, true).item()
    1.25
    """

    def _elements(self, input, target):
        return (input - target).square()


class L1Loss(_RegressionLoss):
    """Absolute error with sample and per-target weights.

    Parameters
    ----------
    target_weight : array-like of shape (T,), default=None
        Non-negative weight of each target (column of dimension 1).
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted element losses; "mean" is their plain
        mean over all elements (not divided by the sum of the weights).

    Notes
    -----
    ``l_ij = w_i * v_j * |input_ij - target_ij|``; without weights it equals
    ``torch.nn.L1Loss``.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import L1Loss
    >>> pred = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    >>> true = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    >>> L1Loss()(pred, true, sample_weight=torch.tensor([1.0, 0.5])).item()
    0.5
    """

    def _elements(self, input, target):
        return (input - target).abs()


class HuberLoss(_RegressionLoss):
    """Huber loss with sample and per-target weights.

    Quadratic for errors below ``delta``, linear above: robust to outlying
    targets while smooth near zero.

    Parameters
    ----------
    delta : float, default=1.0
        Where the loss turns from quadratic to linear. The estimators apply it
        to standardised targets (by default), where 1 means one standard
        deviation of the target.
    target_weight : array-like of shape (T,), default=None
        Non-negative weight of each target (column of dimension 1).
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted element losses; "mean" is their plain
        mean over all elements (not divided by the sum of the weights).

    Notes
    -----
    ``l = 0.5 * e**2`` if ``|e| < delta`` else ``delta * (|e| - 0.5 * delta)``,
    times the sample and target weights; without weights it equals
    ``torch.nn.HuberLoss``.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import HuberLoss
    >>> pred = torch.tensor([[0.0], [0.5], [3.0]])
    >>> true = torch.zeros(3, 1)
    >>> HuberLoss(delta=1.0, reduction="none")(pred, true).flatten().tolist()
    [0.0, 0.125, 2.5]
    """

    def __init__(self, delta=1.0, target_weight=None, reduction="mean"):
        super().__init__(target_weight, reduction)
        self.delta = check_real(delta, "delta", low=0.0)
        if self.delta == 0:
            raise ValueError("delta must be a finite real number > 0; got 0.")

    def _elements(self, input, target):
        return F.huber_loss(input, target, reduction="none", delta=self.delta)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return f"delta={self.delta}, {super().extra_repr()}"
