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
   over the rows served, in float64 (:func:`normalize_weights`), before the
   one cast to float32, for the training and the validation split alike.

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
from ..weighting import ESS_WARN_FRACTION, effective_sample_size
from .loader import ArrayDataset, LazyImageDataset

__all__ = [
    "Served",
    "TrainingPhase",
    "fold_weights",
    "iterative_split",
    "normalize_weights",
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


def weigh(dataset, class_weight, counts, *, training, unit, sources):
    """Fold, check and normalise a split's weights (float32, mean 1).

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
    w = None if dataset.weight is None else dataset.weight.numpy()
    mask = None if dataset.mask is None else dataset.mask.numpy()
    target = dataset.target.numpy() if class_weight is not None else None
    w = fold_weights(target, w, class_weight, mask)
    if w is None:
        return dataset.with_weight(None)
    served = w if counts is None else w * per_element(counts, w.shape)
    what = weighted_what(w, unit)
    if not np.any(served > 0):
        split = "training" if training else "validation"
        raise ValueError(
            f"Every {split} {what[:-1]} has weight 0 (after sample_weight{sources}); "
            f"there is nothing to {'learn from' if training else 'validate on'}."
        )
    if training:
        warn_if_small_ess(w, what, counts)
    w = normalize_weights(w, counts)
    return dataset.with_weight(torch.from_numpy(w.astype(np.float32)))


def weighted_what(weights, unit):
    """Name what the weights are attached to, plural, for messages."""
    if unit.endswith("label"):
        return unit + "s"
    if np.ndim(weights) > 1:
        return "pixels" if np.ndim(weights) == 3 else "voxels"
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
    shape = np.shape(y) if y is not None else np.shape(mask)
    w = np.ones(shape) if sample_weight is None else np.array(
        per_element(_scaled_to_max(sample_weight), shape)
    )
    if class_weight is not None:
        cw = _scaled_to_max(class_weight)
        if cw.ndim == 2:
            # Per label (multi-label y): row c holds label c's weights of its
            # negatives and positives, and y's axis 1 runs over the labels.
            label = np.arange(len(cw)).reshape((1, -1) + (1,) * (np.ndim(y) - 2))
            w *= cw[label, np.asarray(y, dtype=np.int64)]
        else:
            w *= cw[y]
    if mask is not None:
        w *= mask
    return w


def normalize_weights(weights, counts=None):
    """Scale weights to mean 1, in float64, without underflow.

    Parameters
    ----------
    weights : ndarray
        Non-negative weights, at least one positive.
    counts : None or ndarray of shape (N,)
        How many times each row is served per epoch (a sampler's output);
        the mean is then taken over the rows served.

    Returns
    -------
    weights : ndarray of dtype float64, mean 1
    """
    w = np.asarray(weights, dtype=np.float64)
    top = w.max() if w.size else 0.0
    if not top > 0:
        raise ValueError("The training weights are all zero: nothing to learn from.")
    # Dividing by the maximum first keeps the sum finite and away from the
    # subnormal range whatever the original scale (1e-300 or 1e300).
    w = w / top
    if counts is None:
        return w / w.mean()
    c = per_element(counts, w.shape)
    return w / (np.sum(c * w) / np.sum(c))


def warn_if_small_ess(weights, what="samples", counts=None):
    """Warn when the effective sample size is below ``ESS_WARN_FRACTION * N``.

    Parameters
    ----------
    weights : ndarray
    what : str
        What the weights are attached to, for the message.
    counts : None or ndarray of shape (N,)
        How many times each row is served per epoch.

    Returns
    -------
    ess : float
    """
    n = np.size(weights) if counts is None else float(
        np.sum(per_element(counts, np.shape(weights)))
    )
    ess = effective_sample_size(weights, counts)
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
    return ess
