"""Asymmetric loss for multi-label classification (Ben-Baruch et al., 2021)."""

import math

import torch
import torch.nn.functional as F

from ._binary import BinaryLoss
from ._docs import fill_loss_doc
from ._validation import check_real


@fill_loss_doc
class AsymmetricLoss(BinaryLoss):
    """Asymmetric loss (ASL) for multi-label classification.

    A focal loss that focuses differently on positive and negative labels
    and discards the easiest negatives (Ben-Baruch et al., 2021). With many
    labels, most of them negative in most samples, the negatives dominate
    binary cross-entropy; ASL down-weights them more than the positives.

    Parameters
    ----------
    gamma_neg : float, default=4.0
        Focusing parameter (>= 0) of the negative elements (target 0).
    gamma_pos : float, default=0.0
        Focusing parameter (>= 0) of the positive elements (target 1).
    clip : float, default=0.05
        Probability margin ``m`` in [0, 1): a negative element's probability
        is shifted down by ``m`` (``p_m = max(p - m, 0)``), so negatives with
        ``p <= m`` contribute neither loss nor gradient.
    %(binary_reduction)s

    See Also
    --------
    SigmoidFocalLoss : The symmetric (one gamma) focal loss.
    BinaryCrossEntropyLoss : ASL with ``gamma_neg=0, gamma_pos=0, clip=0``.

    Notes
    -----
    With ``p = sigmoid(x)``, the shifted probability ``p_m = max(p - m, 0)``
    and per-element weight ``w_i``::

        l_i = -(1 - p)**gamma_pos * log(p)            if y_i == 1
        l_i = -p_m**gamma_neg * log(1 - p_m)          if y_i == 0
        mean = sum_i w_i * l_i / n_elements

    ``log p = logsigmoid(x)``, and for ``p > m``,
    ``log(1 - p_m) = log(sigmoid(-x) + m)``, computed as
    ``logaddexp(logsigmoid(-x), log m)`` (``logsigmoid(-x)`` when
    ``m = 0``): finite with finite gradients for any finite logit.

    The focusing factors ``(1 - p)**gamma_pos`` and ``p_m**gamma_neg`` are
    treated as constants in the backward pass, as in the authors' reference
    training code (``disable_torch_grad_focal_loss=True``): the gradient is
    that of a cross-entropy weighted by the current factors, not the
    derivative of ``l_i`` itself (so ``gradcheck`` fails for nonzero
    gammas). The authors sum over the labels and average over the samples;
    ``reduction="mean"`` here averages over every element, which divides
    their loss by the number of labels ``C``.

    With ``gamma_neg = gamma_pos = 0`` and ``clip = 0`` this is
    :class:`BinaryCrossEntropyLoss`, bit for bit.

    References
    ----------
    E. Ben-Baruch, T. Ridnik, N. Zamir, A. Noy, I. Friedman, M. Protter and
    L. Zelnik-Manor, "Asymmetric Loss For Multi-Label Classification",
    ICCV 2021.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import AsymmetricLoss
    >>> logits = torch.tensor([[2.0, -3.0, 0.0]])
    >>> target = torch.tensor([[1, 0, 0]])
    >>> loss = AsymmetricLoss(reduction="none")
    >>> loss(logits, target)  # the easy negative (p = 0.047 < 0.05) costs 0
    tensor([[0.1269, 0.0000, 0.0245]])
    """

    def __init__(self, gamma_neg=4.0, gamma_pos=0.0, clip=0.05, reduction="mean"):
        super().__init__(reduction)
        self.gamma_neg = check_real(gamma_neg, "gamma_neg", low=0.0)
        self.gamma_pos = check_real(gamma_pos, "gamma_pos", low=0.0)
        self.clip = check_real(clip, "clip", low=0.0)
        if self.clip >= 1.0:
            raise ValueError(f"clip must be a finite real number in [0, 1); got {clip!r}.")

    def _elements(self, input, target):
        positive = -F.logsigmoid(input)
        negative = -F.logsigmoid(-input)
        if self.clip > 0:
            # -log(1 - p + m), and 0 where p <= m (1 - p_m = 1 there). A 0-d
            # constant made on the input's device: no copy from the host.
            log_clip = input.new_full((), math.log(self.clip))
            negative = (-torch.logaddexp(-negative, log_clip)).clamp_min(0.0)
        # The focusing factors are constants of the backward pass (see Notes).
        constant = input.detach()
        if self.gamma_pos != 0:
            # (1 - p)**gamma_pos from log(1 - p): no rounding of p to 1 first
            positive = positive * torch.exp(self.gamma_pos * F.logsigmoid(-constant))
        if self.gamma_neg != 0:
            shifted = (torch.sigmoid(constant) - self.clip).clamp_min(0.0)
            negative = negative * shifted.pow(self.gamma_neg)
        return torch.where(target > 0.5, positive, negative)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, "
            f"clip={self.clip}, reduction={self.reduction!r}"
        )
