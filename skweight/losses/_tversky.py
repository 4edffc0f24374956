"""Tversky loss."""

from ._overlap import OverlapLoss, soft_assignment, weighted_sum
from ._validation import check_real


class TverskyLoss(OverlapLoss):
    """Tversky loss: Dice with separate weights on false positives and negatives.

    Parameters
    ----------
    alpha : float, default=0.5
        Weight (>= 0) of the soft false positives.
    beta : float, default=0.5
        Weight (>= 0) of the soft false negatives. ``beta > alpha`` favours
        recall, useful for small structures.
    smooth : float, default=1e-5
        Added to numerator and denominator (>= 0); a class absent from both
        prediction and target gets index 1.
    include_background : bool, default=True
        If False, class 0 is left out of the mean over classes.
    per_image : bool, default=False
        If False, the sums run over the whole batch; if True, the index is
        computed per image and class, then averaged.
    class_weight : array-like of shape (K,), default=None
        Non-negative weight of each class, acting exactly as the per-element
        sample weight ``class_weight[target]``; both multiply when given.
    ignore_index : int, default=None
        Target value of pixels left out of every sum.
    reduction : {"mean", "sum", "none"}, default="mean"
        As in :class:`DiceLoss`: "none" gives the ``1 - T_k`` terms of shape
        (K',) or (N, K') when ``per_image``.
    sigmoid : bool, default=False
        If True, each channel is its own binary structure (channels may
        overlap): probabilities are per-channel sigmoids instead of a
        softmax over the channels, and the target is a 0/1 mask of the
        input's shape (N, C, d1, ...) (float, integer or bool; or
        ``ignore_index``). ``include_background=False`` then leaves out
        channel 0; ``class_weight`` must be None (per-element weights go in
        ``sample_weight``, of the target's shape).

    Notes
    -----
    With softmax probabilities ``p``, one-hot target ``g`` and per-pixel
    weights ``w`` (0 on ignored pixels), for each class ``k``::

        TP = sum(w * p_k * g_k)
        FP = sum(w * p_k * (1 - g_k))
        FN = sum(w * (1 - p_k) * g_k)
        T_k = (TP + s) / (TP + alpha * FP + beta * FN + s)
        loss = 1 - mean_k T_k

    With ``alpha = beta = 0.5``, ``T_k`` with smoothing ``s`` equals the Dice
    ``D_k`` of :class:`DiceLoss` (``squared=False``) with smoothing ``2 s``;
    they coincide exactly for ``s = 0``.

    With ``sigmoid=True``, ``p_k = sigmoid(x_k)`` and ``g_k`` is channel
    ``k`` of the 0/1 target, weights per element or per sample.

    References
    ----------
    S. S. M. Salehi, D. Erdogmus and A. Gholipour, "Tversky loss function for
    image segmentation using 3D fully convolutional deep networks", MLMI 2017.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import TverskyLoss
    >>> logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    >>> target = torch.tensor([[[0, 1]]])
    >>> round(TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(logits, target).item(), 4)
    0.5
    """

    def __init__(
        self,
        alpha=0.5,
        beta=0.5,
        smooth=1e-5,
        include_background=True,
        per_image=False,
        class_weight=None,
        ignore_index=None,
        reduction="mean",
        sigmoid=False,
    ):
        super().__init__(
            smooth, include_background, per_image, class_weight, ignore_index, reduction,
            sigmoid,
        )
        self.alpha = check_real(alpha, "alpha", low=0.0)
        self.beta = check_real(beta, "beta", low=0.0)

    def _compute(self, prepared):
        soft = soft_assignment(prepared, self.per_image, self.sigmoid)
        p, g = soft.probs, soft.onehot
        tp = weighted_sum(p * g, soft)
        fp = weighted_sum(p * (1.0 - g), soft)
        fn = weighted_sum((1.0 - p) * g, soft)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return self._reduce(index, prepared)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return f"alpha={self.alpha}, beta={self.beta}, {self._overlap_repr()}"
