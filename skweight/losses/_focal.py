"""Softmax (multi-class) and sigmoid (binary) focal losses."""

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ._base import ClassWeightedLoss
from ._binary import BinaryLoss, signed_logits
from ._docs import fill_loss_doc
from ._reduction import reduce_elementwise
from ._validation import check_real

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
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return f"gamma={self.gamma}, {self._weight_repr()}"


def check_label_alpha(alpha):
    """Return `alpha` as None, a float in [0, 1] or a 1-D float32 tensor.

    A per-label alpha holds one number in [0, 1] per label (input dimension
    1); its length is checked at forward time, when the labels are known.
    """
    if alpha is None:
        return None
    if isinstance(alpha, (numbers.Number, str, np.bool_)):
        return check_real(alpha, "alpha", low=0.0, high=1.0)
    if isinstance(alpha, torch.Tensor):
        values = alpha.detach().cpu().to(torch.float64)
    else:
        try:
            values = torch.as_tensor(np.asarray(alpha, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "alpha must be None, a number in [0, 1] or a 1-D sequence of numbers "
                f"in [0, 1], one per label; got {alpha!r}."
            ) from exc
    if values.ndim == 0:
        return check_real(values.item(), "alpha", low=0.0, high=1.0)
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(
            "alpha must be None, a number in [0, 1] or a non-empty 1-D sequence with "
            f"one number in [0, 1] per label; got shape {tuple(values.shape)}."
        )
    if not bool(((values >= 0) & (values <= 1)).all()):
        # (NaN fails both comparisons, so it is refused here too.)
        raise ValueError(
            "alpha must contain finite numbers in [0, 1], one per label; got "
            f"{values.tolist()}."
        )
    return values.to(torch.float32)


@fill_loss_doc
class SigmoidFocalLoss(BinaryLoss):
    """Binary (sigmoid) focal loss, one logit per element.

    Suited to binary and multi-label targets: each logit is an independent
    binary problem, e.g. one logit per label of a multi-label classifier,
    input ``(N, C)``, or per channel of a segmenter whose structures may
    overlap, input ``(N, C, d1, ...)``.

    Parameters
    ----------
    gamma : float, default=2.0
        Focusing parameter (>= 0); ``gamma=0`` is binary cross-entropy.
    alpha : float, array-like of shape (C,) or None, default=0.25
        Weight in [0, 1] of the positive elements (``1 - alpha`` for the
        negative ones), as in Lin et al.: one number for every label, or
        one per label (input dimension 1, which the input must then have).
        ``None`` disables this weighting.
    %(binary_reduction)s

    Attributes
    ----------
    alpha : float, None or Tensor of shape (C,)
        As given; a per-label alpha is a float32 buffer (``.to(device)``
        moves it, the ``state_dict`` holds it).

    See Also
    --------
    FocalLoss : The softmax (multi-class) focal loss.
    BinaryCrossEntropyLoss : The loss with ``gamma=0`` and ``alpha=None``.

    Notes
    -----
    With ``p = sigmoid(x)``, ``p_t = p`` if ``y == 1`` else ``1 - p``,
    ``alpha_t = alpha_c`` if ``y == 1`` else ``1 - alpha_c`` (``alpha_c``
    the alpha of the element's label ``c``) and per-element sample weight
    ``w_i``::

        l_i = -alpha_t * (1 - p_t)**gamma * log p_t
        mean = sum_i w_i * l_i / n_elements

    ``log p_t = logsigmoid(z)`` and ``log(1 - p_t) = logsigmoid(-z)`` with
    ``z = x`` for positives and ``-x`` for negatives, so loss and gradients
    stay finite for saturated logits. With ``alpha=None`` and ``gamma=0``
    this is :class:`BinaryCrossEntropyLoss`, bit for bit.

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

    A per-label alpha, for two labels:

    >>> loss = SigmoidFocalLoss(gamma=0.0, alpha=[0.5, 0.9], reduction="none")
    >>> loss(torch.zeros(1, 2), torch.tensor([[1, 0]]))
    tensor([[0.3466, 0.0693]])
    """

    def __init__(self, gamma=2.0, alpha=0.25, reduction="mean"):
        super().__init__(reduction)
        self.gamma = check_real(gamma, "gamma", low=0.0)
        alpha = check_label_alpha(alpha)
        if isinstance(alpha, torch.Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha

    def _elements(self, input, target):
        signed = signed_logits(input, target)
        loss = -F.logsigmoid(signed)
        if self.gamma != 0:
            loss = loss * _focal_factor(F.logsigmoid(-signed), self.gamma)
        alpha = self.alpha
        if isinstance(alpha, torch.Tensor):
            alpha = self._label_alpha(alpha, input)
        if alpha is not None:
            loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
        return loss

    @staticmethod
    def _label_alpha(alpha, input):
        """Return the per-label alpha, shaped to broadcast over ``input``."""
        n_labels = input.shape[1] if input.ndim >= 2 else None
        if n_labels != alpha.numel():
            raise ValueError(
                f"alpha has {alpha.numel()} entries (one per label) but input has "
                f"shape {tuple(input.shape)}; a per-label alpha needs input of shape "
                f"(N, C) or (N, C, d1, ...) with C={alpha.numel()} labels on "
                "dimension 1."
            )
        alpha = alpha.to(device=input.device, dtype=input.dtype)
        return alpha.reshape((1, -1) + (1,) * (input.ndim - 2))

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        alpha = self.alpha
        if isinstance(alpha, torch.Tensor):
            alpha = [round(a, 4) for a in alpha.tolist()]
        return f"gamma={self.gamma}, alpha={alpha}, reduction={self.reduction!r}"
