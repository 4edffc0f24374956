"""Estimators whose targets are class labels (per image or per pixel).

:class:`LabelledMixin` holds what the classifier and the segmenter share:
encoding labels and mapping them back, the class weights computed from the
rows a network is trained on, and the refusal of class weights given to both
the estimator and its loss.
"""

import inspect
import numbers

import numpy as np
import torch

from ._validation import check_class_mass, check_int, encode_labels
from .weighting import _per_element, compute_class_weight, fold_weights

# Floor of a class prior wherever one enters a logarithm: a class that no
# training sample carries gets log(1e-12) = -27.6, finite.
PRIOR_FLOOR = 1e-12

__all__ = ["LabelledMixin"]


class LabelledMixin:
    """Targets that are class labels (per image or per pixel).

    Shared by the classifier and the segmenter: the class-weight request,
    the class weights computed from the training rows, the refusal of
    class weights given twice and the mapping back to the user's labels.
    """

    def _class_weights(self, fit_request, train, counts):
        requested = fit_request.get("class_weight")
        if requested is None:
            requested = self.class_weight
        target = train.target.numpy()
        # Each element's share of the objective before class weights: its
        # sample weight, its mask, and how often its row is served.
        mass = fold_weights(
            target, None if train.weight is None else train.weight.numpy(), None,
            None if train.mask is None else train.mask.numpy(),
        )
        if counts is not None:
            mass = counts if mass is None else mass * counts.reshape(
                counts.shape + (1,) * (mass.ndim - 1)
            )
        self.class_weight_ = compute_class_weight(requested, target, self.classes_, mass)
        return self.class_weight_

    def _reweight_start(self, first_epoch):
        start = self.reweight_from_epoch
        return first_epoch if start is None else max(int(start), first_epoch)

    def _learn_training_split(self, split):
        # The class frequencies of the training split as drawn, without
        # weights or resampling: what class_prior="train" maps back to.
        target = split.target.numpy()
        if split.mask is not None:
            target = target[split.mask.numpy()]
        counts = np.bincount(target.ravel(), minlength=len(self.classes_))
        self.train_prior_ = counts / counts.sum()

    def _seen_prior(self, dataset, counts):
        """Return the class distribution the loss sees.

        That is the normalised weights (times how often each row is served),
        summed per class.
        """
        target = dataset.target.numpy()
        mass = np.ones(target.shape) if dataset.weight is None else (
            _per_element(dataset.weight.numpy(), target.shape)
        )
        if counts is not None:
            mass = mass * _per_element(counts, target.shape)
        prior = np.bincount(target.ravel(), weights=np.ravel(mass),
                            minlength=len(self.classes_))
        return prior / prior.sum()

    def _criterion_defaults(self, criterion_class, kwargs):
        prior = getattr(self, "_training_prior_", None)
        if prior is None:
            return kwargs
        try:
            accepted = inspect.signature(criterion_class).parameters
        except (TypeError, ValueError):
            return kwargs
        # LDAM's margins depend on the ratios of the class counts only.
        defaults = {"class_prior": np.maximum(prior, PRIOR_FLOOR), "class_counts": prior}
        return {**{k: v for k, v in defaults.items() if k in accepted}, **kwargs}

    def _start_phase(self, phase):
        # A loss that adjusts for the class prior learns the one it will see
        # (unless the user gave it one).
        crit = getattr(self.criterion_, "_orig_mod", self.criterion_)
        if self._manages_prior(crit):
            crit.set_class_prior(np.maximum(phase.class_prior, PRIOR_FLOOR))
        if callable(getattr(crit, "set_class_counts", None)) and (
            "class_counts" not in self.get_params_for("criterion")
        ):
            crit.set_class_counts(phase.class_prior)

    def _end_training(self, phase):
        crit = getattr(self.criterion_, "_orig_mod", self.criterion_)
        self.effective_prior_ = self._effective_prior(crit, phase.class_prior)

    def _manages_prior(self, crit):
        # Logit adjustment learns the prior the loss sees, unless given one.
        return (callable(getattr(crit, "set_class_prior", None))
                and "class_prior" not in self.get_params_for("criterion"))

    def _effective_prior(self, crit, seen):
        """Return the class prior the network's (unadjusted) outputs are calibrated for.

        A loss trained on weighted data with prior ``seen`` makes
        ``softmax(f)`` estimate the posterior under ``seen``; logit
        adjustment trains ``softmax(f + tau log seen)`` for that, so that
        ``softmax(f)`` corresponds to the prior ``seen^(1 - tau)``.
        """
        prior = np.maximum(np.asarray(seen, dtype=np.float64), PRIOR_FLOOR)
        if isinstance(getattr(crit, "class_prior", None), torch.Tensor) and hasattr(
            crit, "tau"
        ):
            used = np.maximum(crit.class_prior.detach().cpu().double().numpy(),
                              PRIOR_FLOOR)
            prior = prior * used ** (-float(crit.tau))
        return prior / prior.sum()

    def _check_labelled_params(self):
        check_int(self.reweight_from_epoch, "reweight_from_epoch", low=1, allow_none=True)
        self._check_class_prior(n_classes=None)

    def _check_class_prior(self, n_classes="fitted"):
        """Validate ``class_prior``: None, "train" or non-negative frequencies.

        The frequencies are one per class of ``classes_``, unless ``n_classes``
        is None.
        """
        prior = self.class_prior
        if prior is None or (isinstance(prior, str) and prior == "train"):
            return prior
        if isinstance(prior, str) or isinstance(prior, numbers.Number):
            raise ValueError(
                f"class_prior must be None, 'train' or an array of class frequencies "
                f"aligned with classes_, got {prior!r}."
            )
        values = check_class_mass(prior, "class_prior")
        if n_classes == "fitted" and len(values) != len(self.classes_):
            raise ValueError(
                f"class_prior has shape {values.shape}, but there are "
                f"{len(self.classes_)} classes (classes_); pass one frequency per "
                f"class, in the order of classes_."
            )
        return values / values.sum()

    def _log_proba(self, logits):
        """Log-probabilities of the network's logits, for ``class_prior``.

        Bayes' rule moves the posterior from the prior the outputs are
        calibrated for (``effective_prior_``) to the requested one:
        ``p(y|x) ~ q(y|x) * prior(y) / effective_prior(y)``.
        """
        log_q = torch.log_softmax(logits.double(), dim=1)
        target = self._check_class_prior()
        if target is None:
            return log_q
        if isinstance(target, str):
            target = self.train_prior_
        shape = (1, -1) + (1,) * (log_q.ndim - 2)
        with np.errstate(divide="ignore"):
            shift = np.log(target) - np.log(np.maximum(self.effective_prior_, PRIOR_FLOOR))
        return torch.log_softmax(log_q + torch.as_tensor(shift).reshape(shape), dim=1)

    def predict_proba(self, X):
        """Predict class probabilities (per pixel for a segmenter).

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in ``fit``.

        Returns
        -------
        proba : ndarray of shape (N, n_classes) or (N, n_classes, H, W)
            Sums to 1 over axis 1, whose entries follow ``classes_``; with
            ``class_prior`` set, for that population of classes. For volumes,
            ``(N, n_classes, D, H, W)``.
        """
        return torch.exp(self._log_proba(self._outputs(X))).numpy()

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset

        Returns
        -------
        log_proba : ndarray, the shape of :meth:`predict_proba`'s
        """
        return self._log_proba(self._outputs(X)).numpy()

    def predict(self, X):
        """Predict the most probable label (per pixel for a segmenter).

        The argmax of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset

        Returns
        -------
        y : ndarray of shape (N,), (N, H, W) or (N, D, H, W)
            Labels of ``classes_``.
        """
        index = self._log_proba(self._outputs(X)).argmax(dim=1).numpy()
        return self.classes_[index]

    def _duplicated_weights(self, fit_request):
        requested = fit_request.get("class_weight")
        if requested is None and self.class_weight is None:
            return None
        crit = getattr(self.criterion_, "_orig_mod", self.criterion_)
        # skweight's losses name their class-weight argument; for others the
        # names torch's losses use.
        names = getattr(crit, "_class_weight_name", None)
        names = (names,) if names else ("weight", "class_weight")
        return "class_weight", names, "class weights"

    def _encode(self, y, reset, classes):
        """Encode labels; learn ``classes_`` when ``reset``."""
        if reset:
            known = None if classes is None else np.unique(classes)
            classes_, encoded = encode_labels(y, known)
            return classes_, encoded
        try:
            _, encoded = encode_labels(y, self.classes_)
        except ValueError as exc:
            raise ValueError(
                f"{exc} The network being trained further (warm_start=True or "
                f"partial_fit) has one output per fitted class: fit afresh with "
                f"warm_start=False, or pass every label to the first "
                f"partial_fit(classes=...)."
            ) from None
        return self.classes_, encoded

    def _decode_labels(self, target):
        """Map encoded labels (any tensor) back to ``classes_``.

        The result is a tensor when the labels are numbers, so that no device
        sync is needed.
        """
        classes = self.classes_
        if classes.dtype.kind in "biuf":
            table = torch.as_tensor(classes, device=target.device)
            return table[target]
        return classes[target.cpu().numpy()]
