"""The weight path of ``fit``: split, resample, fold and normalise, once.

:class:`WeightPathMixin` turns the checked data of a fit into what the
training loop trains on (steps 2 to 5 of the fit template in
:mod:`skweight._base`): the validation split, the training rows a sampler
serves, the class weights computed from them, and one weight per element,
``sample_weight x class_weight[y] x mask``, folded by
:func:`skweight.weighting.fold_weights` and normalised to mean 1 in float64,
for the training and the validation split alike. With deferred re-weighting
training has two phases: the split with its sample weights only, then the
resampled, class-weighted rows.
"""

import numbers
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ._loader import ArrayDataset, LazyImageDataset
from ._seeding import draw_seeds
from .weighting import _per_element, fold_weights, normalize_weights, warn_if_small_ess

__all__ = ["TrainingPhase", "WeightPathMixin"]


class TrainingPhase(NamedTuple):
    """What the network trains on from ``start_epoch`` on.

    ``start_epoch`` is 1-based, counted over the whole history.
    """

    start_epoch: int
    dataset: object
    epoch_rows: object  # None, or a callable drawing each epoch's rows
    class_prior: object  # None, or the class distribution the loss sees



class WeightPathMixin:
    """The datasets a fit trains and validates on, with their weights."""

    def _training_data(self, data, fit_request, split_params, first_epoch=1):
        """Split, resample and weigh: the phases of training and the validation set.

        Returns
        -------
        phases : list of TrainingPhase
            What to train on from which epoch on: one phase, or two with
            deferred re-weighting (``reweight_from_epoch``): first the
            training split with its sample weights only, then resampled and
            class-weighted.
        valid : None or dataset
            The validation split, weighted as the final objective.
        """
        split, valid = self._split(data, split_params)
        train, epoch_rows, counts = self._resample(split)
        class_weight = self._class_weights(fit_request, train, counts)
        self._learn_training_split(split)
        start = self._reweight_start(first_epoch)
        phases = []
        if start > first_epoch:
            plain = self._weigh(split, None, None, training=True)
            phases.append(TrainingPhase(first_epoch, self._place(plain), None,
                                        self._seen_prior(plain, None)))
        weighted = self._weigh(train, class_weight, counts, training=True)
        phases.append(TrainingPhase(max(start, first_epoch), self._place(weighted),
                                    epoch_rows, self._seen_prior(weighted, counts)))
        if valid is not None:
            valid = self._place(self._weigh(valid, class_weight, None, training=False),
                                training=False)
        return phases, valid

    def _reweight_start(self, first_epoch):
        """Return the epoch from which class weights and resampling apply."""
        return first_epoch

    def _learn_training_split(self, split):
        """Learn class statistics of the training split: a hook (classifiers)."""

    def _seen_prior(self, dataset, counts):
        """Return the class distribution the loss sees in ``dataset`` (None: no classes)."""
        return None

    def get_split_datasets(self, X, y=None, **fit_params):
        """Return the training and validation datasets ``fit`` would train on.

        Parameters
        ----------
        X : array-like, tensor or Dataset
            Images (or an internal dataset).
        y : array-like or None
        **fit_params
            ``sample_weight`` and ``class_weight`` (as in ``fit``), and
            parameters of the validation splitter.

        Returns
        -------
        train, valid : datasets (``valid`` may be None)
        """
        sample_weight = fit_params.pop("sample_weight", None)
        fit_request = {"class_weight": fit_params.pop("class_weight", None)}
        if not isinstance(X, (ArrayDataset, LazyImageDataset)):
            X = self._validate_fit_data(X, y, sample_weight, reset=False)
        if not hasattr(self, "_seeds_"):
            self._seeds_ = draw_seeds(self.random_state)
        phases, valid = self._training_data(X, fit_request, fit_params)
        return phases[-1].dataset, valid

    def _split(self, dataset, split_params):
        ts = self.train_split
        if ts is None:
            return dataset, None
        strat = self._stratify_labels(dataset)
        if isinstance(ts, numbers.Real):
            index = np.arange(len(dataset))
            seed = self._seeds_.split
            try:
                train_idx, valid_idx = train_test_split(
                    index, test_size=ts, stratify=strat, random_state=seed,
                )
            except ValueError:
                if strat is None:
                    raise
                warnings.warn(
                    "A class has too few samples to stratify the validation "
                    "split; splitting without stratification.", UserWarning,
                )
                train_idx, valid_idx = train_test_split(
                    index, test_size=ts, random_state=seed,
                )
            return dataset.take(train_idx), dataset.take(valid_idx)
        train, valid = ts(dataset, strat, **split_params)
        return _as_dataset(train), None if valid is None else _as_dataset(valid)

    def _stratify_labels(self, dataset):
        """Labels to stratify a hold-out split by (None: no stratification)."""
        return None

    def _resample(self, train):
        """Return the rows to train on: ``(dataset, epoch_rows, counts)``.

        ``epoch_rows`` draws each epoch's rows (None: every row once) and
        ``counts`` says how often each row is served per epoch (None: once).
        """
        return train, None, None

    def _class_weights(self, fit_request, train, counts):
        """Per-class weights from the training rows (None: no class weights)."""
        return None

    def _weigh(self, dataset, class_weight, counts, training):
        """Fold, check and normalise a split's weights (float32, mean 1)."""
        w = None if dataset.weight is None else dataset.weight.numpy()
        mask = None if dataset.mask is None else dataset.mask.numpy()
        target = dataset.target.numpy() if class_weight is not None else None
        w = fold_weights(target, w, class_weight, mask)
        if w is None:
            return dataset.with_weight(None)
        served = w if counts is None else w * _per_element(counts, w.shape)
        what = self._weighted_what(w)
        if not np.any(served > 0):
            split = "training" if training else "validation"
            raise ValueError(
                f"Every {split} {what[:-1]} has weight 0 (after sample_weight"
                f"{self._weight_sources()}); there is nothing to "
                f"{'learn from' if training else 'validate on'}."
            )
        if training:
            warn_if_small_ess(w, what, counts)
        w = normalize_weights(w, counts)
        return dataset.with_weight(torch.from_numpy(w.astype(np.float32)))

    def _weighted_what(self, weights):
        """Name what the weights are attached to, plural, for messages."""
        if np.ndim(weights) > 1:
            return "pixels" if np.ndim(weights) == 3 else "voxels"
        return self._sample_unit + "s"

    def _weight_sources(self):
        """Where weights came from besides sample_weight, for messages."""
        return ""


def _as_dataset(ds):
    """Turn a ``Subset`` of an internal dataset (skorch's ValidSplit) back into one."""
    if isinstance(ds, (ArrayDataset, LazyImageDataset)):
        return ds
    if isinstance(ds, torch.utils.data.Subset) and isinstance(
        ds.dataset, (ArrayDataset, LazyImageDataset)
    ):
        return ds.dataset.take(np.asarray(ds.indices))
    return ds
