"""Balanced MSE for imbalanced regression (Ren et al., CVPR 2022).

A network trained with the squared error learns the training conditional
``p_train(y | x)``, which the label prior ``p_train(y)`` drags towards the
frequent targets: on a long tail, predictions for rare targets are pulled
towards the head. Balanced MSE fits the balanced conditional instead, that of
a uniform label prior, by adding to the Gaussian negative log-likelihood the
log of its normaliser over the training label prior::

    l = (yhat - y)**2 / (2 s**2) + log Z(yhat)
    Z(yhat) = integral N(y'; yhat, s**2) p_train(y') dy'       (up to a constant)

and multiplying the whole by ``2 s**2`` held constant, so that the gradient
with respect to the predictions has the scale of the squared error's.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from torch import nn

from .._validation import (
    SAMPLE_WEIGHT_VALUES_MESSAGE,
    check_bool,
    check_int,
    check_sample_weight,
    per_element,
)
from ._base import WeightedLoss
from ._prepare import compute_dtype, sample_weight_view
from ._regression import _check_pair, _check_target_weight
from ._validation import check_real, check_reduction

__all__ = ["BalancedMSELoss"]

PRIORS = ("bni", "gai", "bmc")

# sigma is clamped to this range in the computation: beyond it float32
# overflows (1 / s**2 times a squared error of 1e4 standard deviations), and
# a noise scale of 1e-8 or 1e8 target standard deviations means nothing.
_LOG_SIGMA_MIN = math.log(1e-8)
_LOG_SIGMA_MAX = math.log(1e8)

# Weighted EM of the GAI mixture: a variance floor relative to the target's
# variance (components that settle on one value would otherwise collapse),
# and the stopping rule on the mean log-likelihood (scale-free in y and in
# the weights, which are normalised).
_EM_VARIANCE_FLOOR = 1e-6
_EM_TOL = 1e-9
_EM_MAX_ITER = 500
# EM runs on the distinct values with their masses, or, beyond this many,
# on a histogram of this many bins (an EM iteration costs one pass over the
# points; bins of 1/2048 of the range lose nothing a mixture of 8 can show).
_EM_MAX_POINTS = 2048

# The smallest variance stored in the float32 buffers.
_MIN_VARIANCE = 1e-30

# Below -_TAIL, log Phi(z) is taken from its asymptotic series: the gradient
# of torch.special.log_ndtr is lost far out (inf or wrong beyond about -1e7
# in float64), where an extreme prediction and a small sigma put the bins.
_TAIL = 30.0
# log(Phi(a) / Phi(b)) is kept below -_MIN_GAP: where rounding makes it 0
# (a bin of width 1e-15 sigma), its log(1 - exp(.)) would be -inf.
_MIN_GAP = 1e-20

_PRIOR_BUFFERS = ("prior_means", "prior_variances", "prior_log_weights")


def _targets_float64(y):
    """Return the targets as a new float64 array of shape (N, T), and T's form."""
    if hasattr(y, "detach"):  # a tensor, read without modifying it
        y = y.detach().cpu().double().numpy()
    try:
        values = np.array(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"y must be an array of real targets of shape (N,) or (N, T); got "
            f"{type(y).__name__}."
        ) from exc
    if values.ndim not in (1, 2) or values.size == 0:
        raise ValueError(
            f"y must be a non-empty array of shape (N,) or (N, T); got shape "
            f"{values.shape}."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("y contains NaN or infinity; targets must be finite.")
    return values.reshape(values.shape[0], -1), values.ndim == 2


def _column_masses(values, weights, column):
    """Distinct target values of one column with their normalised weights.

    Samples of weight 0 are dropped before anything is computed from the
    column (its range, its distinct values), so that weight 0 is exactly
    leaving the sample out; and since repeated samples merge into one value
    of summed weight, integer weights are exactly repetitions.
    """
    keep = weights > 0
    if not np.any(keep):
        raise ValueError(
            f"sample_weight is zero for every sample of target {column}; at least "
            f"one weight per target must be positive."
        )
    w = weights[keep]
    # Dividing by the largest weight first keeps the sum finite and exact
    # enough for weights of any scale (1e-300 .. 1e300).
    w = w / w.max()
    distinct, inverse = np.unique(values[keep], return_inverse=True)
    if distinct.size < 2:
        raise ValueError(
            f"y has a single distinct value ({float(distinct[0])!r}) in target {column} "
            f"among the samples of positive weight; a label prior needs at least "
            f"two distinct target values (a constant target has nothing to "
            f"balance)."
        )
    mass = np.bincount(inverse.ravel(), weights=w, minlength=distinct.size)
    return distinct, mass / mass.sum()


def _histogram_prior(distinct, mass, n_bins):
    """Non-empty bins of an equal-width histogram over the range of the targets.

    Returns the bin centres, the variance ``h**2 / 12`` of the uniform
    spread over a bin of width ``h``, and the log masses.
    """
    low, high = distinct[0], distinct[-1]
    width = (high - low) / n_bins
    index = np.minimum(np.floor((distinct - low) / width).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, weights=mass, minlength=n_bins)
    filled = counts > 0
    centres = low + (np.arange(n_bins) + 0.5) * width
    variances = np.full(int(filled.sum()), width**2 / 12.0)
    return centres[filled], variances, np.log(counts[filled])


def _m_step(points, mass, resp, floor, previous=None):
    """Weighted M-step of a 1-D Gaussian mixture."""
    weighted = resp * mass[:, None]
    totals = weighted.sum(axis=0)
    alive = totals > 0
    safe = np.where(alive, totals, 1.0)
    means = (weighted * points[:, None]).sum(axis=0) / safe
    variances = (weighted * (points[:, None] - means) ** 2).sum(axis=0) / safe + floor
    if previous is not None:
        # A component that lost all its mass keeps its place (weight 0).
        means = np.where(alive, means, previous[0])
        variances = np.where(alive, variances, previous[1])
    return totals / totals.sum(), means, variances


def _e_step(points, weights, means, variances):
    """Responsibilities and the log-density of each point under the mixture."""
    with np.errstate(divide="ignore"):
        log_joint = (
            np.log(weights)
            - 0.5 * np.log(2 * np.pi * variances)
            - 0.5 * (points[:, None] - means) ** 2 / variances
        )
    top = log_joint.max(axis=1, keepdims=True)
    joint = np.exp(log_joint - top)
    total = joint.sum(axis=1, keepdims=True)
    return joint / total, (top + np.log(total)).ravel()


def _mixture_prior(distinct, mass, n_components, rng):
    """Gaussian mixture fitted by weighted EM to distinct values and their masses.

    At most as many components as distinct values, seeded by weighted
    k-means++ (each seed is a distinct value, so no two coincide).
    """
    points, within = distinct, 0.0
    if distinct.size > _EM_MAX_POINTS:
        points, spread, log_mass = _histogram_prior(distinct, mass, _EM_MAX_POINTS)
        mass = np.exp(log_mass)
        mass /= mass.sum()
        # the points' spread inside their bins, lost by the binning
        within = spread[0]
    k = min(n_components, points.size)
    centre = mass @ points
    floor = _EM_VARIANCE_FLOOR * (mass @ (points - centre) ** 2) + within
    seeds = np.empty(k)
    seeds[0] = points[rng.choice(points.size, p=mass)]
    nearest = (points - seeds[0]) ** 2
    for j in range(1, k):
        p = mass * nearest
        seeds[j] = points[rng.choice(points.size, p=p / p.sum())]
        nearest = np.minimum(nearest, (points - seeds[j]) ** 2)
    # Each seed is its own nearest seed, so every component starts with mass.
    labels = np.argmin(np.abs(points[:, None] - seeds), axis=1)
    weights, means, variances = _m_step(points, mass, np.eye(k)[labels], floor)
    previous = -np.inf
    for _ in range(_EM_MAX_ITER):
        resp, log_density = _e_step(points, weights, means, variances)
        weights, means, variances = _m_step(
            points, mass, resp, floor, previous=(means, variances)
        )
        current = mass @ log_density
        if current - previous < _EM_TOL:
            break
        previous = current
    order = np.argsort(means, kind="stable")
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights[order])
    return means[order], variances[order], log_weights


def _log_ndtr(z):
    """``log Phi(z)`` with a finite, accurate gradient for any finite ``z``."""
    far = z < -_TAIL
    # Each branch gets inputs where it is valid: torch.where would pass on
    # the NaN gradient of the branch it does not take.
    near_z = torch.where(far, -_TAIL, z)
    far_z = torch.where(far, z, -_TAIL)
    inv = far_z.square().reciprocal()
    series = 1 - inv * (1 - 3 * inv * (1 - 5 * inv * (1 - 7 * inv)))
    tail = (
        -0.5 * far_z.square() - torch.log(-far_z) - 0.5 * math.log(2 * math.pi)
        + torch.log(series)
    )
    return torch.where(far, tail, torch.special.log_ndtr(near_z))


def _log1mexp(d):
    """``log(1 - exp(d))`` for ``d < 0``, accurate near 0 and far from it."""
    near = d > -math.log(2)
    close = torch.log(-torch.expm1(torch.where(near, d, -1.0)))
    distant = torch.log1p(-torch.exp(torch.where(near, -1.0, d)))
    return torch.where(near, close, distant)


def _bins_log_partition(x2, log_sigma, centres, variances, log_masses):
    """``log Z`` of predictions (N, T) under histograms of uniform bins.

    Computed in float64: for a sigma much larger than the bins, the mass of
    a bin, ``Phi(b) - Phi(a)``, is a difference that float32 cannot resolve.
    """
    dtype = x2.dtype
    like = {"device": x2.device, "dtype": torch.float64}
    x = x2.to(torch.float64).unsqueeze(-1)
    log_sigma = log_sigma.to(torch.float64)
    centres, variances, log_masses = (
        b.to(**like) for b in (centres, variances, log_masses)
    )
    width = torch.sqrt(12 * variances)  # a bin's variance is width**2 / 12
    sigma = torch.exp(log_sigma)
    lower = (centres - 0.5 * width - x) / sigma
    upper = (centres + 0.5 * width - x) / sigma
    # Phi(upper) - Phi(lower) = Phi(-lower) - Phi(-upper): take the side where
    # the bin is nearer the lower tail, so that Phi(b) is at most 1/2 and the
    # difference is not lost in rounding.
    flip = lower + upper > 0
    a = torch.where(flip, -upper, lower)
    b = torch.where(flip, -lower, upper)
    log_b = _log_ndtr(b)
    gap = (_log_ndtr(a) - log_b).clamp(max=-_MIN_GAP)
    # log(sqrt(2 pi) s / h * (Phi(b) - Phi(a))): the Gaussian's normaliser
    # comes in with the likelihood's, which the caller leaves out.
    terms = (
        log_masses + 0.5 * math.log(2 * math.pi) + log_sigma - torch.log(width)
        + log_b + _log1mexp(gap)
    )
    return torch.logsumexp(terms, dim=-1).to(dtype)


def _mixture_log_partition(x2, log_sigma, means, variances, log_weights):
    """``log Z`` of predictions (N, T) under Gaussian mixtures."""
    like = {"device": x2.device, "dtype": x2.dtype}
    means, variances, log_weights = (b.to(**like) for b in (means, variances, log_weights))
    # 1/2 log(s**2 / (s**2 + v)) through softplus: accurate whichever of
    # s**2 and v dominates.
    shrink = 0.5 * F.softplus(torch.log(variances) - 2 * log_sigma)
    spread = 2 * (torch.exp(2 * log_sigma) + variances)
    terms = log_weights - shrink - (x2.unsqueeze(-1) - means).square() / spread
    return torch.logsumexp(terms, dim=-1)


class BalancedMSELoss(WeightedLoss):
    """Balanced MSE: the squared error for a long-tailed target distribution.

    The squared error fits the training conditional ``p_train(y | x)``, biased
    towards frequent targets; Balanced MSE (Ren et al., 2022) fits the
    balanced conditional, that of a uniform label prior. It adds to the
    Gaussian negative log-likelihood of noise scale ``sigma`` the log of its
    normaliser over the training label prior, and scales the whole by
    ``2 * sigma**2`` (held constant), so that its gradient with respect to the
    predictions has the scale of the squared error's. Predictions of rare
    targets are no longer pulled towards the frequent ones.

    Parameters
    ----------
    prior : {"bni", "gai", "bmc"}, default="bni"
        How the normaliser over the label prior is computed:

        - "bni" (bin-based numerical integration): a histogram of the training
          targets, set by :meth:`fit_prior`;
        - "gai" (Gaussian-mixture-based analytical integration): a Gaussian
          mixture fitted to the training targets by :meth:`fit_prior`;
        - "bmc" (batch-based Monte-Carlo): the targets of the batch itself;
          no :meth:`fit_prior` is needed (calling it only checks ``y``).
    noise_sigma : float, default=1.0
        Initial noise scale ``sigma`` (> 0), in the units of the targets the
        loss receives. The estimators pass standardised targets, so that 1.0
        is one standard deviation of the training targets. The computation
        clamps it to [1e-8, 1e8].
    learn_sigma : bool, default=True
        Make ``sigma`` an :class:`torch.nn.Parameter` (stored as its log,
        ``log_sigma``, so that it stays positive) that an optimizer of the
        loss's parameters trains with the network; with False it is a buffer.
    sigma_lr : None or float, default=None
        The learning rate of ``sigma`` (> 0). The estimators put the loss's
        parameters in an optimizer group of their own, without weight
        decay, at this rate; ``None``: the estimator's ``lr``. Ren et al.
        train sigma faster than the network (their default 1e-2).
    n_bins : int, default=100
        Number of equal-width bins over the range of each target for
        ``prior="bni"`` (>= 1). Empty bins are dropped.
    n_components : int, default=8
        Number of Gaussian components of each target's mixture for
        ``prior="gai"`` (>= 1); a target with fewer distinct values gets one
        component per distinct value.
    random_state : None, int or RandomState, default=None
        Seeds the initialisation of the mixture's EM (``prior="gai"``), at
        each call of :meth:`fit_prior`.
    target_weight : array-like of shape (T,), default=None
        Non-negative weight of each target (column of dimension 1).
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted element losses with the target's shape;
        "sum" their sum; "mean" their plain mean over all elements (not
        divided by the sum of the weights).

    Attributes
    ----------
    log_sigma : Tensor of shape (), dtype float32
        ``log(sigma)``: a parameter with ``learn_sigma=True``, else a buffer.
    prior_means : Tensor of shape (T, K), dtype float32
        Per target, the bin centres ("bni") or the components' means ("gai");
        a buffer, of shape (0, 0) until :meth:`fit_prior` (and for "bmc").
    prior_variances : Tensor of shape (T, K), dtype float32
        Per target, ``h**2 / 12``, the variance of a uniform bin of width
        ``h`` ("bni"), or the components' variances ("gai"); a buffer.
    prior_log_weights : Tensor of shape (T, K), dtype float32
        Per target, the log of the bins' masses or of the mixture weights,
        each row's masses summing to 1; ``-inf`` pads rows with fewer bins or
        components than ``K``. A buffer.

    See Also
    --------
    MSELoss : The squared error with sample and per-target weights.
    skweight.weighting.density_weights : Reweighting for imbalanced
        regression, the other remedy for a long tail.

    Notes
    -----
    For a prediction ``yhat`` of a target ``y`` with noise scale ``s`` the
    loss of one element is::

        l = 2 s0**2 * [ (yhat - y)**2 / (2 s**2) + log Z(yhat) ]
          = (yhat - y)**2 + 2 s0**2 * log Z(yhat)          (in value)
        Z(yhat) = integral exp(-(y' - yhat)**2 / (2 s**2)) p_train(y') dy'

    where ``s0`` is ``s`` detached from the graph: the factor carries no
    gradient, so the gradient with respect to ``s`` is that of the bracket,
    the balanced negative log-likelihood, and the gradient with respect to
    ``yhat`` is the squared error's plus the balancing term's. The Gaussian's
    normaliser ``(2 pi s**2)**(-1/2)`` would appear in both terms and cancel;
    neither has it. ``log Z`` is a ``logsumexp`` over the prior's parts:

    - "bni": bins of width ``h``, centres ``c_b`` and masses ``p_b``, the
      histogram's density ``p_b / h`` being uniform over each bin. The
      integral is exact (``Phi`` the standard normal CDF, computed in
      float64 from its log)::

          Z = sum_b p_b sqrt(2 pi) s / h
                    * [Phi((c_b + h/2 - yhat) / s) - Phi((c_b - h/2 - yhat) / s)]

      The paper puts each bin's mass at its centre, ``Z = sum_b p_b
      exp(-(yhat - c_b)**2 / (2 s**2))``. That is the same for ``s >> h``,
      but a ``sigma`` below the bin width, which a learned ``sigma`` can
      reach, makes ``log Z`` ripple between the centres, a spurious force
      towards the gaps: on a flat histogram its gradient reaches 1.7 times
      that of the squared error at a one-sigma error for ``s = h/5``, 50
      times for ``s = h/100``. Adding the bin's variance ``h**2 / 12`` to
      ``s**2`` (a Gaussian with the bin's variance) cuts this to 0.2 times
      at ``s = h/5``; the exact integral leaves none. The buffers hold
      ``h**2 / 12``, the variance of a bin's uniform spread.
    - "gai": mixture weights ``phi_k``, means ``mu_k`` and variances
      ``v_k``, fitted by weighted EM to the distinct values and their summed
      weights (beyond 2048 distinct values, to a histogram of 2048 bins, the
      bins' variance added to the components'), seeded by weighted
      k-means++, the variances floored at 1e-6 times the target's
      variance::

          Z = sum_k phi_k sqrt(s**2 / (s**2 + v_k))
                    * exp(-(yhat - mu_k)**2 / (2 (s**2 + v_k)))
    - "bmc": the batch's targets ``y_j`` with the sample weights ``w_j`` of
      the batch, normalised to sum to 1, as the prior::

          Z_i = sum_j w_j / (sum w) * exp(-(yhat_i - y_j)**2 / (2 s**2))

      that is, ``-log softmax_j(-(yhat_i - y_j)**2 / (2 s**2) + log w_j)[i]``
      up to a constant: the paper's cross-entropy over the batch, with the
      weights as log-weights in the denominator.

    Weights. With "bni" and "gai", :meth:`fit_prior` builds the prior from the
    weighted targets (weights normalised in float64, samples of weight 0
    left out, repeated values merged), and ``forward`` multiplies each
    element loss by its weight. So, exactly, as for the squared error: an
    integer weight ``k`` (in both) is ``k`` repetitions, weight 0 is leaving
    the sample out, and scaling the weights of :meth:`fit_prior` changes
    nothing (those of ``forward`` scale the loss, as for any skweight loss;
    the estimators normalise them). With "bmc" the loss of a sample depends
    on the other samples of its batch, so these rules hold exactly only
    within one batch (the whole data in one batch): over mini-batches, the
    mean loss of the weighted data and that of the repeated data differ, as
    a batch of the repeated data holds copies of one sample in place of
    other samples. The difference shrinks as batches grow; on 6 samples with
    weights (1, 3, 1, 2, 1, 1) in batches of 3 it is 7% of the mean loss and
    10% of its gradient.

    Several targets ``(N, T)``. The prior is taken as the product of one prior
    per target: ``Z`` factorises, the loss is a sum of per-target terms and
    the loss of each element ``(i, t)`` is that of target ``t`` alone, so that
    per-element and per-target weights act exactly as for the squared error.
    A joint histogram or mixture would grow exponentially with ``T`` and be
    empty almost everywhere; the product form ignores the correlation of the
    targets' imbalance. ``sigma`` is shared by all the targets (they are
    standardised alike by the estimators).

    References
    ----------
    J. Ren, M. Zhang, C. Yu and Z. Liu, "Balanced MSE for Imbalanced Visual
    Regression", CVPR 2022.

    Examples
    --------
    >>> import torch
    >>> from skweight.losses import BalancedMSELoss
    >>> y_train = torch.cat([torch.zeros(90), torch.linspace(1.0, 4.0, 10)])
    >>> loss = BalancedMSELoss(n_bins=8).fit_prior(y_train)
    >>> pred = torch.tensor([3.0, 3.0], requires_grad=True)
    >>> true = torch.tensor([3.0, 3.0])
    >>> loss(pred, true).backward()
    >>> # The squared error's gradient is 0. This one is negative: a descent
    >>> # step raises the predictions, away from the frequent targets at 0.
    >>> bool((pred.grad < 0).all())
    True
    >>> round(loss.sigma, 4)
    1.0
    """

    def __init__(
        self,
        prior="bni",
        noise_sigma=1.0,
        learn_sigma=True,
        sigma_lr=None,
        n_bins=100,
        n_components=8,
        random_state=None,
        target_weight=None,
        reduction="mean",
    ):
        super().__init__()
        if not isinstance(prior, str) or prior not in PRIORS:
            options = ", ".join(repr(p) for p in PRIORS)
            raise ValueError(f"prior must be one of {options}; got {prior!r}.")
        self.prior = prior
        self.noise_sigma = check_real(noise_sigma, "noise_sigma", low=0.0, low_open=True)
        self.learn_sigma = check_bool(learn_sigma, "learn_sigma")
        self.sigma_lr = None if sigma_lr is None else check_real(
            sigma_lr, "sigma_lr", low=0.0, low_open=True
        )
        self.n_bins = check_int(n_bins, "n_bins", low=1)
        self.n_components = check_int(n_components, "n_components", low=1)
        self.random_state = random_state
        self.reduction = check_reduction(reduction)
        self.register_buffer("target_weight", _check_target_weight(target_weight))
        log_sigma = torch.tensor(math.log(self.noise_sigma), dtype=torch.float32)
        if self.learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        for name in _PRIOR_BUFFERS:
            # Empty until fit_prior: the state_dict has the same keys
            # whether the prior is fitted or not.
            self.register_buffer(name, torch.empty(0, 0))

    @property
    def sigma(self):
        """The current noise scale ``exp(log_sigma)``, as used (clamped).

        Returns
        -------
        sigma : float
            The noise scale, in the units of the targets.
        """
        log_sigma = self.log_sigma.detach().clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX)
        return float(log_sigma.exp())

    def fit_prior(self, y, sample_weight=None):
        """Compute the label prior from the training targets.

        For ``prior="bni"`` a histogram, for ``"gai"`` a Gaussian mixture, of
        each target (column); a new call replaces the prior. For ``"bmc"``
        the batch is the prior: ``y`` and ``sample_weight`` are only checked.

        Parameters
        ----------
        y : array-like or Tensor of shape (N,) or (N, T)
            Training targets, in the units the loss will receive (the
            estimators' standardised targets). Finite; each target needs two
            distinct values among the samples of positive weight.
        sample_weight : array-like or Tensor of shape (N,) or (N, T), default=None
            Finite non-negative weights, per sample or per element (for 2-D
            ``y``), of any scale; normalised here in float64.

        Returns
        -------
        self : BalancedMSELoss
            This loss, with the prior in its buffers (on its device).
        """
        values, two_d = _targets_float64(y)
        n_samples, n_targets = values.shape
        weights = check_sample_weight(
            sample_weight, n_samples, extra_shape=(n_targets,) if two_d else None
        )
        if weights is None:
            weights = np.ones((n_samples, n_targets))
        else:
            weights = per_element(weights, values.shape)
        if self.prior == "bmc":
            return self
        if self.prior == "gai":
            # One seed for every target: a target's mixture does not depend
            # on the other targets, as with one fit per target.
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        columns = []
        for t in range(n_targets):
            distinct, mass = _column_masses(values[:, t], weights[:, t], t)
            if self.prior == "bni":
                columns.append(_histogram_prior(distinct, mass, self.n_bins))
            else:
                rng = np.random.RandomState(seed)
                columns.append(_mixture_prior(distinct, mass, self.n_components, rng))
        size = max(len(means) for means, _, _ in columns)
        # Rows with fewer bins or components are padded with entries of no
        # mass (log weight -inf), which logsumexp ignores.
        means = np.zeros((n_targets, size))
        variances = np.ones((n_targets, size))
        log_weights = np.full((n_targets, size), -np.inf)
        for t, (m, v, lw) in enumerate(columns):
            means[t, : m.size] = m
            variances[t, : m.size] = np.maximum(v, _MIN_VARIANCE)
            log_weights[t, : m.size] = lw
        device = self.log_sigma.device
        for name, value in zip(
            _PRIOR_BUFFERS, (means, variances, log_weights), strict=True
        ):
            setattr(self, name, torch.as_tensor(value, dtype=torch.float32, device=device))
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A fitted prior's buffers have their own shape (they are empty
        # before fit_prior): take the shape of those being loaded.
        for name in _PRIOR_BUFFERS:
            incoming = state_dict.get(prefix + name)
            current = self._buffers[name]
            if incoming is not None and incoming.shape != current.shape:
                self._buffers[name] = torch.empty(
                    incoming.shape, dtype=current.dtype, device=current.device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _loss(self, input, target, sample_weight, check_values):
        _check_pair(input, target)
        if input.ndim > 2:
            raise ValueError(
                f"BalancedMSELoss takes input and target of shape (N,) or (N, T); "
                f"got shape {tuple(input.shape)}."
            )
        dtype = compute_dtype(input)
        x = input.to(dtype)
        t = target.to(device=x.device, dtype=dtype)
        n_samples = x.shape[0]
        x2, t2 = x.reshape(n_samples, -1), t.reshape(n_samples, -1)

        weight = None
        if sample_weight is not None:
            weight = sample_weight_view(sample_weight, t, dtype)
            if check_values and bool((~(weight >= 0) | torch.isinf(weight)).any()):
                raise ValueError(
                    SAMPLE_WEIGHT_VALUES_MESSAGE.format(name="sample_weight") + "."
                )

        log_sigma = self.log_sigma.to(dtype).clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX)
        fixed = log_sigma.detach()
        # Equal to 1, with the gradient of s0**2 / s**2 with respect to s: the
        # likelihood term is the plain squared error in value.
        ratio = torch.exp(2 * (fixed - log_sigma))
        loss = (x2 - t2).square() * ratio
        if self.prior == "bmc":
            log_z = self._batch_log_partition(x2, t2, weight, log_sigma)
        else:
            log_z = self._prior_log_partition(x2, log_sigma)
        loss = (loss + 2 * torch.exp(2 * fixed) * log_z).reshape(x.shape)

        if self.target_weight is not None:
            n_targets = t2.shape[1]
            if self.target_weight.numel() != n_targets:
                raise ValueError(
                    f"target_weight has {self.target_weight.numel()} entries but the "
                    f"target has {n_targets} column(s) (dimension 1); expected one "
                    f"weight per target."
                )
            tw = self.target_weight.to(device=x.device, dtype=dtype)
            weight = tw if weight is None else weight * tw
        if weight is not None:
            loss = loss * weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.mean()

    def _prior_log_partition(self, x2, log_sigma):
        """``log Z`` of predictions (N, T) under the fitted per-target prior."""
        means = self.prior_means
        if means.numel() == 0:
            raise NotFittedError(
                f"BalancedMSELoss(prior={self.prior!r}) has no label prior yet: call "
                f"fit_prior(y_train, sample_weight) before computing the loss."
            )
        n_targets = x2.shape[1]
        if means.shape[0] != n_targets:
            raise ValueError(
                f"The label prior was fitted on {means.shape[0]} target(s) but the "
                f"target has {n_targets} column(s); call fit_prior with targets of "
                f"the same shape."
            )
        partition = _bins_log_partition if self.prior == "bni" else _mixture_log_partition
        return partition(x2, log_sigma, means, self.prior_variances, self.prior_log_weights)

    @staticmethod
    def _batch_log_partition(x2, t2, weight, log_sigma):
        """``log Z`` of predictions (N, T) with the batch's targets as the prior."""
        n_samples, n_targets = x2.shape
        if weight is None:
            log_mass = torch.full_like(t2, -math.log(n_samples))
        else:
            w = weight.reshape(n_samples, -1).expand(n_samples, n_targets)
            total = w.sum(dim=0, keepdim=True)
            # A target whose batch weights are all 0 contributes 0 to the
            # loss; uniform masses keep its (discarded) terms finite.
            safe_total = total.clamp_min(torch.finfo(w.dtype).tiny)
            mass = torch.where(total > 0, w / safe_total, 1.0 / n_samples)
            log_mass = torch.log(mass)  # -inf for weight 0: no part in Z
        # (prediction i, batch target j, target t)
        sq = (x2.unsqueeze(1) - t2.unsqueeze(0)).square()
        terms = log_mass.unsqueeze(0) - sq / (2 * torch.exp(2 * log_sigma))
        return torch.logsumexp(terms, dim=1)

    def extra_repr(self):
        """Return the settings shown in the loss's repr (torch's hook).

        Returns
        -------
        str
            The settings, as ``name=value`` pairs.
        """
        tw = self.target_weight
        value = None if tw is None else [round(w, 4) for w in tw.tolist()]
        fitted = tuple(self.prior_means.shape) if self.prior_means.numel() else None
        return (
            f"prior={self.prior!r}, sigma={self.sigma:.4g}, "
            f"learn_sigma={self.learn_sigma}, n_bins={self.n_bins}, "
            f"n_components={self.n_components}, prior_shape={fitted}, "
            f"target_weight={value}, reduction={self.reduction!r}"
        )
