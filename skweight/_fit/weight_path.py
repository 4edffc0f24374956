"""The weight path of ``fit``: split, resample, fold and normalise, once.

Plain functions that take what they need and return what they make; the
fit template (:meth:`skweight._fit.base.BaseCNN._training_data`) calls them
in this order:

1. :func:`split_validation` holds out the validation split (seeded,
   stratified by label where the targets allow it);
2. the estimator's ``_resample`` says which rows are served per epoch
   (:class:`Served`; :mod:`skweight._fit.sampling` for a classifier's
   ``sampler=``);
3. the target object learns the class weights from the rows served;
4. :func:`weigh` folds ``sample_weight x class_weight[y] x mask`` into one
   weight per element (:func:`fold_weights`) and normalises it to mean 1
   over the rows served, in float64, before the one cast to float32, for
   the training and the validation split alike (a chunk of rows at a time:
   masks' weights are as many as their pixels).

A mini-batch mean of ``w_i l_i`` is then an unbiased estimate of the
objective ``sum_i w_i l_i / sum_i w_i``, and weights spanning 1e-100..1
survive the cast to float32.
"""

import numbers
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from .._validation import per_element
from ..weighting import ESS_WARN_FRACTION
from .loader import ArrayDataset, LazyImageDataset

__all__ = [
    "Served",
    "TrainingPhase",
    "fold_weights",
    "iterative_split",
    "split_validation",
    "warn_if_small_ess",
    "weigh",
]


class Served(NamedTuple):
    """The training rows served per epoch.

    ``epoch_rows`` draws each epoch's rows (None: every row once) and
    ``counts`` says how often each row is served per epoch (None: once).
    """

    dataset: object
    epoch_rows: object = None
    counts: object = None


class TrainingPhase(NamedTuple):
    """What the network trains on from ``start_epoch`` on.

    ``start_epoch`` is 1-based, counted over the whole history.
    """

    start_epoch: int
    dataset: object
    epoch_rows: object  # None, or a callable drawing each epoch's rows
    class_prior: object  # None, or the class distribution the loss sees
    stage: object = None  # None, or the decoupled recipe of this phase ("crt", "lws")


def split_validation(dataset, train_split, *, seed, stratify, split_params):
    """Hold out the validation split.

    Parameters
    ----------
    dataset : ArrayDataset or LazyImageDataset
    train_split : None, float or callable
        The estimator's parameter: None (no validation), a fraction, or a
        skorch-style splitter ``train_split(dataset, y, **split_params)``.
    seed : int
    stratify : None or ndarray
        Labels to stratify a fractional split by: ``(N,)`` class labels, or
        an ``(N, C)`` multi-label indicator (:func:`iterative_split`).
    split_params : dict
        Passed to a callable splitter.

    Returns
    -------
    train, valid : datasets (``valid`` may be None)
    """
    if train_split is None:
        return dataset, None
    if isinstance(train_split, numbers.Real) and stratify is not None and (
        np.ndim(stratify) == 2
    ):
        train_idx, valid_idx = iterative_split(stratify, train_split, seed)
        return dataset.take(train_idx), dataset.take(valid_idx)
    if isinstance(train_split, numbers.Real):
        index = np.arange(len(dataset))
        try:
            train_idx, valid_idx = train_test_split(
                index, test_size=train_split, stratify=stratify, random_state=seed,
            )
        except ValueError:
            if stratify is None:
                raise
            warnings.warn(
                "A class has too few samples to stratify the validation "
                "split; splitting without stratification.", UserWarning,
            )
            train_idx, valid_idx = train_test_split(
                index, test_size=train_split, random_state=seed,
            )
        return dataset.take(train_idx), dataset.take(valid_idx)
    train, valid = train_split(dataset, stratify, **split_params)
    return _as_dataset(train), None if valid is None else _as_dataset(valid)


def iterative_split(Y, test_size, seed):
    """Split multi-label samples so that every label keeps its share in both parts.

    Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011): the
    label with the fewest positives left is placed first, each of its
    samples going to the part that lacks that label most (ties: the part
    that lacks samples most, then at random); samples without any label
    fill the parts up to their sizes.

    Parameters
    ----------
    Y : ndarray of shape (N, C)
        The 0/1 label indicator.
    test_size : float
        The fraction held out, in (0, 1).
    seed : int

    Returns
    -------
    train_idx, test_idx : ndarray of int64
        Sorted row numbers.
    """
    rng = np.random.default_rng(seed)
    Y = np.asarray(Y) > 0
    n = len(Y)
    n_test = int(np.ceil(test_size * n))
    ratios = np.array([1.0 - n_test / n, n_test / n])
    wanted = ratios * n  # samples each part still lacks
    wanted_label = np.outer(ratios, Y.sum(axis=0))  # positives each part lacks
    part = np.full(n, -1)
    left = Y.copy()
    while left.any():
        counts = left.sum(axis=0).astype(float)
        counts[counts == 0] = np.inf
        label = rng.choice(np.flatnonzero(counts == counts.min()))
        for i in rng.permutation(np.flatnonzero(left[:, label])):
            need = wanted_label[:, label]
            best = np.flatnonzero(need == need.max())
            if len(best) > 1:
                best = best[wanted[best] == wanted[best].max()]
            chosen = rng.choice(best)
            part[i] = chosen
            wanted[chosen] -= 1
            wanted_label[chosen] -= Y[i]
            left[i] = False
    for i in rng.permutation(np.flatnonzero(part < 0)):
        best = np.flatnonzero(wanted == wanted.max())
        chosen = rng.choice(best)
        part[i] = chosen
        wanted[chosen] -= 1
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1)


def _as_dataset(ds):
    """Turn a ``Subset`` of an internal dataset (skorch's ValidSplit) back into one."""
    if isinstance(ds, (ArrayDataset, LazyImageDataset)):
        return ds
    if isinstance(ds, torch.utils.data.Subset) and isinstance(
        ds.dataset, (ArrayDataset, LazyImageDataset)
    ):
        return ds.dataset.take(np.asarray(ds.indices))
    return ds


# Elements per chunk of rows when a split's weights are folded: a stack of
# masks then has no float64 weight array of its own size (8 bytes a pixel,
# 24 at the peak of normalising one), only the float32 result.
_WEIGH_CHUNK = 2**20


def weigh(dataset, class_weight, counts, *, training, unit, sources):
    """Fold, check and normalise a split's weights (float32, mean 1).

    The weights are folded (:func:`fold_weights`' product, on factors
    scaled once for the whole split) and normalised in float64 a chunk of
    rows at a time: a pass for their maximum, one for their sums, one for
    the float32 result. The numbers are those of the whole array's, up to
    the order of summation.

    Parameters
    ----------
    dataset : ArrayDataset or LazyImageDataset
        Encoded targets, the validated sample weights and the mask.
    class_weight : None or ndarray of shape (n_classes,)
    counts : None or ndarray of shape (N,)
        How often each row is served per epoch.
    training : bool
        The training split (else the validation split), for messages and
        the effective-sample-size warning.
    unit : str
        What one sample is ("sample", "image"), for messages.
    sources : str
        Where weights come from besides ``sample_weight``, for messages.

    Returns
    -------
    dataset : the same rows with normalised float32 weights (or None)
    """
    sw = None if dataset.weight is None else dataset.weight.numpy()
    mask = None if dataset.mask is None else dataset.mask.numpy()
    target = dataset.target.numpy() if class_weight is not None else None
    if sw is None and class_weight is None and mask is None:
        return dataset.with_weight(None)
    sw = None if sw is None else _scaled_to_max(sw)
    cw = None if class_weight is None else _scaled_to_max(class_weight)
    shape = np.shape(sw) if target is None and mask is None else (
        np.shape(target) if target is not None else np.shape(mask))
    step = max(1, _WEIGH_CHUNK // max(1, int(np.prod(shape[1:]))))
    chunks = [slice(i, i + step) for i in range(0, shape[0], step)]

    def folded(rows):
        w = _product(None if target is None else target[rows],
                     None if sw is None else sw[rows], cw,
                     None if mask is None else mask[rows])
        served = None if counts is None else per_element(counts[rows], w.shape)
        return w, served

    top, any_served = 0.0, False
    for rows in chunks:
        w, served = folded(rows)
        top = max(top, float(w.max(initial=0.0)))
        any_served = any_served or bool(np.any(w > 0 if served is None
                                               else w * served > 0))
    what = weighted_what(len(shape), unit)
    if not any_served:
        split = "training" if training else "validation"
        raise ValueError(
            f"Every {split} {what[:-1]} has weight 0 (after sample_weight{sources}); "
            f"there is nothing to {'learn from' if training else 'validate on'}."
        )
    # Divided by the maximum first: sums stay finite and out of the
    # subnormal range whatever the weights' scale.
    total = squares = n_served = 0.0
    for rows in chunks:
        w, served = folded(rows)
        w /= top
        if served is None:
            total += w.sum()
            squares += np.vdot(w, w)
            n_served += w.size
        else:
            total += np.sum(served * w)
            squares += np.sum(served * w * w)
            n_served += np.sum(served)
    if training:
        warn_if_small_ess(total**2 / squares, n_served, what)
    mean = total / n_served
    out = np.empty(shape, dtype=np.float32)
    for rows in chunks:
        w, _ = folded(rows)
        w /= top
        w /= mean
        out[rows] = w
    return dataset.with_weight(torch.from_numpy(out))


def weighted_what(ndim, unit):
    """Name what weights of ``ndim`` axes are attached to, plural, for messages."""
    if unit.endswith("label"):
        return unit + "s"
    if ndim > 1:
        return "pixels" if ndim == 3 else "voxels"
    return unit + "s"


def _scaled_to_max(weights):
    """Divide weights by their maximum.

    The same ratios, with no overflow in sums and no need for their unit
    (1e-300 and 1e300 scales alike).
    """
    w = np.asarray(weights, dtype=np.float64)
    top = w.max() if w.size else 0.0
    return w / top if top > 0 else w


def fold_weights(y, sample_weight=None, class_weight=None, mask=None):
    """Return the weight of every element the loss sees, or None if all are 1.

    ``w = sample_weight * class_weight[y] * mask``, each factor optional.
    This is the one place where weights are combined; it runs once, on the
    rows a network is trained (or validated) on.

    Parameters
    ----------
    y : ndarray of int or None
        Encoded labels ``(N,)`` or ``(N, *spatial)``; only needed with
        ``class_weight``, and its shape with ``mask``.
    sample_weight : None or ndarray
        ``(N,)`` or ``y``'s shape, non-negative.
    class_weight : None or ndarray of shape (n_classes,) or (n_labels, 2)
        Per class; or, for multi-label 0/1 targets ``(N, C, ...)``, the
        weights of each label's negatives and positives.
    mask : None or ndarray of bool
        ``y``'s shape; False marks elements that neither teach nor count
        (e.g. ``ignore_index`` pixels).

    Returns
    -------
    weights : None or ndarray of dtype float64
        ``(N,)`` when only per-sample weights are given, else ``y``'s shape.
        Every factor is divided by its maximum first, so that the product
        neither overflows nor underflows for factors of any scale.
    """
    if class_weight is None and mask is None:
        return None if sample_weight is None else _scaled_to_max(sample_weight)
    return _product(
        y, None if sample_weight is None else _scaled_to_max(sample_weight),
        None if class_weight is None else _scaled_to_max(class_weight), mask,
    )


def _product(y, sample_weight, class_weight, mask):
    """``sample_weight x class_weight[y] x mask`` (float64), on scaled factors.

    The elements are those of ``y`` (else of ``mask``, else of
    ``sample_weight``), which may be a chunk of a split's rows. Factors
    multiply in place into the first one built.
    """
    shape = next(np.shape(a) for a in (y, mask, sample_weight) if a is not None)
    w = None if sample_weight is None else np.array(per_element(sample_weight, shape))
    if class_weight is not None:
        if class_weight.ndim == 2:
            # Per label (multi-label y): row c holds label c's weights of its
            # negatives and positives, and y's axis 1 runs over the labels.
            label = np.arange(len(class_weight)).reshape(
                (1, -1) + (1,) * (np.ndim(y) - 2))
            per_class = class_weight[label, y]
        else:
            per_class = class_weight[y]
        w = per_class if w is None else np.multiply(w, per_class, out=w)
    if mask is not None:
        w = mask.astype(np.float64) if w is None else np.multiply(w, mask, out=w)
    return w


def warn_if_small_ess(ess, n, what="samples"):
    """Warn when the effective sample size is below ``ESS_WARN_FRACTION * n``.

    Parameters
    ----------
    ess : float
        Kish's effective sample size of the training weights, ``(sum w)^2
        / sum w^2`` (each row counted as often as it is served).
    n : float
        The number of weighted elements (rows served, times their elements).
    what : str
        What the weights are attached to, for the message.
    """
    if ess < ESS_WARN_FRACTION * n:
        warnings.warn(
            f"The effective sample size of the training weights, "
            f"(sum w)^2 / sum w^2 = {ess:.3g}, is below "
            f"{ESS_WARN_FRACTION:.0%} of the {round(n)} weighted {what}: a few heavy "
            f"{what} dominate the objective and mini-batch gradients are "
            f"noisy. Consider flattening the weights (e.g. a power < 1 or a "
            f"log transform), larger batches, or more data.",
            UserWarning,
            stacklevel=2,
        )
