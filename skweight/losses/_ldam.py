"""Label-distribution-aware margin loss (Cao et al., 2019)."""

import numpy as np
import torch
import torch.nn.functional as F

from ._base import ClassWeightedLoss
from ._docs import fill_loss_doc
from ._logit_adjusted import check_n_classes
from ._reduction import reduce_elementwise
from ._validation import check_class_mass, check_real


def ldam_margins(class_counts, max_margin):
    """Per-class margins ``Delta_c`` proportional to ``n_c ** (-1/4)``.

    Parameters
    ----------
    class_counts : array-like of shape (K,)
        Finite non-negative counts (or summed sample weights), not all zero.
    max_margin : float
        The margin of the rarest class (the smallest positive count).

    Returns
    -------
    margins : ndarray of shape (K,), dtype float64
        ``max_margin * (n_min / n_c) ** (1/4)``, with ``n_min`` the smallest
        positive count; a class of count 0 gets ``max_margin``.
    """
    counts = check_class_mass(class_counts, "class_counts")
    present = counts > 0
    # Ratios to the smallest count: the same margins as C * n_c**(-1/4)
    # without overflow or underflow for counts of any magnitude.
    ratio = np.ones_like(counts)
    ratio[present] = counts[present].min() / counts[present]
    return max_margin * ratio**0.25


@fill_loss_doc
class LDAMLoss(ClassWeightedLoss):
    """Label-distribution-aware margin (LDAM) loss for imbalanced classes.

    The cross-entropy of ``scale * (z - Delta_y * onehot(y))`` (Cao et al.,
    2019): the logit of the true class must beat the others by a margin
    ``Delta_y`` that is larger for rarer classes, ``Delta_c`` proportional to
    ``n_c ** (-1/4)``.

    Parameters
    ----------
    class_counts : array-like of shape (K,)
        Number of training samples of each class (or their summed sample
        weights). Finite, non-negative, not all zero; only ratios matter.
    max_margin : float, default=0.5
        Margin of the rarest class (>= 0), in the units of the logits before
        ``scale``. Cao et al. use 0.5 with cosine logits.
    scale : float, default=30.0
        Factor (> 0) applied to the margin-adjusted logits, the paper's ``s``;
        see Notes for what it means with a plain network's logits.
    class_weight : array-like of shape (K,), default=None
        Non-negative weight of each class. It acts exactly as the per-element
        sample weight ``class_weight[target]``; both multiply when given (the
        paper's deferred re-weighting, DRW, sets it after a number of
        epochs).
    %(ignore_index)s
    %(reduction)s

    Attributes
    ----------
    margins : Tensor of shape (K,), dtype float32
        ``Delta_c``, a buffer: ``.to(device)`` moves it, it is saved in the
        ``state_dict``, and :meth:`set_class_counts` (or ``margins.copy_``)
        replaces its values in place.

    Notes
    -----
    With logits ``z``, scale ``s``, smallest positive count ``n_min`` and
    per-element weight ``w_i = sample_weight_i * class_weight[y_i]``::

        Delta_c = max_margin * (n_min / n_c) ** (1/4)
        l_i = -log softmax(s * (z_i - Delta_{y_i} * onehot(y_i)))_{y_i}
        mean = sum_i w_i * l_i / n_non_ignored

    The rarest class gets ``max_margin``. A class of count 0 is at least as
    rare as the rarest counted one and also gets ``max_margin``, a finite
    margin (the formula would give infinity). With ``max_margin=0`` and
    ``scale=1`` this is cross-entropy.

    In the paper ``z`` are cosine logits, ``z_c = cos(features, W_c)`` in
    [-1, 1] (features and last-layer weights normalised). Their range is
    fixed, so the margin means something and ``s`` is needed to let the
    softmax get confident; ``s=30`` and ``max_margin=0.5`` are the paper's
    values, and the defaults here so that the loss is the published one.

    A plain network's raw logits are unbounded, and then ``s`` is an inverse
    temperature: ``s * z`` is what the softmax sees, and the margin in those
    units is ``s * max_margin`` (15 by default). A last layer can absorb the
    factor, so ``s`` does not change what can be learned but how: the
    softmax starts ``s`` times sharper (larger initial loss), and the logits
    move ``s`` times faster per step (``s**2`` with SGD, since the gradient
    grows by ``s`` too), like a larger learning rate for the last layer. For
    raw logits, ``scale=1`` with ``max_margin`` of a few logit units keeps
    the step size of cross-entropy; the margins can always be met by growing
    the logits' norm, which is why the paper normalises them.

    References
    ----------
    K. Cao, C. Wei, A. Gaidon, N. Arechiga and T. Ma, "Learning Imbalanced
    Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import LDAMLoss
    >>> loss = LDAMLoss(class_counts=[10000, 100, 0], scale=1.0, reduction="none")
    >>> loss.margins  # 0.5 * (100 / n_c) ** (1/4); count 0: the largest
    tensor([0.1581, 0.5000, 0.5000])
    >>> logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> loss(logits, torch.tensor([0, 1]))  # cross-entropy: 0.5514 for both
    tensor([0.6215, 0.7944])
    """

    def __init__(
        self,
        class_counts,
        max_margin=0.5,
        scale=30.0,
        class_weight=None,
        ignore_index=None,
        reduction="mean",
    ):
        super().__init__(class_weight, ignore_index, reduction)
        self.max_margin = check_real(max_margin, "max_margin", low=0.0)
        self.scale = check_real(scale, "scale", low=0.0, low_open=True)
        margins = ldam_margins(class_counts, self.max_margin)
        self.register_buffer("margins", torch.as_tensor(margins, dtype=torch.float32))

    def set_class_counts(self, class_counts):
        """Recompute the margins in place from new counts (same number of classes).

        The buffer keeps its device, dtype and identity: what holds a
        reference to it (e.g. a compiled graph) sees the new values.

        Parameters
        ----------
        class_counts : array-like of shape (K,)
            Finite non-negative counts (or summed sample weights) of the
            classes, not all zero, as in the constructor.

        Returns
        -------
        self : LDAMLoss
            This loss, with the new margins.
        """
        margins = ldam_margins(class_counts, self.max_margin)
        if margins.shape != tuple(self.margins.shape):
            raise ValueError(
                f"class_counts has {margins.size} entries but the loss was built for "
                f"K={self.margins.numel()} classes; expected one entry per class."
            )
        with torch.no_grad():
            self.margins.copy_(torch.as_tensor(margins))
        return self

    def _compute(self, prepared):
        logits, target = prepared.input, prepared.target
        margins = self._buffers["margins"]
        check_n_classes(margins, logits, "class_counts")
        margins = margins.to(device=logits.device, dtype=logits.dtype)
        index = target.unsqueeze(1)
        # Only the true class's logit moves: subtract its margin there.
        logits = logits.scatter_add(1, index, -margins[index])
        if self.scale != 1:
            logits = logits * self.scale
        if prepared.weight is None and self.reduction == "mean":
            return F.cross_entropy(logits, target)
        loss = F.cross_entropy(logits, target, reduction="none")
        return reduce_elementwise(loss, prepared.weight, prepared.n_valid, self.reduction)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        margins = [round(m, 4) for m in self.margins.tolist()]
        return (
            f"margins={margins}, max_margin={self.max_margin}, scale={self.scale}, "
            f"{self._weight_repr()}"
        )
