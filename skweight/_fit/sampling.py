"""Resampling of the training data for ``CNNClassifier(sampler=...)``.

imbalanced-learn samplers take flattened ``X`` and ``y`` and return new ones,
so inside an imbalanced-learn ``Pipeline`` a ``sample_weight`` meant for the
estimator no longer matches the resampled rows. Here the sampler runs inside
``fit``, on the training split only, and the weights follow the rows:

- Samplers that select existing rows and say which (``sample_indices_``:
  random over- and under-sampling, NearMiss, Tomek links, ...) are re-run at
  every epoch with a fresh seed, so an under-sampler shows the network
  different majority samples each epoch instead of throwing most of them
  away for good. Each served row keeps its own weight. A sampler without a
  ``random_state`` is deterministic; it runs once and its selection is
  reused.
- Samplers that synthesise samples (the SMOTE family, cluster centroids,
  smoothed bootstraps) run once before training, on the flattened images;
  their output is reshaped back to images. Rows that are copies of training
  rows keep their weights; a synthetic row gets the mean weight of the
  training rows of its class (see :func:`resample_training`).
- ``"balanced"`` draws every epoch the same number of rows from each class
  (as many rows in all as the training set has): each row of a rare class
  is repeated evenly, a frequent class is sub-sampled without replacement
  afresh each epoch. Shuffled into mini-batches, every batch then holds
  roughly equal class counts.

Class weights and the normalisation of the weights (mean 1) are computed on
the rows served per epoch, i.e. on the resampled data.

Rows of weight 0 are left out before any sampler sees them, since weight 0
means "not in the data": they must neither be served nor be used as
neighbours to synthesise from.
"""

import numpy as np
import torch
from sklearn.base import clone

from .._validation import encode_labels
from .weight_path import Served

__all__ = ["EpochRows", "check_sampler", "resample_training"]

#: The built-in sampler that balances the class counts of every epoch.
BALANCED = "balanced"


def check_sampler(sampler):
    """Validate the ``sampler`` parameter.

    Parameters
    ----------
    sampler : None, "balanced" or object with ``fit_resample``

    Returns
    -------
    sampler : the same object
    """
    if sampler is None:
        return None
    if isinstance(sampler, str):
        if sampler == BALANCED:
            return sampler
        raise ValueError(
            f"sampler must be None, 'balanced' or an imbalanced-learn sampler "
            f"instance (an object with fit_resample), got the string {sampler!r}."
        )
    if isinstance(sampler, type):
        raise TypeError(
            f"sampler must be a sampler instance, got the class "
            f"{sampler.__name__}; use {sampler.__name__}() instead."
        )
    if not callable(getattr(sampler, "fit_resample", None)):
        raise TypeError(
            f"sampler must be None, 'balanced' or an imbalanced-learn sampler "
            f"instance (an object with a fit_resample(X, y) method), got "
            f"{type(sampler).__name__}: {sampler!r}."
        )
    return sampler


class EpochRows:
    """The rows of each training epoch, drawn afresh per epoch.

    It is the ``epoch_indices`` callable of
    :class:`skweight._fit.loader.BatchIterator`: calling it returns the rows of
    the next epoch, and ``len`` is the number of rows of the latest draw.

    Parameters
    ----------
    first : ndarray of int64
        The rows of the first epoch.
    draw : callable
        ``draw(seed) -> ndarray of int64``, the rows of a later epoch.
    rng : numpy.random.Generator
        Source of the per-epoch seeds.
    fresh : bool, default=True
        False when ``draw`` would ignore its seed (a deterministic sampler):
        the first rows are then reused.
    """

    def __init__(self, first, draw, rng, fresh=True):
        self.first = first
        self._draw = draw
        self._rng = rng
        self._fresh = fresh
        self._pending = first
        self._last = first

    def __len__(self):
        return len(self._last)

    def __call__(self, generator=None):
        # The seeds come from this object's own generator (seeded by the
        # estimator's random_state), not from the shuffling generator, so
        # turning shuffling off does not change which rows are drawn.
        if self._pending is not None:
            rows, self._pending = self._pending, None
        elif self._fresh:
            rows = self._draw(_seed(self._rng))
        else:
            rows = self.first
        self._last = rows
        return torch.from_numpy(rows)


def resample_training(sampler, dataset, classes, rng):
    """Apply ``sampler`` to a training set of images.

    Parameters
    ----------
    sampler : "balanced" or object with ``fit_resample``
        An imbalanced-learn sampler is cloned, and its ``random_state`` (if
        it has one) is set from ``rng``: the estimator's ``random_state``
        makes the run repeat, whatever the sampler's own seed.
    dataset : ArrayDataset
        Images ``(N, C, H, W)``, encoded labels ``(N,)`` and sample weights
        ``(N,)`` (float64) or None.
    classes : ndarray
        The original labels; samplers see these (so that a
        ``sampling_strategy`` dict keyed by label works).
    rng : numpy.random.Generator

    Returns
    -------
    served : Served
        The rows to train on (``dataset``, with their unnormalised float64
        sample weights or None), the per-epoch draws of rows
        (``epoch_rows``, None: every row once per epoch) and how many times
        each row is served per epoch (``counts``: the expectation for
        ``"balanced"``, the first draw for other index samplers). Class
        weights and the weight normalisation use the counts, so that they
        refer to the data the network actually sees.

    Notes
    -----
    A synthetic sample's weight is the mean weight of the training samples of
    its class (those the sampler saw, i.e. of positive weight). SMOTE-like
    samplers interpolate between two samples of a class but do not report
    which; the class mean keeps the weighted share of each class what the
    sampler's ``sampling_strategy`` asked for, and without sample weights it
    is 1, as for every real sample.
    """
    y = dataset.target.numpy()
    multilabel = y.ndim == 2
    weight = None if dataset.weight is None else dataset.weight.numpy()
    keep = np.arange(len(y)) if weight is None else np.flatnonzero(
        weight.reshape(len(y), -1).max(axis=1) > 0
    )
    if len(keep) == 0:
        raise ValueError(
            "All training samples have weight 0; there is nothing to resample "
            "or to learn from."
        )
    if multilabel and not _takes_multilabel(sampler):
        raise ValueError(
            f"sampler={sampler!r} takes one label per sample; for multi-label y use "
            f"skweight.sampling.MultiLabelRandomOverSampler()."
        )
    if isinstance(sampler, str):
        epochs = _balanced_rows(y, keep, rng)
        n_classes = np.bincount(y[keep], minlength=len(classes))
        per_class = len(keep) / np.count_nonzero(n_classes)
        counts = np.zeros(len(y))
        counts[keep] = per_class / n_classes[y[keep]]
        return Served(dataset, epochs, counts)

    labels = y[keep].astype(np.int64) if multilabel else classes[y[keep]]
    label_only = _label_only(sampler)
    if label_only:
        X_in = np.arange(len(keep)).reshape(-1, 1)
    else:
        # A sampler that looks at the images gets them flattened (and
        # gathered: it synthesises new ones from them anyway).
        X_in = dataset.images().cpu().numpy().reshape(len(y), -1)
        if len(keep) < len(y):
            X_in = X_in[keep]

    def fit_resample(seed):
        s = _seeded(sampler, seed)
        X_res, y_res = s.fit_resample(X_in, labels)
        return s, X_res, y_res

    fitted, X_res, y_res = fit_resample(_seed(rng))
    rows = getattr(fitted, "sample_indices_", None)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(X_res):
            rows = None
    selects = rows is not None and (
        label_only or np.array_equal(np.asarray(X_res), X_in[rows])
    )
    if selects:
        first = keep[rows]

        def draw(seed):
            chosen = fit_resample(seed)[0].sample_indices_
            return keep[np.asarray(chosen, dtype=np.int64)]

        epochs = EpochRows(first, draw, rng, fresh=_has_random_state(sampler))
        counts = np.bincount(first, minlength=len(y)).astype(np.float64)
        return Served(dataset, epochs, counts)

    return _synthesised(dataset, keep, classes, X_res, y_res, rows, X_in)


def _balanced_rows(y, keep, rng):
    """Per-epoch rows with the same count for every class present."""
    groups = [keep[y[keep] == k] for k in np.unique(y[keep])]
    total = len(keep)

    def draw(seed):
        gen = np.random.default_rng(seed)
        targets = np.full(len(groups), total // len(groups))
        targets[gen.choice(len(groups), total % len(groups), replace=False)] += 1
        parts = []
        for rows, target in zip(groups, targets, strict=True):
            # Whole copies first, then a without-replacement remainder: each
            # rare row appears floor or ceil(target / n) times, and a frequent
            # class shows a fresh subset every epoch.
            parts.append(np.tile(rows, target // len(rows)))
            parts.append(gen.choice(rows, target % len(rows), replace=False))
        return np.concatenate(parts).astype(np.int64)

    return EpochRows(draw(_seed(rng)), draw, rng)


def _synthesised(dataset, keep, classes, X_res, y_res, rows, X_in):
    """Build an ArrayDataset of a synthesising sampler's output, with weights."""
    X_res = np.asarray(X_res)
    stored = dataset.X.numpy().dtype if dataset.X.device.type == "cpu" else np.float32
    if np.issubdtype(stored, np.integer) and not np.issubdtype(X_res.dtype, np.integer):
        # Synthetic integer images (e.g. uint8 pixels interpolated by SMOTE)
        # are stored as the real ones, so that input_scale treats them alike.
        info = np.iinfo(stored)
        X_res = np.clip(np.rint(X_res), info.min, info.max)
    images = torch.from_numpy(
        np.ascontiguousarray(X_res, dtype=stored).reshape(
            len(X_res), *dataset.X.shape[1:]
        )
    )
    _, y_enc = encode_labels(np.asarray(y_res), classes, name="The sampler's output y")
    weight = None
    if dataset.weight is not None:
        w_in = dataset.weight.numpy()[keep]
        if rows is not None:
            # Smoothed bootstrap and the like: every row has a known parent.
            w_res = w_in[rows]
        else:
            w_res = _match_weights(X_in, dataset.target.numpy()[keep], w_in, X_res,
                                   y_enc, len(classes))
        weight = torch.from_numpy(w_res)
    n = len(y_enc)
    return Served(
        dataset.replace(X=images, target=torch.from_numpy(y_enc), weight=weight,
                        mask=None, rows=None),
        None, np.ones(n),
    )


def _match_weights(X_in, y_in, w_in, X_res, y_res, n_classes):
    """Weights of resampled rows: their own if copied, else their class mean."""
    totals = np.bincount(y_in, weights=w_in, minlength=n_classes)
    sizes = np.bincount(y_in, minlength=n_classes)
    class_mean = np.divide(totals, sizes, out=np.ones(n_classes), where=sizes > 0)
    w_res = class_mean[y_res]
    n = len(y_in)
    # Over-samplers return the input rows first, in order, then the new ones.
    if len(y_res) >= n and np.array_equal(y_res[:n], y_in) and np.array_equal(
        X_res[:n], X_in
    ):
        w_res[:n] = w_in
        return w_res
    # Otherwise (cleaning or cluster-based samplers) find copies row by row;
    # equal rows are consumed in order so duplicates keep their own weights.
    available = {}
    for i in range(n):
        available.setdefault((X_in[i].tobytes(), int(y_in[i])), []).append(i)
    X_res = np.ascontiguousarray(X_res, dtype=X_in.dtype)
    for j in range(len(y_res)):
        queue = available.get((X_res[j].tobytes(), int(y_res[j])))
        if queue:
            w_res[j] = w_in[queue.pop(0)]
    return w_res


def _seed(rng):
    return int(rng.integers(2**31 - 1))


def _takes_multilabel(sampler):
    from ..sampling import MultiLabelRandomOverSampler

    return isinstance(sampler, MultiLabelRandomOverSampler)


def _label_only(sampler):
    """Whether the sampler's choice of rows depends on ``y`` alone.

    Random over- and under-sampling then only need a one-column stand-in for
    ``X`` (the row number), which spares copying the images every epoch.
    """
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    if type(sampler) is RandomUnderSampler or _takes_multilabel(sampler):
        return True
    return type(sampler) is RandomOverSampler and sampler.shrinkage is None


def _has_random_state(sampler):
    return hasattr(sampler, "get_params") and "random_state" in sampler.get_params(
        deep=False
    )


def _seeded(sampler, seed):
    s = clone(sampler, safe=False)
    if _has_random_state(s):
        s.set_params(random_state=seed)
    return s
