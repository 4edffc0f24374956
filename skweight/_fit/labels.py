"""Targets that are class labels: one per image or pixel, or several that overlap.

:class:`LabelTargets` (a classifier's labels, a segmenter's label masks) and
:class:`MultiLabelTargets` (several 0/1 labels per image, overlapping 0/1
masks per pixel) implement the protocol of
:class:`skweight._fit.targets.Targets`: encoding, class weights, the class
priors the loss sees and the network is calibrated for, the checks of the
network's output and the (prior-corrected) probabilities.
"""

import inspect
import numbers
import warnings

import numpy as np
import torch

from .._class_weight import class_sums, class_weight_from_dict, resolve_class_weight
from .._validation import check_class_mass, encode_labels, per_element, unique_labels
from .targets import PRIOR_FLOOR, Targets, check_class_prior
from .weight_path import fold_weights

__all__ = ["LabelTargets", "MultiLabelTargets"]


class LabelTargets(Targets):
    """Class labels, one per image (classifier) or per pixel (segmenter).

    Parameters
    ----------
    classes : ndarray
        The labels, sorted; label ``classes[k]`` is encoded as ``k``.
    per_pixel : bool
        Whether there is one label per pixel (the network outputs
        ``(N, K, H, W)``) rather than one per image (``(N, K)``).
    ignore_index : None or int
        The label of pixels that neither teach nor count.

    Attributes
    ----------
    class_weight : None or ndarray of shape (n_classes,)
        The class weights of the last fit.
    train_prior : ndarray of shape (n_classes,)
        The unweighted class frequencies of the training split.
    effective_prior : ndarray of shape (n_classes,)
        The class prior the network's outputs are calibrated for.
    """

    _state = ("classes", "per_pixel", "ignore_index", "class_weight", "train_prior",
              "effective_prior")

    def __init__(self, classes, *, per_pixel=False, ignore_index=None):
        self.classes = classes
        self.per_pixel = per_pixel
        self.ignore_index = ignore_index
        self.class_weight = None
        self.train_prior = None
        self.effective_prior = None

    @classmethod
    def learn(cls, labels, *, classes=None, per_pixel=False, ignore_index=None):
        """Learn the classes of ``labels`` (and of ``classes``, ``partial_fit``'s list).

        Parameters
        ----------
        labels : ndarray
            The labels of ``y`` (``ignore_index`` pixels removed).
        classes : None or array-like
        per_pixel : bool
        ignore_index : None or int

        Returns
        -------
        targets : LabelTargets
        """
        if classes is not None and ignore_index is not None:
            classes = np.setdiff1d(classes, [ignore_index])
        if classes is None:
            classes_ = unique_labels(labels)
        else:
            # partial_fit names every label up front: one outside it is refused
            classes_, _ = encode_labels(labels, np.unique(classes))
        if len(classes_) < 2:
            where = " outside ignore_index" if ignore_index is not None else ""
            what = ("a segmenter needs at least 2 classes (e.g. background and object)"
                    if per_pixel else "a classifier needs at least 2 classes")
            raise ValueError(f"y has only one class ({classes_[0]!r}){where}; {what}.")
        return cls(classes_, per_pixel=per_pixel, ignore_index=ignore_index)

    def encode(self, y, continuing=False):
        """Encode labels as ``0..K-1``; pixels of ``ignore_index`` get 0 and mask False.

        Parameters
        ----------
        y : ndarray
            Labels (``(N,)``) or label masks (``(N, *spatial)``).
        continuing : bool
            Whether a fitted network is trained further, which cannot take
            labels it has no output for (the message says so).

        Returns
        -------
        target : torch.Tensor of int64, or for masks of uint8 (up to 256 classes) or int32
            Masks are stored compactly, a stack of them being as large as
            the images: each batch becomes int64 on the device
            (:meth:`batch_target`).
        mask : None or ndarray of bool
        """
        ignore = self.ignore_index
        kept = None if ignore is None else y != ignore
        if kept is not None and kept.all():
            kept = None
        try:
            # Ignored pixels get a label the loss can index (0) and mask
            # False, which folds into weight 0: they count in no sum and no
            # gradient.
            _, encoded = encode_labels(
                y, self.classes, ignore=None if kept is None else ignore,
                dtype=np.int64 if not self.per_pixel else (
                    np.uint8 if len(self.classes) <= 256 else np.int32),
            )
        except ValueError as exc:
            if not continuing:
                raise
            raise ValueError(
                f"{exc} The network being trained further (warm_start=True or "
                f"partial_fit) has one output per fitted class: fit afresh with "
                f"warm_start=False, or pass every label to the first "
                f"partial_fit(classes=...)."
            ) from None
        return torch.from_numpy(encoded), kept

    def batch_target(self, target):
        """Return a batch's class indices as int64, what losses index with."""
        return target.long()

    def decode(self, target, weight=None):
        """Map encoded labels (any tensor) back to ``classes``.

        The result is a tensor when the labels are numbers, so that no device
        sync is needed. Pixels of weight 0 (with ``ignore_index`` set) are
        shown with the ignore label: they neither teach nor count.
        """
        classes = self.classes
        target = target.long()  # a uint8 tensor would index as a mask
        if classes.dtype.kind in "biuf":
            labels = torch.as_tensor(classes, device=target.device)[target]
        else:
            labels = classes[target.cpu().numpy()]
        ignore = self.ignore_index
        if ignore is None or weight is None or weight.ndim < 2:
            return labels
        dropped = weight == 0
        if isinstance(labels, torch.Tensor):
            return labels.masked_fill(dropped, ignore)
        labels = labels.copy()
        labels[dropped.cpu().numpy()] = ignore
        return labels

    def stratify(self, dataset):
        """Return the per-image labels (a segmenter's hold-out split is not stratified)."""
        return None if self.per_pixel else dataset.target.numpy()

    def learn_class_weights(self, requested, served):
        """Learn the class weights from the rows served per epoch.

        Parameters
        ----------
        requested : None, "balanced" or dict
        served : Served
            The training rows, with how often each is served per epoch.

        Returns
        -------
        class_weight : None or ndarray of shape (n_classes,)
        """
        train, counts = served.dataset, served.counts
        target = train.target.numpy()
        # Each element's share of the objective before class weights: its
        # sample weight, its mask, and how often its row is served.
        mass = fold_weights(
            target, None if train.weight is None else train.weight.numpy(), None,
            None if train.mask is None else train.mask.numpy(),
        )
        if counts is not None:
            mass = counts if mass is None else mass * per_element(counts, mass.shape)
        self.class_weight = resolve_class_weight(requested, target, self.classes, mass)
        return self.class_weight

    def learn_training_prior(self, split):
        """Learn the class frequencies of the training split as drawn.

        No weights, no resampling: what ``class_prior="train"`` maps back to.
        """
        target = split.target.numpy()
        if split.mask is not None:
            target = target[split.mask.numpy()]
        counts = class_sums(target, len(self.classes))
        self.train_prior = counts / counts.sum()

    def seen_prior(self, dataset, counts):
        """Return the class distribution the loss sees.

        That is the normalised weights (times how often each row is served),
        summed per class.
        """
        target = dataset.target.numpy()
        # Per sample (N,) or per pixel; never widened to the masks' shape here.
        mass = None if dataset.weight is None else dataset.weight.numpy()
        if counts is not None:
            mass = counts if mass is None else mass * per_element(counts, mass.shape)
        prior = class_sums(target, len(self.classes), mass)
        return prior / prior.sum()

    def criterion_defaults(self, criterion_class, kwargs, prior):
        """Give a prior-aware loss class the prior it will see, unless the user gave one."""
        if prior is None:
            return kwargs
        try:
            accepted = inspect.signature(criterion_class).parameters
        except (TypeError, ValueError):
            return kwargs
        # LDAM's margins depend on the ratios of the class counts only.
        defaults = {"class_prior": np.maximum(prior, PRIOR_FLOOR), "class_counts": prior}
        return {**{k: v for k, v in defaults.items() if k in accepted}, **kwargs}

    def start_phase(self, criterion, prior, criterion_params):
        """Let a loss that adjusts for the class prior learn the one it will see.

        Unless the user gave it one (in ``criterion_params``).
        """
        crit = getattr(criterion, "_orig_mod", criterion)
        if (callable(getattr(crit, "set_class_prior", None))
                and "class_prior" not in criterion_params):
            crit.set_class_prior(np.maximum(prior, PRIOR_FLOOR))
        if callable(getattr(crit, "set_class_counts", None)) and (
            "class_counts" not in criterion_params
        ):
            crit.set_class_counts(prior)

    def end_training(self, criterion, prior):
        """Learn the class prior the network's (unadjusted) outputs are calibrated for.

        A loss trained on weighted data with prior ``seen`` makes
        ``softmax(f)`` estimate the posterior under ``seen``; logit
        adjustment trains ``softmax(f + tau log seen)`` for that, so that
        ``softmax(f)`` corresponds to the prior ``seen^(1 - tau)``.
        """
        crit = getattr(criterion, "_orig_mod", criterion)
        effective = np.maximum(np.asarray(prior, dtype=np.float64), PRIOR_FLOOR)
        if isinstance(getattr(crit, "class_prior", None), torch.Tensor) and hasattr(
            crit, "tau"
        ):
            used = np.maximum(crit.class_prior.detach().cpu().double().numpy(),
                              PRIOR_FLOOR)
            effective = effective * used ** (-float(crit.tau))
        self.effective_prior = effective / effective.sum()

    def duplicated_weights(self, requested):
        """Class weights, when the estimator applies them (None otherwise)."""
        if requested is None:
            return None
        return "class_weight", None, "class weights"

    def check_output(self, out, n_samples, spatial):
        """Check the logits' shape: ``(N, K)``, or ``(N, K, *spatial)`` per pixel."""
        expected = (n_samples, len(self.classes))
        got = out.shape  # a tuple: compared without conversion (every step)
        if not self.per_pixel:
            if got != expected:
                raise ValueError(
                    f"The module returned output of shape {tuple(got)}, but a "
                    f"classifier of {expected[1]} classes needs logits of shape "
                    f"(N, n_classes) = {expected}."
                )
            return out
        if got[:2] != expected or (spatial is not None and got[2:] != spatial):
            want = (*expected, *spatial) if spatial is not None else (*expected, "H", "W")
            raise ValueError(
                f"The module returned output of shape {tuple(got)}; a segmenter needs "
                f"logits of shape (N, n_classes, H, W) = {want}."
            )
        return out

    def check_prior(self, prior):
        """Validate ``class_prior`` for these classes (frequencies summing to 1)."""
        return check_class_prior(prior, len(self.classes))

    def proba(self, logits, class_prior=None, tau=1.0):
        """Return the probabilities (float32), moved to ``class_prior``."""
        if class_prior is None or tau == 0:
            # Written out: 7x faster than torch.softmax over a short class
            # axis on the CPU (4096 x 10: 0.09 against 0.63 ms), as stable.
            z = logits.float()
            e = (z - z.amax(dim=1, keepdim=True)).exp_()
            return e.div_(e.sum(dim=1, keepdim=True))
        return torch.exp(self.log_proba(logits, class_prior, tau)).float()

    def decision(self, logits, class_prior, threshold=None, tau=1.0):
        """Return the index of the most probable class (uint8 for up to 256 classes).

        A segmentation's indices are as large as its masks: one byte per
        pixel instead of eight until they are mapped to the labels.
        """
        if class_prior is None or tau == 0:
            index = logits.argmax(dim=1)  # the softmax keeps the order
        else:
            index = self.log_proba(logits, class_prior, tau).argmax(dim=1)
        return index.to(torch.uint8) if len(self.classes) <= 256 else index

    def labels(self, decisions):
        """Map class indices to the labels of ``classes``."""
        return self.classes[decisions]

    def log_proba(self, logits, class_prior=None, tau=1.0):
        """Log-probabilities of the network's logits, moved to ``class_prior``.

        Bayes' rule moves the posterior from the prior the outputs are
        calibrated for (``effective_prior``) to the requested one, with
        strength ``tau``: ``p(y|x) ~ q(y|x) * (prior(y) /
        effective_prior(y)) ** tau`` (``tau=1``: Bayes' rule; 0: as
        trained).

        Parameters
        ----------
        logits : torch.Tensor of shape (N, K) or (N, K, ...)
        class_prior : None, "train" or ndarray
            The checked ``class_prior`` parameter.
        tau : float
            The checked ``prior_tau``.

        Returns
        -------
        log_proba : torch.Tensor (float64)
        """
        log_q = torch.log_softmax(logits.double(), dim=1)
        if class_prior is None or tau == 0:
            return log_q
        target = self.train_prior if isinstance(class_prior, str) else class_prior
        shape = (1, -1) + (1,) * (log_q.ndim - 2)
        with np.errstate(divide="ignore"):
            shift = np.log(target) - np.log(np.maximum(self.effective_prior, PRIOR_FLOOR))
        shift = torch.as_tensor(tau * shift, device=log_q.device).reshape(shape)
        return torch.log_softmax(log_q + shift, dim=1)


class MultiLabelTargets(Targets):
    """Several 0/1 labels per image (classifier) or overlapping masks per pixel (segmenter).

    Label ``c`` is column (or channel) ``c`` of ``y``; the network has one
    sigmoid logit per label. Weights are per element: one per (sample,
    label), or per (pixel, channel).

    Parameters
    ----------
    n_labels : int
    per_pixel : bool
        Whether the labels are masks ``(N, C, *spatial)`` rather than
        ``(N, C)``.

    Attributes
    ----------
    classes : ndarray of shape (n_labels,)
        ``0..C-1``, as scikit-learn's multi-label estimators have.
    class_weight : None or ndarray of shape (n_labels, 2)
        The weight of negatives (column 0) and positives (column 1) of each
        label in the last fit.
    train_prior, effective_prior : ndarray of shape (n_labels,)
        Label prevalences: of the training split as drawn, and the ones the
        network's (unadjusted) outputs are calibrated for.
    threshold : ndarray of shape (n_labels,)
        The decision thresholds of the last fit (tuned, with
        ``threshold="auto"``).
    """

    _state = ("classes", "per_pixel", "class_weight", "train_prior", "effective_prior",
              "threshold")
    ignore_index = None

    def __init__(self, n_labels, *, per_pixel=False):
        self.classes = np.arange(n_labels)
        self.per_pixel = per_pixel
        self.class_weight = None
        self.train_prior = None
        self.effective_prior = None
        self.threshold = None

    def encode(self, y, continuing=False):
        """Return the 0/1 labels as int8 (the mask is always None).

        One byte per label (per pixel and channel, for masks); each batch
        becomes float32 on the device (:meth:`batch_target`).

        Parameters
        ----------
        y : ndarray of shape (N, C) or (N, C, *spatial)
            Checked 0/1 labels.
        continuing : bool
            Whether a fitted network is trained further.

        Returns
        -------
        target : torch.Tensor of int8
        mask : None
        """
        if y.shape[1] != len(self.classes):
            raise ValueError(
                f"y has {y.shape[1]} labels, but the network being trained further "
                f"has {len(self.classes)} outputs."
            )
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int8)), None

    def batch_target(self, target):
        """Return a batch's 0/1 labels as float32, what every BCE-style loss takes."""
        return target.to(torch.float32)

    def decode(self, target, weight=None):
        """Return the 0/1 labels as int64 (as the estimator predicts them)."""
        return target.long()

    def element_sample_weight(self, sample_weight, target_shape):
        """Give per-pixel weights ``(N, *spatial)`` to every channel of the masks."""
        if sample_weight is None or sample_weight.ndim in (1, len(target_shape)):
            return sample_weight
        return np.ascontiguousarray(
            np.broadcast_to(sample_weight[:, None], target_shape)
        )

    def weight_unit(self, unit):
        """Weights are per (sample, label) or per (pixel, channel)."""
        return "pixel label" if self.per_pixel else f"{unit} label"

    def stratify(self, dataset):
        """Return the label indicator: the split is stratified per label (iteratively)."""
        return None if self.per_pixel else dataset.target.numpy()

    def _masses(self, dataset, counts=None):
        """Each element's share of the objective: sample weight times how often served.

        Returns the targets and the masses, None where every element's is 1
        (no float64 copy of a stack of masks).
        """
        target = dataset.target.numpy()
        mass = None if dataset.weight is None else per_element(
            dataset.weight.numpy(), target.shape)
        if counts is not None:
            served = per_element(counts, target.shape)
            mass = served if mass is None else mass * served
        return target, mass

    def _label_sums(self, target, mass):
        """Return each label's total mass and its positives' mass."""
        axes = tuple(a for a in range(target.ndim) if a != 1)
        if mass is None:
            positive = target.sum(axis=axes, dtype=np.float64)
            return np.full(target.shape[1], target.size / target.shape[1]), positive
        return (mass.sum(axis=axes, dtype=np.float64),
                (mass * target).sum(axis=axes, dtype=np.float64))

    def learn_class_weights(self, requested, served):
        """Learn each label's weights of negatives and positives from the rows served.

        Parameters
        ----------
        requested : None, "balanced", list of dicts or array-like of shape (C,)
            ``"balanced"`` gives the positives and the negatives of each
            label half of that label's mass each; a list of one
            ``{0: w_neg, 1: w_pos}`` per label (scikit-learn's multi-output
            form); an array gives ratios ``pos_weight``: positives weighted
            by it, negatives by 1.
        served : Served

        Returns
        -------
        class_weight : None or ndarray of shape (C, 2)
        """
        if requested is None:
            self.class_weight = None
            return None
        n_labels = len(self.classes)
        if isinstance(requested, str):
            if requested != "balanced":
                raise ValueError(
                    f"class_weight must be None, 'balanced', a list of {n_labels} "
                    f"dicts {{0: w, 1: w}} or {n_labels} positive-class ratios for "
                    f"multi-label y, got the string {requested!r}."
                )
            total, positive = self._label_sums(*self._masses(served.dataset,
                                                             served.counts))
            negative = total - positive
            weights = np.zeros((n_labels, 2))
            # Half of each label's mass to each side; an empty side gets 0.
            np.divide(total, 2 * negative, out=weights[:, 0], where=negative > 0)
            np.divide(total, 2 * positive, out=weights[:, 1], where=positive > 0)
        elif isinstance(requested, (list, tuple)) and all(
            isinstance(d, dict) for d in requested
        ):
            if len(requested) != n_labels:
                raise ValueError(
                    f"class_weight has {len(requested)} dicts, but y has {n_labels} "
                    f"labels; pass one {{0: w_neg, 1: w_pos}} per label."
                )
            weights = np.stack([
                class_weight_from_dict(d, np.array([0, 1])) for d in requested
            ])
        elif isinstance(requested, dict):
            raise ValueError(
                f"class_weight for multi-label y must be 'balanced', a list of "
                f"{n_labels} dicts {{0: w_neg, 1: w_pos}} (one per label) or "
                f"{n_labels} positive-class ratios, got a dict: {requested!r}."
            )
        else:
            ratios = check_class_mass(requested, "class_weight")
            if ratios.shape != (n_labels,):
                raise ValueError(
                    f"class_weight has {ratios.size} positive-class ratios, but y has "
                    f"{n_labels} labels; pass one per label."
                )
            weights = np.stack([np.ones(n_labels), ratios], axis=1)
        self.class_weight = weights
        return weights

    def learn_training_prior(self, split):
        """Learn each label's prevalence in the training split as drawn (unweighted)."""
        total, positive = self._label_sums(split.target.numpy(), None)
        self.train_prior = positive / total
        self._warn_if_constant(self.train_prior)

    def _warn_if_constant(self, prevalence):
        constant = np.flatnonzero((prevalence == 0) | (prevalence == 1))
        if constant.size:
            warnings.warn(
                f"Label(s) {constant.tolist()} have no positive or no negative in the "
                f"training split: the network cannot learn to tell them apart (their "
                f"weights stay finite).", UserWarning, stacklevel=2,
            )

    def seen_prior(self, dataset, counts):
        """Return each label's prevalence as the loss sees it (weighted, as served)."""
        total, positive = self._label_sums(*self._masses(dataset, counts))
        return np.divide(positive, total, out=np.full(len(total), 0.5), where=total > 0)

    def criterion_defaults(self, criterion_class, kwargs, prior):
        """Give a loss class the label prior, sigmoid outputs and no alpha of its own.

        Class weights already weigh positives and negatives per label, so a
        focal loss gets ``alpha=None`` unless the user sets one.
        """
        try:
            accepted = inspect.signature(criterion_class).parameters
        except (TypeError, ValueError):
            return kwargs
        defaults = {"sigmoid": True}
        if "gamma" in accepted:  # a focal loss's alpha (not Tversky's)
            defaults["alpha"] = None
        if prior is not None:
            defaults["class_prior"] = prior
        return {**{k: v for k, v in defaults.items() if k in accepted}, **kwargs}

    def start_phase(self, criterion, prior, criterion_params):
        """Give a logit-adjusting loss the label prevalences it will see."""
        crit = getattr(criterion, "_orig_mod", criterion)
        if (callable(getattr(crit, "set_class_prior", None))
                and "class_prior" not in criterion_params):
            crit.set_class_prior(prior)

    def end_training(self, criterion, prior):
        """Learn the prevalences the unadjusted outputs are calibrated for.

        Per label, ``sigmoid(f)`` estimates the posterior under the seen
        prevalence ``pi``; a logit-adjusted loss trains ``sigmoid(f + tau
        logit(q))`` for that, so that ``sigmoid(f)`` corresponds to the
        log-odds ``logit(pi) - tau logit(q)``.
        """
        crit = getattr(criterion, "_orig_mod", criterion)
        log_odds = _logit(np.asarray(prior, dtype=np.float64))
        used = getattr(crit, "class_prior", None)
        if isinstance(used, torch.Tensor) and hasattr(crit, "tau"):
            log_odds = log_odds - float(crit.tau) * _logit(
                used.detach().cpu().double().numpy()
            )
        self.effective_prior = 1.0 / (1.0 + np.exp(-log_odds))

    def duplicated_weights(self, requested):
        """Class weights, when the estimator applies them (None otherwise)."""
        if requested is None:
            return None
        return "class_weight", ("pos_weight", "weight", "class_weight"), "class weights"

    def check_output(self, out, n_samples, spatial):
        """Check the logits' shape: ``(N, C)``, or ``(N, C, *spatial)`` for masks."""
        expected = (n_samples, len(self.classes))
        got = tuple(out.shape)
        want = expected if not self.per_pixel else (
            (*expected, *spatial) if spatial is not None else (*expected, "H", "W")
        )
        if got[:2] != expected or (self.per_pixel and spatial is not None
                                   and got[2:] != spatial) or (
            not self.per_pixel and len(got) != 2
        ):
            raise ValueError(
                f"The module returned output of shape {got}, but {expected[1]} labels "
                f"need one logit per label: {want}."
            )
        return out

    def check_prior(self, prior):
        """Validate ``class_prior`` for these labels: None, "train" or prevalences."""
        if prior is None or (isinstance(prior, str) and prior == "train"):
            return prior
        if isinstance(prior, str) or isinstance(prior, numbers.Number):
            raise ValueError(
                f"class_prior must be None, 'train' or an array of label prevalences "
                f"in [0, 1] for multi-label y, got {prior!r}."
            )
        values = np.asarray(prior, dtype=np.float64)
        if values.shape != self.classes.shape or not np.all(
            (values >= 0) & (values <= 1)
        ):
            raise ValueError(
                f"class_prior must hold one prevalence in [0, 1] per label "
                f"({len(self.classes)}) for multi-label y, got {prior!r}."
            )
        return values

    def log_proba(self, logits, class_prior=None, tau=1.0):
        """Log-probability of each label, moved to the prevalences ``class_prior``.

        Per label, Bayes' rule adds ``tau * (logit(prior) -
        logit(effective_prior))`` to the log-odds.

        Parameters
        ----------
        logits : torch.Tensor of shape (N, C) or (N, C, ...)
        class_prior : None, "train" or ndarray of shape (C,)
        tau : float
            The checked ``prior_tau``.

        Returns
        -------
        log_proba : torch.Tensor (float64)
        """
        z = logits.double()
        if class_prior is not None and tau != 0:
            target = self.train_prior if isinstance(class_prior, str) else class_prior
            shift = tau * (_logit(target) - _logit(self.effective_prior))
            shape = (1, -1) + (1,) * (z.ndim - 2)
            z = z + torch.as_tensor(shift, device=z.device).reshape(shape)
        return torch.nn.functional.logsigmoid(z)

    def proba(self, logits, class_prior=None, tau=1.0):
        """Return each label's probability (float32), moved to ``class_prior``."""
        if class_prior is None or tau == 0:
            return torch.sigmoid(logits.float())
        return torch.exp(self.log_proba(logits, class_prior, tau)).float()

    def decision(self, logits, class_prior, threshold, tau=1.0):
        """Return 0/1 labels: each probability against its label's threshold.

        int64 for a classifier's indicator (as scikit-learn's multi-label
        estimators give it), uint8 for masks: one byte per pixel and channel.
        """
        proba = torch.exp(self.log_proba(logits, class_prior, tau))
        shape = (1, -1) + (1,) * (proba.ndim - 2)
        cut = torch.as_tensor(threshold, dtype=proba.dtype, device=proba.device)
        return (proba >= cut.reshape(shape)).to(torch.uint8 if self.per_pixel
                                                else torch.int64)

    def labels(self, decisions):
        """Return predictions in the user's terms: the 0/1 indicator as it is."""
        return decisions


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), PRIOR_FLOOR, 1 - PRIOR_FLOOR)
    return np.log(p) - np.log1p(-p)
