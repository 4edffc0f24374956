"""Estimators whose targets are class labels (per image or per pixel).

:class:`LabelledMixin` holds what the classifier and the segmenter share:
encoding labels and mapping them back, the class weights computed from the
rows a network is trained on, and the refusal of class weights given to both
the estimator and its loss.
"""

import numpy as np
import torch

from ._validation import encode_labels
from .weighting import compute_class_weight, fold_weights

__all__ = ["LabelledMixin"]


class LabelledMixin:
    """Targets that are class labels (per image or per pixel).

    Shared by the classifier and the segmenter: the class-weight request,
    the class weights computed from the training rows, the refusal of
    class weights given twice and the mapping back to the user's labels.
    """

    def _class_weights(self, fit_request, train, counts):
        requested = fit_request.get("class_weight")
        if requested is None:
            requested = self.class_weight
        target = train.target.numpy()
        # Each element's share of the objective before class weights: its
        # sample weight, its mask, and how often its row is served.
        mass = fold_weights(
            target, None if train.weight is None else train.weight.numpy(), None,
            None if train.mask is None else train.mask.numpy(),
        )
        if counts is not None:
            mass = counts if mass is None else mass * counts.reshape(
                counts.shape + (1,) * (mass.ndim - 1)
            )
        self.class_weight_ = compute_class_weight(requested, target, self.classes_, mass)
        return self.class_weight_

    def _duplicated_weights(self, fit_request):
        requested = fit_request.get("class_weight")
        if requested is None and self.class_weight is None:
            return None
        crit = getattr(self.criterion_, "_orig_mod", self.criterion_)
        # skweight's losses name their class-weight argument; for others the
        # names torch's losses use.
        names = getattr(crit, "_class_weight_name", None)
        names = (names,) if names else ("weight", "class_weight")
        return "class_weight", names, "class weights"

    def _encode(self, y, reset, classes):
        """Encode labels; learn ``classes_`` when ``reset``."""
        if reset:
            known = None if classes is None else np.unique(classes)
            classes_, encoded = encode_labels(y, known)
            return classes_, encoded
        try:
            _, encoded = encode_labels(y, self.classes_)
        except ValueError as exc:
            raise ValueError(
                f"{exc} The network being trained further (warm_start=True or "
                f"partial_fit) has one output per fitted class: fit afresh with "
                f"warm_start=False, or pass every label to the first "
                f"partial_fit(classes=...)."
            ) from None
        return self.classes_, encoded

    def _decode_labels(self, target):
        """Encoded labels (any tensor) back to ``classes_`` (a tensor when the
        labels are numbers, so that no device sync is needed)."""
        classes = self.classes_
        if classes.dtype.kind in "biuf":
            table = torch.as_tensor(classes, device=target.device)
            return table[target]
        return classes[target.cpu().numpy()]
