"""Logit-adjusted binary cross-entropy for multi-label targets."""

import math

import numpy as np
import torch

from ._binary import BinaryLoss, bce_elements
from ._docs import fill_loss_doc
from ._logit_adjusted import _MIN_PRIOR_LOW, class_shape
from ._validation import check_real


def check_label_prior(class_prior, min_prior):
    """Return label prevalences as a 1-D float64 array in ``[m, 1 - m]``.

    Parameters
    ----------
    class_prior : array-like of shape (C,)
        The fraction of samples (or pixels) in which each label is present:
        finite numbers in [0, 1]. Labels are not exclusive, so the entries
        need not sum to 1, and counts cannot be told from fractions.
    min_prior : float
        The floor ``m``, in (0, 0.5].

    Returns
    -------
    prior : ndarray of shape (C,), dtype float64
    """
    value = class_prior
    if isinstance(value, torch.Tensor):  # read without modifying it
        value = value.detach().cpu().double().numpy()
    try:
        prior = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "class_prior must be a 1-D array of label prevalences in [0, 1], one "
            f"per label; got {class_prior!r}."
        ) from exc
    if prior.ndim != 1 or prior.size == 0:
        raise ValueError(
            "class_prior must be a non-empty 1-D array with one prevalence per "
            f"label; got shape {prior.shape}."
        )
    if not np.all((prior >= 0) & (prior <= 1)):
        raise ValueError(
            "class_prior must contain label prevalences, finite numbers in [0, 1] "
            f"(labels are not exclusive: they need not sum to 1); got {prior.tolist()}."
        )
    return np.clip(prior, min_prior, 1.0 - min_prior)


@fill_loss_doc
class BinaryLogitAdjustedLoss(BinaryLoss):
    """Logit-adjusted binary cross-entropy for multi-label classification.

    The binary cross-entropy of each label's logit shifted by ``tau`` times
    the label's prior log-odds, ``log(pi_c / (1 - pi_c))``: the binary
    counterpart of :class:`LogitAdjustedLoss` (Menon et al., 2021) applied
    to each label as its own two-class problem. Rare labels are
    handicapped during training, so the network learns larger margins for
    them; the unadjusted logits estimate prior-free log-odds.

    Parameters
    ----------
    class_prior : array-like of shape (C,), default=None
        Prevalence of each label in the training data: the fraction of the
        samples (or pixels) where it is present, in [0, 1] (labels are not
        exclusive: they need not sum to 1). Entries are kept
        ``min_prior`` away from 0 and 1, see Notes. ``None`` leaves it to
        :meth:`set_class_prior` (as the estimators do): until then only
        ``tau=0`` can be computed.
    tau : float, default=1.0
        Strength of the adjustment (>= 0); ``tau=0`` is binary
        cross-entropy.
    min_prior : float, default=1e-12
        Floor ``m`` of the prevalences and of their complements, in
        [1.2e-38, 0.5]: a prevalence below ``m`` is raised to ``m``, one
        above ``1 - m`` lowered to it.
    %(binary_reduction)s

    Attributes
    ----------
    class_prior : Tensor of shape (C,), dtype float32, or None
        The floored prevalences, a buffer: ``.to(device)`` moves it, it is
        saved in the ``state_dict``, and :meth:`set_class_prior` (or
        ``class_prior.copy_``) replaces its values in place.

    See Also
    --------
    LogitAdjustedLoss : The multi-class (softmax) logit adjustment.
    BinaryCrossEntropyLoss : The loss with ``tau=0``.

    Notes
    -----
    With logits ``x_c`` (input dimension 1 holds the labels), prevalences
    ``pi_c``, 0/1 targets ``y`` and per-element weight ``w_i``::

        z_c = x_c + tau * log(pi_c / (1 - pi_c))
        l_i = -y_i * log sigmoid(z_c) - (1 - y_i) * log sigmoid(-z_c)
        mean = sum_i w_i * l_i / n_elements

    computed as in :class:`BinaryCrossEntropyLoss`; the gradient with
    respect to ``x`` is ``w_i * (sigmoid(z) - y)``. A prevalence of 0.5
    adds nothing: the loss is then binary cross-entropy, bit for bit.

    If ``sigmoid(z)`` is calibrated for the training distribution, the
    unadjusted ``sigmoid(x)`` is calibrated for prior log-odds
    ``(1 - tau) * log(pi / (1 - pi))``: a balanced prior (0.5) for
    ``tau=1``.

    A label never (or always) present would get an infinite shift. Its
    prevalence is kept in ``[m, 1 - m]`` instead: a shift of at most
    ``tau * log((1 - m) / m) = 27.6 * tau`` for the default ``m``. The
    buffer holds float32, in which prevalences within about 6e-8 of 1
    round to 1; the shift is computed at every forward, in the compute
    dtype, and bounded by that same largest shift there.

    References
    ----------
    A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit and S. Kumar,
    "Long-tail learning via logit adjustment", ICLR 2021.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import BinaryLogitAdjustedLoss
    >>> loss = BinaryLogitAdjustedLoss(class_prior=[0.5, 0.1], reduction="none")
    >>> logits = torch.zeros(2, 2)
    >>> target = torch.tensor([[1, 1], [0, 0]])
    >>> loss(logits, target)  # label 1 is rare: its positives pay more
    tensor([[0.6931, 2.3026],
            [0.6931, 0.1054]])
    """

    def __init__(self, class_prior=None, tau=1.0, min_prior=1e-12, reduction="mean"):
        super().__init__(reduction)
        self.tau = check_real(tau, "tau", low=0.0)
        self.min_prior = check_real(min_prior, "min_prior", low=_MIN_PRIOR_LOW, high=0.5)
        # the largest shift's log-odds, in float64 (1 - 1e-12 is 1 in float32)
        self._max_log_odds = math.log1p(-self.min_prior) - math.log(self.min_prior)
        prior = None
        if class_prior is not None:
            prior = torch.as_tensor(
                check_label_prior(class_prior, self.min_prior), dtype=torch.float32
            )
        self.register_buffer("class_prior", prior)

    def set_class_prior(self, class_prior):
        """Replace the prevalences in place (same number of labels).

        The new prior is checked and floored as in the constructor. The
        buffer keeps its device, dtype and identity: what holds a reference
        to it (e.g. a compiled graph) sees the new values. A loss built
        without a prior gets a new float32 buffer.

        Parameters
        ----------
        class_prior : array-like of shape (C,)
            Prevalence of each label, in [0, 1], as in the constructor.

        Returns
        -------
        self : BinaryLogitAdjustedLoss
            This loss, with the new prior.
        """
        prior = check_label_prior(class_prior, self.min_prior)
        buffer = self._buffers["class_prior"]
        if buffer is None:
            self.class_prior = torch.as_tensor(prior, dtype=torch.float32)
            return self
        if prior.shape != tuple(buffer.shape):
            raise ValueError(
                f"class_prior has {prior.size} entries but the loss was built for "
                f"C={buffer.numel()} labels; expected one prevalence per label."
            )
        with torch.no_grad():
            buffer.copy_(torch.as_tensor(prior))
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A loss built without a prior has no buffer to load into: make one,
        # so that a saved loss can be restored into a fresh one.
        key = prefix + "class_prior"
        if self._buffers["class_prior"] is None and key in state_dict:
            self.class_prior = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _elements(self, input, target):
        if self.tau != 0:
            input = input + self._adjustment(input)
        return bce_elements(input, target)

    def _adjustment(self, input):
        """``tau * log(pi / (1 - pi))`` shaped to broadcast over ``input``."""
        prior = self._buffers["class_prior"]
        if prior is None:
            raise ValueError(
                "class_prior is not set: pass class_prior=... to "
                "BinaryLogitAdjustedLoss or call set_class_prior(prior) before the "
                "first forward (only tau=0 needs no prior)."
            )
        n_labels = input.shape[1] if input.ndim >= 2 else None
        if n_labels != prior.numel():
            raise ValueError(
                f"class_prior has {prior.numel()} entries (one per label) but input "
                f"has shape {tuple(input.shape)}; expected input of shape (N, C) or "
                f"(N, C, d1, ...) with C={prior.numel()} labels on dimension 1."
            )
        prior = prior.to(device=input.device, dtype=input.dtype)
        # p / (1 - p) is exactly 1 at p = 0.5 (no shift), and the clamp keeps
        # the shift finite for a 0 or 1 (also one copied into the buffer).
        bound = self._max_log_odds
        log_odds = torch.log(prior / (1.0 - prior)).clamp(-bound, bound)
        if self.tau != 1:
            log_odds = log_odds * self.tau
        return class_shape(log_odds, input)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        prior = self.class_prior
        if prior is not None:
            prior = [round(p, 4) for p in prior.tolist()]
        return (
            f"class_prior={prior}, tau={self.tau}, min_prior={self.min_prior}, "
            f"reduction={self.reduction!r}"
        )
