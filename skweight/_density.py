"""Sample weights from the density of regression targets (imbalanced regression).

Rare target values are learned badly for the same reason rare classes are:
they contribute little to the training objective. :func:`density_weights`
gives each sample a weight that grows as the smoothed density of its target
falls, the regression analogue of ``class_weight="balanced"``.
"""

import math
import numbers

import numpy as np

from ._validation import check_real, check_sample_weight

__all__ = ["density_weights"]

#: Up to this many samples the kernel density is summed exactly over all
#: pairs (about 0.3 s at the limit on one core); above it, single-target
#: densities come from a fine grid, 1000 times faster at 20000 samples and
#: within a few 1e-5 (relative) of the exact weights.
EXACT_MAX_SAMPLES = 5_000

#: Kernel evaluations per block of the exact sum: 2**18 float64 values are
#: 2 MiB, which bounds the memory and stays in cache.
_BLOCK_PAIRS = 2**18

#: Grid steps per bandwidth for the binned density: linear binning and
#: linear interpolation both err by O((step / bandwidth)**2), ~5e-6 here.
_GRID_STEPS_PER_BANDWIDTH = 200

#: Most grid points the binned density may use (32 MiB of float64).
_GRID_MAX_POINTS = 2**22

#: Beyond this many bandwidths the Gaussian kernel is below 1e-17 of its
#: peak: sqrt(2 * ln(1e17)) = 8.85.
_KERNEL_REACH = 8.85

_BANDWIDTH_RULES = ("scott", "silverman")


def density_weights(y, *, alpha=0.5, bandwidth="scott", clip=None, sample_weight=None):
    r"""Sample weights inversely proportional to the smoothed density of ``y``.

    Each sample gets ``w_i = (p(y_i) / mean_p) ** (-alpha)``, where ``p`` is
    a Gaussian kernel density estimate of the targets; the weights are then
    clipped and scaled to mean 1. Rare targets weigh more, frequent ones
    less: the regression analogue of ``class_weight="balanced"``.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Finite real targets, at least 2 samples. Several targets give one
        weight per sample, from their joint density.
    alpha : float, default=0.5
        Strength, ``>= 0``. ``alpha=0`` gives all ones; ``alpha=1`` weights
        by the inverse density, so that the weighted targets are spread
        roughly uniformly over their range; ``alpha=0.5`` is the milder
        inverse square root.
    bandwidth : {"scott", "silverman"} or float, default="scott"
        Width of the Gaussian kernel, in units of each target's standard
        deviation, so that the weights do not depend on the targets' unit.
        ``"scott"`` is ``n ** (-1 / (d + 4))`` and ``"silverman"`` is
        ``(n * (d + 2) / 4) ** (-1 / (d + 4))``, where ``d`` is the number
        of non-constant targets and ``n`` the effective sample size
        ``(sum s) ** 2 / sum s ** 2`` of ``sample_weight`` (the number of
        samples without it): Scott's and Silverman's rules of thumb [3]_,
        with the factors of :class:`scipy.stats.gaussian_kde`. A float must
        be ``> 0``; larger values smooth more and give flatter weights.
    clip : None or tuple (lower, upper), default=None
        Bounds on the final weights, as multiples of their mean (which is
        1): ``0 <= lower <= 1 <= upper``; either may be None for no bound.
        The weights are scaled so that they have mean 1 *after* clipping,
        so the bounds hold exactly in the result (see Notes).
    sample_weight : None or array-like of shape (n_samples,), default=None
        Existing non-negative importance weights. They weight each sample's
        contribution to the density and the mean that the result is scaled
        to; a sample of weight 0 shapes nothing but still gets a weight.
        They are *not* part of the result: pass
        ``sample_weight * density_weights(y, sample_weight=sample_weight)``
        to ``fit`` to use both.

    Returns
    -------
    weights : ndarray of shape (n_samples,), dtype float64
        Positive weights with mean 1 (weighted by ``sample_weight`` when
        given), within ``clip``. All ones when ``alpha=0`` or ``y`` is
        constant.

    Raises
    ------
    ValueError
        For invalid arguments, or when a sample of weight 0 lies so far from
        every weighted sample that its density underflows and its weight is
        infinite; an upper ``clip`` bound avoids this.

    Notes
    -----
    **Density.** The targets are standardised (each column centred and
    divided by its standard deviation, weighted by ``sample_weight``;
    constant columns are dropped) to ``z``, and the density at sample ``j``
    is the Gaussian kernel sum

    .. math:: p_j = \sum_i s_i \exp(-\lVert z_j - z_i \rVert^2 / (2 h^2)),

    a product kernel with one bandwidth ``h`` for all standardised targets.
    The sum includes ``i = j``: as in label distribution smoothing [1]_, the
    density is the empirical distribution of the labels convolved with the
    kernel. Because ``h`` is in units of the standard deviation, the weights
    are the same in any unit (metres or nanometres, 1e-20 or 1e200) and
    under any shift of the targets. Up to 5000 samples the sum is exact;
    above that, a single target's density is computed on a grid of
    ``h / 200`` steps (linear binning, convolution by FFT, linear
    interpolation), which changes the weights by at most a few 1e-5
    (relative) and takes well under a second for a million samples.
    Several targets always use the exact sum, in blocks that bound the
    memory but whose time grows as ``n_samples ** 2`` (about 5 s for 20000
    samples on one core).

    **Weights.** ``u_j = (p_j / mean_s(p)) ** (-alpha)``, the power form of
    the inverse (``alpha=1``) and inverse square root (``alpha=0.5``)
    reweighting of Yang et al. [1]_, here on a kernel density estimate with
    a unit-free bandwidth rather than on a histogram of fixed bins, as
    DenseWeight [2]_ does. DenseWeight's own form
    ``max(1 - alpha * p'_j, eps)``, with ``p'`` the density rescaled to
    [0, 1] by its minimum and maximum over the samples, was not chosen:
    through that rescaling every weight depends on the smallest and the
    largest density among the samples, the noisiest values of the
    estimate, and for ``alpha >= 1`` the ratio of the largest weight to the
    smallest is ``1 / eps``, set by ``eps`` rather than by the data. The
    power form has no such reference points, gives exactly 1
    at ``alpha=0``, composes (the weights for ``alpha=a + b`` are the
    product of those for ``a`` and ``b``, up to scale) and, at ``alpha=1``,
    makes the weighted targets close to uniform over their range.

    **Clipping and scale.** The result is
    ``w_j = min(max(c * u_j, lower), upper)`` with the one scale ``c`` that
    makes ``sum_j s_j w_j / sum_j s_j = 1`` (``s = 1`` without
    ``sample_weight``). Clipping first and rescaling after would move the
    weights off the bounds again; solving for ``c`` keeps both the bounds
    and the mean exact (to rounding). Since the mean is weighted by
    ``sample_weight``, an integer weight ``k`` is the same as repeating the
    sample ``k`` times, for a float ``bandwidth`` (the rules' ``n`` is the
    scale-free effective sample size, which repetition changes).

    All the arithmetic is float64; the caller's arrays are not modified.

    References
    ----------
    .. [1] Y. Yang, K. Zha, Y.-C. Chen, H. Wang and D. Katabi, "Delving into
       Deep Imbalanced Regression", ICML 2021, PMLR 139, pp. 11842-11851.
    .. [2] M. Steininger, K. Kobs, P. Davidson, A. Krause and A. Hotho,
       "Density-based weighting for imbalanced regression", Machine
       Learning 110, pp. 2187-2211, 2021.
    .. [3] D. W. Scott, "Multivariate Density Estimation", Wiley, 1992;
       B. W. Silverman, "Density Estimation for Statistics and Data
       Analysis", Chapman and Hall, 1986.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.weighting import density_weights
    >>> y = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 2.0])
    >>> w = density_weights(y, alpha=1.0)
    >>> np.round(w, 2)
    array([0.66, 0.63, 0.61, 0.62, 1.23, 2.25])
    >>> round(float(w.mean()), 12)
    1.0
    >>> np.round(density_weights(y, alpha=1.0, clip=(None, 2.0)), 2)
    array([0.7 , 0.67, 0.65, 0.66, 1.31, 2.  ])
    """
    y = _check_targets(y)
    n_samples = y.shape[0]
    alpha = check_real(alpha, "alpha", low=0)
    bandwidth = _check_bandwidth(bandwidth)
    lower, upper = _check_clip(clip)
    s = check_sample_weight(sample_weight, n_samples)
    s = np.ones(n_samples) if s is None else s / s.max()

    ones = np.ones(n_samples)
    if alpha == 0:
        return ones
    z = _standardize(y, s)
    if z.shape[1] == 0:  # constant targets: every sample is equally common
        return ones
    h = _bandwidth_factor(bandwidth, s, z.shape[1])
    # Overflow or underflow only comes from extreme bandwidths or far
    # zero-weight samples, both reported below with their cause.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_u = -alpha * np.log(_kernel_density(z, s, h))
    weights = _scale_to_mean_one(log_u, s, lower, upper)
    bad = ~np.isfinite(weights)
    if np.any(bad & (s > 0)):
        raise ValueError(
            f"bandwidth={bandwidth!r} is too extreme for the kernel density to be "
            f"evaluated in float64; use a bandwidth nearer 1 (the targets' standard "
            f"deviation)."
        )
    if np.any(bad):
        raise ValueError(
            f"density_weights: the samples at indices {np.flatnonzero(bad)[:10].tolist()} "
            f"have sample_weight 0 and lie so far from every weighted sample that "
            f"their density underflows to 0 and their weight is infinite; pass "
            f"clip=(lower, upper) with a finite upper bound."
        )
    return weights


def _check_targets(y):
    """Return ``y`` as a new float64 array of shape (n_samples, n_targets)."""
    if hasattr(y, "detach"):  # torch tensor
        y = y.detach().cpu().numpy()
    array = np.asarray(y)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(
            f"y must be an array of real numbers (the regression targets), got dtype "
            f"{array.dtype}."
        )
    if array.ndim not in (1, 2):
        raise ValueError(
            f"y must have shape (n_samples,) or (n_samples, n_targets), got shape "
            f"{array.shape}."
        )
    y = np.array(array, dtype=np.float64).reshape(array.shape[0], -1)
    if y.shape[0] < 2 or y.shape[1] == 0:
        raise ValueError(
            f"y must have at least 2 samples and 1 target to have a density, got "
            f"shape {array.shape}."
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity; targets must be finite.")
    return y


def _check_bandwidth(bandwidth):
    if isinstance(bandwidth, str):
        if bandwidth not in _BANDWIDTH_RULES:
            raise ValueError(
                f"bandwidth must be 'scott', 'silverman' or a float > 0 (in units of "
                f"the targets' standard deviation), got {bandwidth!r}."
            )
        return bandwidth
    return check_real(bandwidth, "bandwidth", low=0, low_open=True)


def _check_clip(clip):
    """Return ``(lower, upper)`` with 0 and inf standing for no bound."""
    if clip is None:
        return 0.0, math.inf
    if isinstance(clip, (str, bytes)) or not hasattr(clip, "__len__") or len(clip) != 2:
        raise ValueError(
            f"clip must be None or a pair (lower, upper) of multiples of the mean "
            f"weight, got {clip!r}."
        )
    lower, upper = clip
    lower = 0.0 if lower is None else check_real(lower, "clip[0] (lower)", low=0, high=1)
    if upper is None:
        return lower, math.inf
    if isinstance(upper, numbers.Real) and upper == math.inf:
        return lower, math.inf
    # The weights have mean 1, so the bounds must bracket it.
    return lower, check_real(upper, "clip[1] (upper)", low=1)


def _standardize(y, s):
    """Centre and scale each non-constant column by its weighted mean and std.

    Parameters
    ----------
    y : ndarray of shape (n_samples, n_targets)
    s : ndarray of shape (n_samples,)
        Non-negative weights, the largest 1.

    Returns
    -------
    z : ndarray of shape (n_samples, n_varying)
        The columns that are not constant, standardised.
    """
    y = y[:, np.ptp(y, axis=0) > 0]
    if y.shape[1] == 0:
        return y
    # Scaling by a power of two is exact and brings |y| below 1, so that the
    # squares below neither overflow (1e200) nor underflow (1e-200).
    _, exponents = np.frexp(np.abs(y).max(axis=0))
    z = np.ldexp(y, -exponents)
    z -= (s @ z) / s.sum()
    std = np.sqrt((s @ z**2) / s.sum())
    # All the weight on one value: the weighted spread is 0, but the targets
    # of zero-weight samples still differ; their own spread sets the scale.
    degenerate = std == 0
    if np.any(degenerate):
        std[degenerate] = np.std(z[:, degenerate], axis=0)
    return z / std


def _bandwidth_factor(bandwidth, s, n_dims):
    """Return the kernel's standard deviation in units of the targets' ones."""
    if not isinstance(bandwidth, str):
        return bandwidth
    n_eff = s.sum() ** 2 / np.dot(s, s)
    if bandwidth == "scott":
        return n_eff ** (-1.0 / (n_dims + 4))
    return (n_eff * (n_dims + 2) / 4.0) ** (-1.0 / (n_dims + 4))


def _kernel_density(z, s, h):
    """Unnormalised Gaussian kernel density of the weighted ``z`` at each sample."""
    if z.shape[0] > EXACT_MAX_SAMPLES and z.shape[1] == 1:
        return _binned_density(z[:, 0], s, h)
    return _exact_density(z, s, h)


def _exact_density(z, s, h):
    """``p_j = sum_i s_i exp(-|z_j - z_i|^2 / (2 h^2))``, in blocks of rows."""
    n_samples = z.shape[0]
    rows = max(1, _BLOCK_PAIRS // n_samples)
    # Scaling by h * sqrt(2) makes the exponent a plain negated squared distance.
    scaled = z / (h * math.sqrt(2.0))
    density = np.empty(n_samples)
    for start in range(0, n_samples, rows):
        block = scaled[start:start + rows]
        sq = np.subtract.outer(block[:, 0], scaled[:, 0])
        sq *= sq
        for col in range(1, z.shape[1]):
            diff = np.subtract.outer(block[:, col], scaled[:, col])
            diff *= diff
            sq += diff
        np.negative(sq, out=sq)
        np.exp(sq, out=sq)
        density[start:start + rows] = sq @ s
    return density


def _binned_density(z, s, h):
    """Single-target kernel density on a fine grid, interpolated at the samples.

    The weights are spread linearly onto a regular grid, convolved with the
    sampled kernel (by FFT) and read back by linear interpolation; both steps
    err by O((step / h) ** 2).
    """
    from scipy.signal import fftconvolve

    low, span = z.min(), np.ptp(z)
    step = max(h / _GRID_STEPS_PER_BANDWIDTH, span / (_GRID_MAX_POINTS - 1))
    n_points = int(math.ceil(span / step)) + 2
    position = (z - low) / step
    left = np.minimum(np.floor(position).astype(np.int64), n_points - 2)
    frac = position - left
    grid = np.bincount(left, s * (1.0 - frac), minlength=n_points)
    grid += np.bincount(left + 1, s * frac, minlength=n_points)
    reach = int(math.ceil(_KERNEL_REACH * h / step))
    offsets = np.arange(-reach, reach + 1) * (step / h)
    kernel = np.exp(-0.5 * offsets**2)
    smooth = fftconvolve(grid, kernel, mode="same")
    # The FFT leaves round-off of about 1e-16 of the largest value, which may
    # be negative where the density is 0.
    np.maximum(smooth, 0.0, out=smooth)
    return (1.0 - frac) * smooth[left] + frac * smooth[left + 1]


def _scale_to_mean_one(log_u, s, lower, upper):
    """``clip(c * exp(log_u), lower, upper)`` with the ``c`` giving weighted mean 1.

    Parameters
    ----------
    log_u : ndarray of shape (n_samples,)
        Log raw weights; ``+inf`` is allowed where ``s == 0``.
    s : ndarray of shape (n_samples,)
        Non-negative weights of the mean, the largest 1.
    lower, upper : float
        ``0 <= lower <= 1 <= upper <= inf``.

    Returns
    -------
    weights : ndarray of shape (n_samples,)
    """
    counted = s > 0
    # Dividing by the largest counted weight in log space first keeps every
    # counted weight in (0, 1], whatever alpha is.
    u = np.exp(log_u - log_u[counted].max())
    v, sv = u[counted], s[counted]
    c = sv.sum() / np.dot(sv, v)
    if lower > 0 or upper < math.inf:
        c = _clip_scale(v, sv, lower, upper)
    return np.clip(c * u, lower, upper)


def _clip_scale(v, sv, lower, upper):
    """Solve ``sum(sv * clip(c * v, lower, upper)) = sum(sv)`` for ``c > 0``.

    The left side is continuous and non-decreasing in ``c``, and linear
    between the breakpoints ``lower / v_i`` and ``upper / v_i``, where a
    weight reaches a bound. The breakpoint interval holding the solution is
    found by evaluating the side at every breakpoint (sorted ``v`` and
    cumulative sums make each evaluation O(log n)); inside it, the set of
    clipped weights is fixed and ``c`` solves a linear equation.
    """
    order = np.argsort(v)
    v, sv = v[order], sv[order]
    total = sv.sum()
    cum_s = np.concatenate([[0.0], np.cumsum(sv)])
    cum_sv = np.concatenate([[0.0], np.cumsum(sv * v)])

    def partition(c):
        # Counted weights at or below the lower bound, and from the upper one.
        n_low = np.searchsorted(v, lower / c, side="right")
        n_high = np.searchsorted(v, upper / c, side="left")
        n_high = np.maximum(n_high, n_low)
        return n_low, n_high

    def fixed_mass(n_low, n_high):
        # The weighted sum of the clipped weights; no finite weight reaches
        # an infinite upper bound.
        high = 0.0 if math.isinf(upper) else upper * (total - cum_s[n_high])
        return lower * cum_s[n_low] + high

    def excess(c):
        n_low, n_high = partition(c)
        return fixed_mass(n_low, n_high) + c * (cum_sv[n_high] - cum_sv[n_low]) - total

    with np.errstate(divide="ignore"):
        breaks = np.concatenate([lower / v, upper / v])
    breaks = np.unique(breaks[np.isfinite(breaks) & (breaks > 0)])
    if breaks.size == 0:  # no bound can be reached
        return total / cum_sv[-1]
    values = excess(breaks)
    k = int(np.searchsorted(values, 0.0, side="left"))
    if k < breaks.size and values[k] == 0:
        return breaks[k]
    # The root lies between breaks[k - 1] and breaks[k] (0 and inf at the ends).
    if k == 0:
        probe = breaks[0] / 2
    elif k == breaks.size:
        probe = breaks[-1] * 2
    else:
        probe = 0.5 * (breaks[k - 1] + breaks[k])
    n_low, n_high = partition(probe)
    mid = cum_sv[n_high] - cum_sv[n_low]
    if mid == 0:  # every weight at a bound: the side is flat, probe solves it
        return probe
    return (total - fixed_mass(n_low, n_high)) / mid
