"""Binary cross-entropy, and the base of the losses on 0/1 targets."""

import torch.nn.functional as F

from ._base import WeightedLoss
from ._docs import fill_loss_doc
from ._prepare import prepare_binary
from ._reduction import reduce_elementwise
from ._validation import check_reduction


def signed_logits(x, y):
    """``x`` for positive targets, ``-x`` for negative ones.

    With 0/1 targets, ``log p_t = logsigmoid(signed_logits(x, y))``. The
    product by exactly 1 or -1 changes no bit of ``x``, so every sigmoid loss
    built on it equals :func:`bce_elements` bit for bit when its extra
    factors are 1.
    """
    return (2.0 * y - 1.0) * x


def bce_elements(x, y, label_smoothing=0.0):
    """Unweighted per-element binary cross-entropy of logits ``x``, 0/1 ``y``.

    With ``s = signed_logits(x, y)`` this is ``-logsigmoid(s)``: finite for
    any finite logit (``logsigmoid(-1e4) = -1e4``), with the gradient
    ``p - y`` and no ``log(0)`` anywhere. Label smoothing ``eps`` trains
    towards ``y * (1 - eps) + eps / 2``, i.e.
    ``-(1 - eps / 2) * logsigmoid(s) - eps / 2 * logsigmoid(-s)``.
    """
    signed = signed_logits(x, y)
    loss = -F.logsigmoid(signed)
    if label_smoothing:
        half = 0.5 * label_smoothing
        loss = (1.0 - half) * loss - half * F.logsigmoid(-signed)
    return loss


class BinaryLoss(WeightedLoss):
    """An element-wise loss of logits and 0/1 targets of the same shape.

    Subclasses implement ``_elements(input, target)``: the unweighted
    per-element losses of validated logits (compute dtype) and 0/1 targets
    (same dtype).
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def _loss(self, input, target, sample_weight, check_values):
        prepared = prepare_binary(
            input, target, sample_weight, check_values, loss_name=type(self).__name__
        )
        loss = self._elements(prepared.input, prepared.target)
        return reduce_elementwise(loss, prepared.weight, prepared.n_valid, self.reduction)

    def _elements(self, input, target):
        raise NotImplementedError


@fill_loss_doc
class BinaryCrossEntropyLoss(BinaryLoss):
    """Binary cross-entropy of logits, for binary and multi-label targets.

    Each logit is an independent binary problem: one sigmoid logit per label
    of a multi-label classifier, input ``(N, C)``, or per channel of a
    segmenter whose structures may overlap, input ``(N, C, d1, ...)``.

    Parameters
    ----------
    %(binary_reduction)s

    See Also
    --------
    SigmoidFocalLoss : Down-weights the well classified elements.
    AsymmetricLoss : Treats positive and negative labels differently.
    BinaryLogitAdjustedLoss : Shifts each label's logit by its prior log-odds.

    Notes
    -----
    With ``p = sigmoid(x)``, 0/1 target ``y`` (float, integer or bool) and
    per-element weight ``w_i`` (``sample_weight`` of shape (N,) is repeated
    over the labels and pixels of its sample)::

        l_i = -y_i * log p_i - (1 - y_i) * log(1 - p_i)
        mean = sum_i w_i * l_i / n_elements

    computed as ``-logsigmoid(x)`` for positives and ``-logsigmoid(-x)`` for
    negatives, so loss and gradient (``w_i * (p_i - y_i)``) are finite for
    any finite logit. There is no per-label ``pos_weight``: a weight per
    label, or per label and class (positive or negative), is the
    per-element ``sample_weight`` of the target's shape.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import BinaryCrossEntropyLoss
    >>> logits = torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    >>> target = torch.tensor([[1, 1], [0, 0]])
    >>> loss = BinaryCrossEntropyLoss(reduction="none")
    >>> loss(logits, target)
    tensor([[0.6931, 0.1269],
            [0.3133, 0.6931]])
    """

    def _elements(self, input, target):
        return bce_elements(input, target)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return f"reduction={self.reduction!r}"
