"""Weighted soft overlap sums shared by the Dice and Tversky losses."""

from typing import NamedTuple

import torch
from torch import Tensor

from ._base import ClassWeightedLoss
from ._prepare import prepare_binary
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


def soft_assignment(prepared, per_image, sigmoid=False):
    """Softmax probabilities and one-hot targets, or sigmoids and 0/1 masks.

    With ``sigmoid``, each channel is its own structure: its probability is
    its own sigmoid, its target the 0/1 mask of the same shape, and the
    weights are per element already (or per sample).
    """
    x = prepared.input
    spatial = tuple(range(2, x.ndim))
    dims = spatial if per_image else (0,) + spatial
    if sigmoid:
        return SoftAssignment(torch.sigmoid(x), prepared.target, prepared.weight, dims)
    n_classes = x.shape[1]
    classes = torch.arange(n_classes, device=x.device).view(
        (1, n_classes) + (1,) * (x.ndim - 2)
    )
    onehot = (prepared.target.unsqueeze(1) == classes).to(x.dtype)
    weight = None if prepared.weight is None else prepared.weight.unsqueeze(1)
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
        sigmoid=False,
    ):
        super().__init__(class_weight, ignore_index, reduction)
        self.smooth = check_real(smooth, "smooth", low=0.0)
        self.include_background = bool(include_background)
        self.per_image = bool(per_image)
        self.sigmoid = bool(sigmoid)
        if self.sigmoid and self.class_weight is not None:
            # class_weight[target] needs class-index targets; a channel's own
            # weight would cancel inside its Dice ratio.
            raise ValueError(
                f"class_weight must be None with sigmoid=True; got "
                f"{self.class_weight.tolist()}. Pass per-element weights as "
                "sample_weight of the target's shape (N, C, ...) instead."
            )

    def _loss(self, input, target, sample_weight, check_values):
        if not self.sigmoid:
            return super()._loss(input, target, sample_weight, check_values)
        if isinstance(input, Tensor) and input.ndim < 2:
            raise ValueError(
                "input must have shape (N, C) or (N, C, d1, ...) with the channels "
                f"on dimension 1 when sigmoid=True; got shape {tuple(input.shape)}."
            )
        prepared = prepare_binary(
            input,
            target,
            sample_weight,
            check_values,
            ignore_index=self.ignore_index,
            loss_name=f"{type(self).__name__}(sigmoid=True)",
        )
        return self._compute(prepared)

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
            f"per_image={self.per_image}, sigmoid={self.sigmoid}, {self._weight_repr()}"
        )
