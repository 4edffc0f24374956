"""Base modules of skweight's losses."""

from torch import nn

from ._prepare import prepare, prepare_checked
from ._validation import check_class_weight, check_ignore_index, check_reduction


class WeightedLoss(nn.Module):
    """A loss called as ``loss(input, target, sample_weight=None)``.

    Besides ``forward``, every skweight loss has :meth:`forward_validated`,
    the same computation for callers that have checked target values and
    weights already (the estimators do, once, in ``fit``): it skips the
    checks that read the data, each of which waits for the GPU.
    Subclasses implement ``_loss(input, target, sample_weight, check_values)``.
    """

    def forward(self, input, target, sample_weight=None):
        """Compute the loss.

        Parameters
        ----------
        input : Tensor
            Logits (or predictions, for regression losses), see the class.
        target : Tensor
            Class indices, 0/1 values or real targets, see the class.
        sample_weight : Tensor of shape (N,) or target's shape, default=None
            Non-negative weights, per sample or per element.

        Returns
        -------
        loss : Tensor
            Scalar, or per-element (or per-class) terms for
            ``reduction="none"``.
        """
        return self._loss(input, target, sample_weight, check_values=True)

    def forward_validated(self, input, target, sample_weight=None):
        """:meth:`forward` for inputs the caller has checked already.

        The estimators check targets, weights and the network's output shape
        once, in ``fit``; this skips the per-call checks of values, each of
        which waits for the GPU (the shape of ``sample_weight`` is still
        checked). Use it only on targets in range and finite non-negative
        weights: other values give undefined results.

        Parameters
        ----------
        input : Tensor
            Logits (or predictions, for regression losses), as in
            :meth:`forward`.
        target : Tensor
            Class indices, 0/1 values or real targets, as in :meth:`forward`.
        sample_weight : Tensor of shape (N,) or target's shape, default=None
            Non-negative weights, per sample or per element, as in
            :meth:`forward`.

        Returns
        -------
        loss : Tensor
            The loss :meth:`forward` returns for the same arguments.
        """
        return self._loss(input, target, sample_weight, check_values=False)

    def _loss(self, input, target, sample_weight, check_values):
        raise NotImplementedError


class ClassWeightedLoss(WeightedLoss):
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

    def _loss(self, input, target, sample_weight, check_values):
        name = self._class_weight_name
        # (_buffers is read directly: nn.Module's attribute lookup is slow
        # for a call made at every training step.)
        if not check_values and self._buffers[name] is None and self.ignore_index is None:
            # The estimators' hot path: nothing to gather or mask.
            prepared = prepare_checked(input, target, sample_weight)
            return self._compute(prepared)
        prepared = prepare(
            input,
            target,
            sample_weight,
            getattr(self, name),
            self.ignore_index,
            class_weight_name=name,
            check_values=check_values,
        )
        return self._compute(prepared)

    def _compute(self, prepared):
        """Compute the loss of validated inputs (a :class:`~._prepare.Prepared`)."""
        raise NotImplementedError

    def _weight_repr(self):
        weight = getattr(self, self._class_weight_name)
        value = None if weight is None else [round(w, 4) for w in weight.tolist()]
        return (
            f"{self._class_weight_name}={value}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}"
        )
