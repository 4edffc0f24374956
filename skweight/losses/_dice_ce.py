"""Weighted sum of the soft Dice and cross-entropy losses."""

from ._binary import bce_elements
from ._ce import cross_entropy_elements
from ._dice import dice_index
from ._overlap import OverlapLoss
from ._reduction import reduce_elementwise
from ._validation import check_real, check_reduction


class DiceCELoss(OverlapLoss):
    """``lambda_dice * DiceLoss + lambda_ce * CrossEntropyLoss``.

    Both terms see the same class weights, sample weights and ignored
    elements; inputs are validated once.

    Parameters
    ----------
    lambda_dice : float, default=1.0
        Weight (>= 0) of the Dice term.
    lambda_ce : float, default=1.0
        Weight (>= 0) of the cross-entropy term.
    smooth, include_background, per_image, squared : see :class:`DiceLoss`
        Options of the Dice term.
    class_weight : array-like of shape (K,), default=None
        Non-negative weight of each class, acting exactly as the per-element
        sample weight ``class_weight[target]`` in both terms.
    ignore_index : int, default=None
        Target value of elements left out of both terms.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy term, in [0, 1]. With
        ``sigmoid=True`` the binary targets become ``y * (1 - eps) + eps / 2``.
    reduction : {"mean", "sum"}, default="mean"
        Applied to each term before combining: "mean" combines
        ``1 - mean_k D_k`` with the cross-entropy mean over non-ignored
        elements; "sum" combines the sum of the ``1 - D_k`` terms with the
        cross-entropy sum. "none" is not available because the Dice terms are
        per class while the cross-entropy terms are per element.
    sigmoid : bool, default=False
        If True, each channel is its own binary structure (channels may
        overlap): the Dice term is that of ``DiceLoss(sigmoid=True)`` and the
        cross-entropy term is the binary cross-entropy of each channel's
        logit (see :class:`BinaryCrossEntropyLoss`), averaged over every
        element (pixel and channel) for "mean". The target is a 0/1 mask of
        the input's shape; ``class_weight`` must be None.

    Notes
    -----
    ::

        loss = lambda_dice * dice_loss + lambda_ce * ce_loss

    with ``dice_loss`` as in :class:`DiceLoss` and ``ce_loss`` as in
    :class:`CrossEntropyLoss` (:class:`BinaryCrossEntropyLoss` with
    ``sigmoid=True``), same weights and reduction.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import DiceCELoss
    >>> logits = torch.zeros(1, 2, 1, 2)
    >>> target = torch.tensor([[[0, 1]]])
    >>> round(DiceCELoss(smooth=0.0)(logits, target).item(), 4)  # 0.5 + log 2
    1.1931
    """

    def __init__(
        self,
        lambda_dice=1.0,
        lambda_ce=1.0,
        smooth=1e-5,
        include_background=True,
        per_image=False,
        squared=False,
        class_weight=None,
        ignore_index=None,
        label_smoothing=0.0,
        reduction="mean",
        sigmoid=False,
    ):
        if reduction == "none":
            raise ValueError(
                "reduction='none' is not defined for DiceCELoss: the Dice terms are "
                "per class and the cross-entropy terms per element. Use 'mean' or "
                "'sum', or DiceLoss and CrossEntropyLoss separately."
            )
        check_reduction(reduction, allowed=("mean", "sum"))
        super().__init__(
            smooth, include_background, per_image, class_weight, ignore_index, reduction,
            sigmoid,
        )
        self.lambda_dice = check_real(lambda_dice, "lambda_dice", low=0.0)
        self.lambda_ce = check_real(lambda_ce, "lambda_ce", low=0.0)
        self.squared = bool(squared)
        self.label_smoothing = check_real(
            label_smoothing, "label_smoothing", low=0.0, high=1.0
        )

    def _compute(self, prepared):
        dice = self._reduce(
            dice_index(prepared, self.smooth, self.squared, self.per_image, self.sigmoid),
            prepared,
        )
        if self.sigmoid:
            elements = bce_elements(prepared.input, prepared.target, self.label_smoothing)
        else:
            elements = cross_entropy_elements(prepared, self.label_smoothing)
        ce = reduce_elementwise(
            elements,
            prepared.weight,
            prepared.n_valid,
            self.reduction,
        )
        return self.lambda_dice * dice + self.lambda_ce * ce

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        return (
            f"lambda_dice={self.lambda_dice}, lambda_ce={self.lambda_ce}, "
            f"squared={self.squared}, label_smoothing={self.label_smoothing}, "
            f"{self._overlap_repr()}"
        )
