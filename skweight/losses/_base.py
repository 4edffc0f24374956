"""Base module for losses on class-index targets."""

from torch import nn

from ._prepare import prepare
from ._validation import check_class_weight, check_ignore_index, check_reduction


class ClassWeightedLoss(nn.Module):
    """Holds the class weights, ``ignore_index`` and ``reduction``.

    The class weights are a float32 buffer, so ``.to(device)`` moves them and
    they are saved in the ``state_dict``; at forward they follow the device
    and compute dtype of the input.
    """

    #: attribute (and buffer) name of the per-class weights
    _class_weight_name = "class_weight"

    def __init__(
        self, class_weight=None, ignore_index=None, reduction="mean", scalar_hint=""
    ):
        super().__init__()
        name = self._class_weight_name
        self.register_buffer(
            name, check_class_weight(class_weight, name, scalar_hint=scalar_hint)
        )
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)

    def _prepare(self, input, target, sample_weight):
        name = self._class_weight_name
        return prepare(
            input,
            target,
            sample_weight,
            getattr(self, name),
            self.ignore_index,
            class_weight_name=name,
        )

    def _weight_repr(self):
        weight = getattr(self, self._class_weight_name)
        value = None if weight is None else [round(w, 4) for w in weight.tolist()]
        return (
            f"{self._class_weight_name}={value}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}"
        )
