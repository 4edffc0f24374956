"""Logit-adjusted cross-entropy (Menon et al., 2021)."""

import numpy as np
import torch
import torch.nn.functional as F

from ._base import ClassWeightedLoss
from ._docs import fill_loss_doc
from ._reduction import reduce_elementwise
from ._validation import check_class_mass, check_real

#: The smallest ``min_prior``: float32's smallest normal number, so that the
#: floored prior survives the cast to the float32 buffer and its log is finite.
_MIN_PRIOR_LOW = float(np.finfo(np.float32).tiny)


def check_n_classes(buffer, input, name):
    """Refuse logits whose number of classes differs from a per-class buffer's."""
    n_classes = input.shape[1]
    if buffer.numel() != n_classes:
        raise ValueError(
            f"{name} has {buffer.numel()} entries but input has K={n_classes} classes "
            f"(dimension 1); expected one entry per class."
        )


def class_shape(values, input):
    """View per-class ``values`` (K,) so they broadcast over ``(N, K, d1, ...)``."""
    return values.reshape((1, -1) + (1,) * (input.ndim - 2))


def normalized_prior(class_prior, min_prior):
    """Divide the prior by its sum, then raise it to at least ``min_prior``.

    Parameters
    ----------
    class_prior : array-like of shape (K,)
        Finite non-negative numbers (frequencies or counts), not all zero.
    min_prior : float
        The floor, in (0, 1].

    Returns
    -------
    prior : ndarray of shape (K,), dtype float64
    """
    prior = check_class_mass(class_prior, "class_prior")
    # Dividing by the maximum first keeps the sum finite for counts near 1e308.
    prior = prior / prior.max()
    prior = prior / prior.sum()
    return np.maximum(prior, min_prior)


@fill_loss_doc
class LogitAdjustedLoss(ClassWeightedLoss):
    """Logit-adjusted cross-entropy for long-tailed classification.

    The cross-entropy of the logits shifted by ``tau * log(class_prior)``
    (Menon et al., 2021): rare classes are handicapped during training, so
    the network learns larger margins for them, and the unadjusted logits
    estimate a balanced (prior-free) classifier.

    Parameters
    ----------
    class_prior : array-like of shape (K,)
        Training frequency of each class, or counts (divided by their sum).
        Finite, non-negative, not all zero. Entries below ``min_prior`` after
        normalisation are raised to it, see Notes.
    tau : float, default=1.0
        Strength of the adjustment (>= 0). With ``tau=1`` the loss is
        consistent for the balanced error (Menon et al.); ``tau=0`` is plain
        cross-entropy.
    min_prior : float, default=1e-12
        Floor of the normalised prior, in [1.2e-38, 1] (float32's smallest
        normal number, so that its log is finite in the float32 buffer).
    %(class_weight)s
    %(ignore_index)s
    %(reduction)s

    Attributes
    ----------
    class_prior : Tensor of shape (K,), dtype float32
        The normalised, floored prior, a buffer: ``.to(device)`` moves it, it
        is saved in the ``state_dict``, and :meth:`set_class_prior` (or
        ``class_prior.copy_``) replaces its values in place.

    Notes
    -----
    With logits ``z``, prior ``pi`` and per-element weight
    ``w_i = sample_weight_i * class_weight[y_i]``::

        l_i = -log softmax(z_i + tau * log pi)_{y_i}
        mean = sum_i w_i * l_i / n_non_ignored

    The gradient with respect to ``z_i`` is
    ``w_i * (softmax(z_i + tau * log pi) - onehot(y_i))`` (over
    ``n_non_ignored`` for "mean"). The loss depends on the prior only up to a
    common factor, which shifts every logit equally: counts work as well as
    frequencies, and the floored prior need not sum to 1. The adjustment
    replaces re-weighting: class weights on top of it favour the rare
    classes a second time.

    A class of prior 0 would get an adjustment of ``-inf`` (a NaN loss). Its
    prior is raised to ``min_prior`` instead, an adjustment of
    ``tau * log(1e-12) = -27.6 * tau`` by default: the class is as rare as can
    be, the loss and its gradient stay finite, and the class's logit is
    hardly pushed down by the other classes' samples. Its unadjusted logit
    is then not informed by the data; whether to predict such a class is for
    the caller to decide (e.g. through the deployment prior).

    ``log(class_prior)`` is taken at every forward, in the compute dtype (K
    values), so values copied into the buffer take effect at once; entries
    below ``min_prior`` are raised to it there too.

    References
    ----------
    A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit and S. Kumar,
    "Long-tail learning via logit adjustment", ICLR 2021.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import LogitAdjustedLoss
    >>> logits = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    >>> target = torch.tensor([0, 1])
    >>> loss = LogitAdjustedLoss(class_prior=[90, 10], reduction="none")
    >>> loss.class_prior
    tensor([0.9000, 0.1000])
    >>> loss(logits, target)  # the rare class pays more
    tensor([0.1054, 2.3026])
    """

    def __init__(
        self,
        class_prior,
        tau=1.0,
        min_prior=1e-12,
        class_weight=None,
        ignore_index=None,
        reduction="mean",
    ):
        super().__init__(class_weight, ignore_index, reduction)
        self.tau = check_real(tau, "tau", low=0.0)
        self.min_prior = check_real(min_prior, "min_prior", low=_MIN_PRIOR_LOW, high=1.0)
        prior = normalized_prior(class_prior, self.min_prior)
        self.register_buffer("class_prior", torch.as_tensor(prior, dtype=torch.float32))

    def set_class_prior(self, class_prior):
        """Replace the prior's values in place (same number of classes).

        The new prior is checked, normalised and floored as in the
        constructor. The buffer keeps its device, dtype and identity: what
        holds a reference to it (e.g. a compiled graph) sees the new values.

        Parameters
        ----------
        class_prior : array-like of shape (K,)
            Finite non-negative frequencies or counts of the classes, not all
            zero, as in the constructor.

        Returns
        -------
        self : LogitAdjustedLoss
            This loss, with the new prior.
        """
        prior = normalized_prior(class_prior, self.min_prior)
        if prior.shape != tuple(self.class_prior.shape):
            raise ValueError(
                f"class_prior has {prior.size} entries but the loss was built for "
                f"K={self.class_prior.numel()} classes; expected one entry per class."
            )
        with torch.no_grad():
            self.class_prior.copy_(torch.as_tensor(prior))
        return self

    def _compute(self, prepared):
        logits = prepared.input
        prior = self._buffers["class_prior"]
        check_n_classes(prior, logits, "class_prior")
        if self.tau != 0:
            logits = logits + self._adjustment(prior, logits)
        if prepared.weight is None and self.reduction == "mean":
            return F.cross_entropy(logits, prepared.target)
        loss = F.cross_entropy(logits, prepared.target, reduction="none")
        return reduce_elementwise(loss, prepared.weight, prepared.n_valid, self.reduction)

    def _adjustment(self, prior, logits):
        """``tau * log(prior)`` shaped to broadcast over ``logits``."""
        prior = prior.to(device=logits.device, dtype=logits.dtype)
        log_prior = torch.log(prior.clamp_min(self.min_prior))
        if self.tau != 1:
            log_prior = log_prior * self.tau
        return class_shape(log_prior, logits)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        prior = [round(p, 4) for p in self.class_prior.tolist()]
        return (
            f"class_prior={prior}, tau={self.tau}, min_prior={self.min_prior}, "
            f"{self._weight_repr()}"
        )
