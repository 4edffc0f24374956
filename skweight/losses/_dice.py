"""Soft Dice loss."""

from ._overlap import OverlapLoss, soft_assignment, weighted_sum


def dice_index(prepared, smooth, squared, per_image, sigmoid=False):
    """Soft Dice per class (shape (K,)) or per image and class (N, K)."""
    soft = soft_assignment(prepared, per_image, sigmoid)
    p, g = soft.probs, soft.onehot
    intersection = weighted_sum(p * g, soft)
    # a one-hot or 0/1 g equals g**2, so only the prediction is squared
    pred = weighted_sum(p * p if squared else p, soft)
    truth = weighted_sum(g, soft)
    return (2.0 * intersection + smooth) / (pred + truth + smooth)


class DiceLoss(OverlapLoss):
    """Soft Dice loss for multi-class segmentation or classification.

    Parameters
    ----------
    smooth : float, default=1e-5
        Added to numerator and denominator (>= 0). A class absent from both
        prediction and target then has Dice ``s / s = 1``. With 0, such a
        class gives NaN.
    include_background : bool, default=True
        If False, class 0 is left out of the mean over classes (its pixels
        still count as false positives of the other classes).
    per_image : bool, default=False
        If False, the sums run over the whole batch (all images and pixels);
        if True, Dice is computed per image and class, then averaged, each
        image's terms weighted by its mean pixel weight when weights are
        given (see Notes).
    squared : bool, default=False
        Square the probabilities in the denominator (Milletari et al.).
    class_weight : array-like of shape (K,), default=None
        Non-negative weight of each class. It acts exactly as the per-element
        sample weight ``class_weight[target]`` (so a pixel of class j carries
        that weight into every class's sums); both multiply when given.
    ignore_index : int, default=None
        Target value of pixels left out of every sum. It may lie outside
        [0, K).
    reduction : {"mean", "sum", "none"}, default="mean"
        "mean": ``1 - mean_k D_k`` (mean over kept classes, and images when
        ``per_image``); "sum": sum of the ``1 - D_k`` terms; "none": the
        ``1 - D_k`` terms, of shape (K',) or (N, K') when ``per_image``, with
        K' the number of kept classes.
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
    With softmax probabilities ``p`` (N, K, ...), one-hot target ``g`` and
    per-pixel weights ``w = sample_weight * class_weight[target]`` (0 on
    ignored pixels), for each class ``k``::

        D_k = (2 * sum(w * p_k * g_k) + s) / (sum(w * p_k**q) + sum(w * g_k) + s)
        loss = 1 - mean_k D_k

    with ``q = 2`` if ``squared`` else 1 and the sums over the batch and
    pixels (or over the pixels of each image when ``per_image``). Unit
    weights and hard predictions give the set Dice ``2|A & B| / (|A| + |B|)``.
    The weights enter inside the sums, so a weight of 0 is the same as
    ignoring the pixel; scaling all weights by a constant leaves the loss
    unchanged up to the effect of ``s``.

    With ``per_image=True`` and weights, image ``n``'s terms are weighted
    by ``m_n``, the mean of its pixel weights (0 on ignored pixels):
    ``loss = sum_n m_n mean_k (1 - D_nk) / sum_n m_n``. Inside an image's
    sums a common factor cancels, so without ``m_n`` image weights would do
    nothing; with it an image of weight k counts k times and one of weight
    0 not at all, as in the other losses, and scaling all weights still
    changes nothing.

    With ``sigmoid=True``, ``p_k = sigmoid(x_k)`` and ``g_k`` is channel
    ``k`` of the 0/1 target; the weights ``w`` are per element (pixel and
    channel) or per sample, and still enter inside the sums.

    An input of shape (N, K) has no pixel axes: the N samples play the role
    of the pixels of one image (batch soft-Dice, akin to a soft F1) or, with
    ``per_image=True``, each sample is its own one-pixel image.

    References
    ----------
    F. Milletari, N. Navab and S.-A. Ahmadi, "V-Net: Fully Convolutional
    Neural Networks for Volumetric Medical Image Segmentation", 3DV 2016.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import DiceLoss
    >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # (1, 2, 1, 2)
    >>> target = torch.tensor([[[0, 1]]])
    >>> round(DiceLoss()(logits, target).item(), 4)
    0.0
    """

    def __init__(
        self,
        smooth=1e-5,
        include_background=True,
        per_image=False,
        squared=False,
        class_weight=None,
        ignore_index=None,
        reduction="mean",
        sigmoid=False,
    ):
        super().__init__(
            smooth, include_background, per_image, class_weight, ignore_index, reduction,
            sigmoid,
        )
        self.squared = bool(squared)

    def _compute(self, prepared):
        index = dice_index(
            prepared, self.smooth, self.squared, self.per_image, self.sigmoid
        )
        return self._reduce(index, prepared)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return f"squared={self.squared}, {self._overlap_repr()}"
