"""Weighted soft overlap sums shared by the Dice and Tversky losses."""

from typing import NamedTuple

import torch
from torch import Tensor

from ._base import ClassWeightedLoss
from ._reduction import reduce_terms
from ._validation import check_real


class SoftAssignment(NamedTuple):
    """Soft prediction and one-hot target, with the weights and sum axes.

    probs, onehot : shape (N, K, d1, ...).
    weight : broadcastable to probs (N, 1, ...), or None for all ones.
    dims : axes summed over; all but the class axis, plus the batch axis
        unless the sums are per image.
    """

    probs: Tensor
    onehot: Tensor
    weight: Tensor | None
    dims: tuple


def soft_assignment(prepared, per_image):
    x = prepared.input
    n_classes = x.shape[1]
    classes = torch.arange(n_classes, device=x.device).view(
        (1, n_classes) + (1,) * (x.ndim - 2)
    )
    onehot = (prepared.target.unsqueeze(1) == classes).to(x.dtype)
    weight = None if prepared.weight is None else prepared.weight.unsqueeze(1)
    spatial = tuple(range(2, x.ndim))
    dims = spatial if per_image else (0,) + spatial
    return SoftAssignment(torch.softmax(x, dim=1), onehot, weight, dims)


def image_weights(prepared):
    """Mean element weight of each sample, shape (N,)."""
    target = prepared.target
    weight = prepared.weight.expand(target.shape)
    return weight.reshape(len(target), -1).mean(dim=1)


def weighted_sum(values, soft):
    """Sum ``weight * values`` over ``soft.dims`` (shape (K,) or (N, K))."""
    if soft.weight is not None:
        values = values * soft.weight
    # Tensor.sum(dim=()) would reduce every axis, not none.
    return values.sum(dim=soft.dims) if soft.dims else values


class OverlapLoss(ClassWeightedLoss):
    """Common parameters and class selection of the overlap losses."""

    def __init__(
        self,
        smooth=1e-5,
        include_background=True,
        per_image=False,
        class_weight=None,
        ignore_index=None,
        reduction="mean",
    ):
        super().__init__(class_weight, ignore_index, reduction)
        self.smooth = check_real(smooth, "smooth", low=0.0)
        self.include_background = bool(include_background)
        self.per_image = bool(per_image)

    def _terms(self, index):
        """``1 - index`` for the classes kept (class 0 is the background)."""
        if not self.include_background:
            if index.shape[-1] < 2:
                raise ValueError(
                    "include_background=False needs at least 2 classes on input "
                    f"dimension 1; got {index.shape[-1]}."
                )
            index = index[..., 1:]
        return 1.0 - index

    def _reduce(self, index, prepared):
        terms = self._terms(index)
        if self.per_image and prepared.weight is not None:
            # Weights inside an image's sums only shape its own index: scaled
            # by k, they leave it unchanged. Each image's terms are therefore
            # also weighted by its mean element weight (relative to the
            # batch's mean), so that an image of weight k counts k times, and
            # one of weight 0 not at all, as in every other loss; scaling all
            # weights still changes nothing.
            m = image_weights(prepared)
            m = m / m.mean().clamp_min(torch.finfo(m.dtype).tiny)
            terms = terms * m.unsqueeze(1)
        return reduce_terms(terms, self.reduction)

    def _overlap_repr(self):
        return (
            f"smooth={self.smooth}, include_background={self.include_background}, "
            f"per_image={self.per_image}, {self._weight_repr()}"
        )
