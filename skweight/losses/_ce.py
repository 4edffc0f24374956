"""Weighted cross-entropy."""

import torch.nn.functional as F

from ._base import ClassWeightedLoss
from ._docs import fill_loss_doc
from ._reduction import reduce_elementwise
from ._validation import check_real


def cross_entropy_elements(prepared, label_smoothing=0.0):
    """Unweighted per-element cross-entropy, shape of the target.

    With ``p = softmax(input)`` and ``K`` classes this is
    ``-(1 - eps) * log p_y - eps / K * sum_k log p_k``; torch's fused kernel
    computes exactly that, with fewer autograd nodes than log-softmax,
    gather and mean written out.
    """
    return F.cross_entropy(
        prepared.input, prepared.target, reduction="none",
        label_smoothing=label_smoothing,
    )


@fill_loss_doc
class CrossEntropyLoss(ClassWeightedLoss):
    """Cross-entropy with per-sample, per-element and per-class weights.

    Parameters
    ----------
    %(class_weight)s
    %(ignore_index)s
    label_smoothing : float, default=0.0
        Amount ``eps`` in [0, 1] of the uniform distribution mixed into the
        one-hot target.
    %(reduction)s

    Notes
    -----
    With log-softmax ``log p`` of the logits, per-element weight
    ``w_i = sample_weight_i * class_weight[y_i]`` and ``n`` non-ignored
    elements::

        l_i = -(1 - eps) * log p_{i, y_i} - eps / K * sum_k log p_{i, k}
        mean = sum_i w_i * l_i / n

    ``l_i`` equals ``torch.nn.functional.cross_entropy(reduction="none",
    label_smoothing=eps)``. Unlike ``torch.nn.CrossEntropyLoss(weight=...)``,
    "mean" does not divide by the sum of the weights, and the class weight
    multiplies the whole element loss (smoothing term included).

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import CrossEntropyLoss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> target = torch.tensor([0, 1])
    >>> loss = CrossEntropyLoss(class_weight=[1.0, 3.0])
    >>> round(loss(logits, target).item(), 4)
    0.5334
    """

    def __init__(
        self,
        class_weight=None,
        ignore_index=None,
        label_smoothing=0.0,
        reduction="mean",
    ):
        super().__init__(class_weight, ignore_index, reduction)
        self.label_smoothing = check_real(
            label_smoothing, "label_smoothing", low=0.0, high=1.0
        )

    def _compute(self, prepared):
        if prepared.weight is None and self.reduction == "mean":
            # Nothing weighted or ignored: torch's fused mean.
            return F.cross_entropy(prepared.input, prepared.target,
                                   label_smoothing=self.label_smoothing)
        loss = cross_entropy_elements(prepared, self.label_smoothing)
        return reduce_elementwise(loss, prepared.weight, prepared.n_valid, self.reduction)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return f"label_smoothing={self.label_smoothing}, {self._weight_repr()}"
