"""Softmax (multi-class) and sigmoid (binary) focal losses."""

import torch
import torch.nn.functional as F

from ._base import ClassWeightedLoss, WeightedLoss
from ._docs import fill_loss_doc
from ._prepare import prepare_binary
from ._reduction import reduce_elementwise
from ._validation import check_real, check_reduction

_SCALAR_ALPHA_HINT = (
    " For the multi-class (softmax) focal loss alpha is the class weight and "
    "needs one entry per class: a scalar alpha comes from the binary form, where "
    "alpha weights the positive class and 1 - alpha the negative one, but with K "
    "softmax classes there is no single positive class and one number for all "
    "classes only rescales the loss. Pass e.g. alpha=[0.25, 0.75] for two "
    "classes, or use SigmoidFocalLoss for binary or multi-label targets."
)


def _focal_factor(log_one_minus_p, gamma):
    """``(1 - p)**gamma`` computed as ``exp(gamma * log(1 - p))``.

    The gradient of ``pow(1 - p, gamma)`` is infinite at ``p == 1`` for
    gamma < 1 (and 0 * inf = NaN after the chain rule). Here the derivative
    is ``gamma * factor * d log(1 - p)``, which stays finite because
    ``log(1 - p)`` is itself computed from finite log-probabilities.
    """
    return torch.exp(gamma * log_one_minus_p)


@fill_loss_doc
class FocalLoss(ClassWeightedLoss):
    """Multi-class (softmax) focal loss with per-class alpha.

    Parameters
    ----------
    gamma : float, default=2.0
        Focusing parameter (>= 0). Larger values down-weight well classified
        elements more; ``gamma=0`` is cross-entropy.
    alpha : array-like of shape (K,), default=None
        Non-negative weight of each class, i.e. the class weight. It acts
        exactly as the per-element sample weight ``alpha[target]``; both
        multiply when given. A scalar is rejected, see Notes.
    %(ignore_index)s
    %(reduction)s

    Notes
    -----
    With softmax probabilities ``p`` and per-element weight
    ``w_i = sample_weight_i * alpha[y_i]``::

        l_i = -(1 - p_{i, y_i})**gamma * log p_{i, y_i}
        mean = sum_i w_i * l_i / n_non_ignored

    ``log p`` is a log-softmax and ``log(1 - p_y)`` a log-sum-exp of the
    other classes' log-probabilities, so loss and gradient are finite even
    when ``p_y`` rounds to 1, for every gamma >= 0. Needs K >= 2.

    alpha must be per class: in the binary paper form a scalar alpha weights
    the positive class and ``1 - alpha`` the negative one, but a softmax over
    K classes has no single positive class, and applying one number to every
    class merely rescales the loss. Use :class:`SigmoidFocalLoss` for the
    binary form.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He and P. Dollar, "Focal Loss for
    Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import FocalLoss
    >>> logits = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    >>> target = torch.tensor([0, 1])
    >>> loss = FocalLoss(gamma=2.0, alpha=[0.5, 2.0])
    >>> round(loss(logits, target).item(), 4)
    0.0676
    """

    _class_weight_name = "alpha"

    def __init__(self, gamma=2.0, alpha=None, ignore_index=None, reduction="mean"):
        super().__init__(alpha, ignore_index, reduction, scalar_hint=_SCALAR_ALPHA_HINT)
        self.gamma = check_real(gamma, "gamma", low=0.0)

    def _compute(self, prepared):
        if prepared.input.shape[1] < 2:
            raise ValueError(
                "FocalLoss needs input with at least 2 classes on dimension 1; got "
                f"shape {tuple(prepared.input.shape)}. For one logit per element "
                "use SigmoidFocalLoss."
            )
        log_prob = torch.log_softmax(prepared.input, dim=1)
        index = prepared.target.unsqueeze(1)
        loss = -log_prob.gather(1, index).squeeze(1)
        if self.gamma != 0:
            others = log_prob.scatter(1, index, float("-inf"))
            loss = loss * _focal_factor(torch.logsumexp(others, dim=1), self.gamma)
        return reduce_elementwise(loss, prepared.weight, prepared.n_valid, self.reduction)

    def extra_repr(self):
        return f"gamma={self.gamma}, {self._weight_repr()}"


class SigmoidFocalLoss(WeightedLoss):
    """Binary (sigmoid) focal loss, one logit per element.

    Suited to binary and multi-label targets: each logit is an independent
    binary problem.

    Parameters
    ----------
    gamma : float, default=2.0
        Focusing parameter (>= 0); ``gamma=0`` is binary cross-entropy.
    alpha : float or None, default=0.25
        Weight in [0, 1] of the positive elements (``1 - alpha`` for the
        negative ones), as in Lin et al. ``None`` disables this weighting.
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted per-element losses with the input's shape;
        "sum" their sum; "mean" their sum divided by the number of elements.

    Notes
    -----
    With ``p = sigmoid(x)``, ``p_t = p`` if ``y == 1`` else ``1 - p``,
    ``alpha_t = alpha`` if ``y == 1`` else ``1 - alpha`` and per-element
    sample weight ``w_i``::

        l_i = -alpha_t * (1 - p_t)**gamma * log p_t
        mean = sum_i w_i * l_i / n_elements

    ``log p_t = logsigmoid(z)`` and ``log(1 - p_t) = logsigmoid(-z)`` with
    ``z = x`` for positives and ``-x`` for negatives, so loss and gradients
    stay finite for saturated logits. With ``alpha=None`` and ``gamma=0``
    this is ``binary_cross_entropy_with_logits``.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He and P. Dollar, "Focal Loss for
    Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import SigmoidFocalLoss
    >>> loss = SigmoidFocalLoss(gamma=0.0, alpha=None)
    >>> logits = torch.tensor([0.0, 0.0])
    >>> round(loss(logits, torch.tensor([1, 0])).item(), 4)  # log(2)
    0.6931
    """

    def __init__(self, gamma=2.0, alpha=0.25, reduction="mean"):
        super().__init__()
        self.gamma = check_real(gamma, "gamma", low=0.0)
        self.alpha = (
            None if alpha is None else check_real(alpha, "alpha", low=0.0, high=1.0)
        )
        self.reduction = check_reduction(reduction)

    def _loss(self, input, target, sample_weight, check_values):
        prepared = prepare_binary(input, target, sample_weight, check_values)
        y = prepared.target
        signed = (2.0 * y - 1.0) * prepared.input
        loss = -F.logsigmoid(signed)
        if self.gamma != 0:
            loss = loss * _focal_factor(F.logsigmoid(-signed), self.gamma)
        if self.alpha is not None:
            loss = loss * (self.alpha * y + (1.0 - self.alpha) * (1.0 - y))
        return reduce_elementwise(loss, prepared.weight, prepared.n_valid, self.reduction)

    def extra_repr(self):
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"
