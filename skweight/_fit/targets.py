"""What an estimator's targets are: one object per kind, held as ``targets_``.

The fit template (:mod:`skweight._fit.base`) asks the estimator's target
object everything that depends on what ``y`` is:

===========================  ============================  ==========================
step                         :class:`LabelTargets`         :class:`RealTargets`
===========================  ============================  ==========================
learn (``learn``)            the classes                   the scaling of each target
encode / decode              labels <-> 0..K-1             standardise / unscale
stratify the split           by label (per image only)     no
class weights, priors        from the training rows        none
the loss and its prior       prior-aware losses learn it   per-target weights
check the network's output   ``(N, K[, H, W])``            ``(N, T)``
predict                      (log-)probabilities, labels   values in the user's units
===========================  ============================  ==========================

:class:`Targets` states the protocol with the defaults of a target kind
that has nothing to say at a step; the two kinds override what differs.
What a target object learns in ``fit`` is what the estimator exposes as
fitted attributes (``classes_``, ``class_weight_``, ``target_mean_``, ...,
see :class:`FittedAttribute`), and what ``save_params`` stores with the
network's weights (:meth:`Targets.get_state`).
"""

import inspect
import numbers
import warnings

import numpy as np
import torch

from .._class_weight import class_weight_from_dict, resolve_class_weight
from .._validation import check_class_mass, encode_labels, per_element
from .weight_path import fold_weights

__all__ = ["PRIOR_FLOOR", "FittedAttribute", "LabelTargets", "MultiLabelTargets",
           "RealTargets", "Targets", "check_class_prior", "check_prior_tau",
           "check_prior_tau_setting", "targets_from_state"]

# Floor of a class prior wherever one enters a logarithm: a class that no
# training sample carries gets log(1e-12) = -27.6, finite.
PRIOR_FLOOR = 1e-12


class FittedAttribute:
    """A fitted attribute of an estimator, read from its target object.

    The target object (``targets_``) is the one place where what ``fit``
    learned about the targets lives; the estimator's attribute reads it,
    and raises ``AttributeError`` before ``fit`` as scikit-learn expects.

    Parameters
    ----------
    name : str
        The attribute of the target object.
    """

    def __init__(self, name):
        self.name = name

    def __set_name__(self, owner, public):
        self.public = public

    def __get__(self, estimator, owner=None):
        if estimator is None:
            return self
        targets = estimator.__dict__.get("targets_")
        if targets is None or not hasattr(targets, self.name):
            raise AttributeError(
                f"{type(estimator).__name__!r} object has no attribute {self.public!r}"
            )
        return getattr(targets, self.name)


class Targets:
    """The protocol of a target kind, with the defaults of one that has no classes.

    Every method is called by the fit template or the training loop; a
    target kind overrides those where it has something to do.
    """

    #: The fitted state, saved by ``get_state`` (attribute names).
    _state = ()

    @property
    def n_outputs(self):
        """The number of outputs the network needs (one per class or label)."""
        return len(self.classes)

    def encode(self, y):
        """Return the targets as the loss sees them, and a mask of the elements that count.

        Parameters
        ----------
        y : ndarray
            Checked targets of this kind.

        Returns
        -------
        target : torch.Tensor
        mask : None or ndarray of bool
        """
        raise NotImplementedError

    def decode(self, target, weight=None):
        """Return targets as the user gave them (callbacks compare them with ``predict``).

        Parameters
        ----------
        target : torch.Tensor
        weight : None or torch.Tensor
            The normalised weights of the same rows.

        Returns
        -------
        y : torch.Tensor or ndarray
        """
        return target

    def stratify(self, dataset):
        """Return the labels to stratify a hold-out split by (None: no stratification)."""
        return None

    def learn_class_weights(self, requested, served):
        """Learn and return per-class weights from the rows served (None: no classes)."""
        return None

    def learn_training_prior(self, split):
        """Learn the unweighted class frequencies of the training split (if any)."""

    def seen_prior(self, dataset, counts):
        """Return the class distribution the loss sees in ``dataset`` (None: no classes)."""
        return None

    def criterion_defaults(self, criterion_class, kwargs, prior):
        """Return the loss's settings with what the targets supply (e.g. a class prior)."""
        return kwargs

    def start_phase(self, criterion, prior, criterion_params):
        """Start a phase of training whose loss sees the class distribution ``prior``."""

    def end_training(self, criterion, prior):
        """End training: learn what the network's outputs are calibrated for."""

    def element_weights(self, weight, target):
        """Return the weights the loss applies to a batch's elements (default: as given)."""
        return weight

    def weight_unit(self, unit):
        """Name what one weight is attached to, for messages (``unit``: a sample's)."""
        return unit

    def element_sample_weight(self, sample_weight, target_shape):
        """Return ``sample_weight`` in a shape the weight path folds (here: as given)."""
        return sample_weight

    def duplicated_weights(self, requested):
        """Return weights the estimator applies that the loss must not repeat.

        Returns None, or ``(setting, criterion attribute names, what)``.
        """
        return None

    def check_output(self, out, n_samples, spatial):
        """Check (and shape) the network's output for ``n_samples`` inputs."""
        return out

    def get_state(self):
        """Return the fitted state in types ``torch.load(weights_only=True)`` takes."""
        state = {"kind": type(self).__name__}
        for name in self._state:
            state[name] = _to_plain(getattr(self, name))
        return state

    @classmethod
    def from_state(cls, state):
        """Rebuild a target object from :meth:`get_state`'s output."""
        obj = cls.__new__(cls)
        for name in cls._state:
            setattr(obj, name, _from_plain(state.get(name)))
        return obj


def targets_from_state(state):
    """Rebuild the target object that :meth:`Targets.get_state` saved."""
    kinds = {kind.__name__: kind for kind in (LabelTargets, MultiLabelTargets, RealTargets)}
    return kinds[state["kind"]].from_state(state)


# ---------------------------------------------------------------------------
# Class labels
# ---------------------------------------------------------------------------


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
        known = None if classes is None else np.unique(classes)
        classes_, _ = encode_labels(labels, known)
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
        target : torch.Tensor of int64
        mask : None or ndarray of bool
        """
        ignore = self.ignore_index
        kept = None if ignore is None else y != ignore
        if kept is not None and kept.all():
            kept = None
        labels = y if kept is None else y[kept]
        try:
            _, encoded = encode_labels(labels, self.classes)
        except ValueError as exc:
            if not continuing:
                raise
            raise ValueError(
                f"{exc} The network being trained further (warm_start=True or "
                f"partial_fit) has one output per fitted class: fit afresh with "
                f"warm_start=False, or pass every label to the first "
                f"partial_fit(classes=...)."
            ) from None
        if kept is None:
            return torch.from_numpy(encoded.reshape(y.shape)), None
        # Ignored pixels get a label the loss can index (0) and mask False,
        # which folds into weight 0: they count in no sum and no gradient.
        target = np.zeros(y.shape, dtype=np.int64)
        target[kept] = encoded
        return torch.from_numpy(target), kept

    def decode(self, target, weight=None):
        """Map encoded labels (any tensor) back to ``classes``.

        The result is a tensor when the labels are numbers, so that no device
        sync is needed. Pixels of weight 0 (with ``ignore_index`` set) are
        shown with the ignore label: they neither teach nor count.
        """
        classes = self.classes
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
        counts = np.bincount(target.ravel(), minlength=len(self.classes))
        self.train_prior = counts / counts.sum()

    def seen_prior(self, dataset, counts):
        """Return the class distribution the loss sees.

        That is the normalised weights (times how often each row is served),
        summed per class.
        """
        target = dataset.target.numpy()
        mass = np.ones(target.shape) if dataset.weight is None else (
            per_element(dataset.weight.numpy(), target.shape)
        )
        if counts is not None:
            mass = mass * per_element(counts, target.shape)
        prior = np.bincount(target.ravel(), weights=np.ravel(mass),
                            minlength=len(self.classes))
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
        got = tuple(out.shape)
        if not self.per_pixel:
            if got != expected:
                raise ValueError(
                    f"The module returned output of shape {got}, but a classifier of "
                    f"{expected[1]} classes needs logits of shape (N, n_classes) = "
                    f"{expected}."
                )
            return out
        if got[:2] != expected or (spatial is not None and got[2:] != spatial):
            want = (*expected, *spatial) if spatial is not None else (*expected, "H", "W")
            raise ValueError(
                f"The module returned output of shape {got}; a segmenter needs "
                f"logits of shape (N, n_classes, H, W) = {want}."
            )
        return out

    def check_prior(self, prior):
        """Validate ``class_prior`` for these classes (frequencies summing to 1)."""
        return check_class_prior(prior, len(self.classes))

    def decision(self, logits, class_prior, threshold=None, tau=1.0):
        """Return the index of the most probable class (uint8 for up to 256 classes).

        A segmentation's indices are as large as its masks: one byte per
        pixel instead of eight until they are mapped to the labels.
        """
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
        """Return the 0/1 labels as float32 (the mask is always None).

        Parameters
        ----------
        y : ndarray of shape (N, C) or (N, C, *spatial)
            Checked 0/1 labels.
        continuing : bool
            Whether a fitted network is trained further.

        Returns
        -------
        target : torch.Tensor of float32
        mask : None
        """
        if y.shape[1] != len(self.classes):
            raise ValueError(
                f"y has {y.shape[1]} labels, but the network being trained further "
                f"has {len(self.classes)} outputs."
            )
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), None

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
        """Each element's share of the objective: sample weight times how often served."""
        target = dataset.target.numpy()
        mass = np.ones(target.shape) if dataset.weight is None else np.array(
            per_element(dataset.weight.numpy(), target.shape)
        )
        if counts is not None:
            mass = mass * per_element(counts, target.shape)
        return target, mass

    def _per_label(self, values):
        """Sum an ``(N, C, ...)`` array per label."""
        return values.swapaxes(0, 1).reshape(values.shape[1], -1).sum(axis=1)

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
            target, mass = self._masses(served.dataset, served.counts)
            positive = self._per_label(mass * target)
            total = self._per_label(mass)
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
        target = split.target.numpy()
        self.train_prior = self._per_label(target) / (target.size / target.shape[1])
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
        target, mass = self._masses(dataset, counts)
        total = self._per_label(mass)
        positive = self._per_label(mass * target)
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

    def decision(self, logits, class_prior, threshold, tau=1.0):
        """Return 0/1 labels: each probability against its label's threshold."""
        proba = torch.exp(self.log_proba(logits, class_prior, tau))
        shape = (1, -1) + (1,) * (proba.ndim - 2)
        cut = torch.as_tensor(threshold, dtype=proba.dtype, device=proba.device)
        return (proba >= cut.reshape(shape)).to(torch.int64)

    def labels(self, decisions):
        """Return predictions in the user's terms: the 0/1 indicator as it is."""
        return decisions


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), PRIOR_FLOOR, 1 - PRIOR_FLOOR)
    return np.log(p) - np.log1p(-p)


def check_prior_tau(prior_tau):
    """Validate ``prior_tau``: a finite number >= 0 (the strength of ``class_prior``)."""
    if isinstance(prior_tau, bool) or not isinstance(prior_tau, numbers.Real) or not (
        np.isfinite(prior_tau) and prior_tau >= 0
    ):
        raise ValueError(
            f"prior_tau must be a finite number >= 0 (0: probabilities as trained, "
            f"1: Bayes' rule to class_prior), got {prior_tau!r}."
        )
    return float(prior_tau)


def check_prior_tau_setting(prior_tau, class_prior):
    """Validate ``prior_tau`` at fit, warning when it does nothing (no ``class_prior``)."""
    tau = check_prior_tau(prior_tau)
    if tau != 1.0 and class_prior is None:
        warnings.warn(
            f"prior_tau={prior_tau!r} does nothing without class_prior: it is the "
            f"strength of the correction of the probabilities to class_prior "
            f"(e.g. class_prior='train' or a deployment's class frequencies).",
            UserWarning, stacklevel=3,
        )
    return tau


def check_class_prior(prior, n_classes=None):
    """Validate ``class_prior``: None, "train" or non-negative frequencies.

    Parameters
    ----------
    prior : None, "train" or array-like
    n_classes : None or int
        The number of classes the frequencies must match (None: any).

    Returns
    -------
    prior : None, "train" or ndarray summing to 1
    """
    if prior is None or (isinstance(prior, str) and prior == "train"):
        return prior
    if isinstance(prior, str) or isinstance(prior, numbers.Number):
        raise ValueError(
            f"class_prior must be None, 'train' or an array of class frequencies "
            f"aligned with classes_, got {prior!r}."
        )
    values = check_class_mass(prior, "class_prior")
    if n_classes is not None and len(values) != n_classes:
        raise ValueError(
            f"class_prior has shape {values.shape}, but there are {n_classes} classes "
            f"(classes_); pass one frequency per class, in the order of classes_."
        )
    return values / values.sum()


# ---------------------------------------------------------------------------
# Real-valued targets
# ---------------------------------------------------------------------------

# The smallest positive normal float32: targets the network must output
# unscaled (standardize_target=False) need to be representable in float32.
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class RealTargets(Targets):
    """Real-valued targets ``(N, T)``, standardised for the loss.

    Parameters
    ----------
    mean, scale : ndarray of shape (n_outputs,)
        The loss sees ``(y - mean) / scale``; predictions are
        ``output * scale + mean``.
    weight : None or ndarray of shape (n_outputs,)
        Per-target loss weights with mean 1.
    one_d : bool
        Whether ``fit`` got a 1-D ``y`` (predictions are then 1-D).
    standardize : bool
        Whether ``mean`` and ``scale`` standardise (else they are 0 and 1,
        and targets must be representable in float32).
    """

    _state = ("mean", "scale", "weight", "one_d", "standardize")

    def __init__(self, mean, scale, weight, one_d, standardize):
        self.mean = mean
        self.scale = scale
        self.weight = weight
        self.one_d = one_d
        self.standardize = standardize

    @property
    def n_outputs(self):
        """Number of targets."""
        return len(self.mean)

    @classmethod
    def learn(cls, y, sample_weight, *, standardize, target_weight):
        """Learn the scaling of each target and the per-target loss weights.

        Parameters
        ----------
        y : ndarray of shape (N,) or (N, T), float64
            1-D ``y`` gives 1-D predictions.
        sample_weight : None or ndarray of shape (N,)
        standardize : bool
            Standardise with the weighted mean and standard deviation
            (constant targets get scale 1).
        target_weight : None, "balanced" or array-like of shape (T,)

        Returns
        -------
        targets : RealTargets
        """
        one_d = y.ndim == 1
        y = y.reshape(len(y), -1)
        n_outputs = y.shape[1]
        mean, std = weighted_mean_std(y, sample_weight)
        scale = np.where(constant_columns(y, std), 1.0, std)
        if standardize:
            loss_scale = np.ones(n_outputs)
        else:
            mean, scale, loss_scale = np.zeros(n_outputs), np.ones(n_outputs), scale
        weight = _resolve_target_weight(target_weight, n_outputs, loss_scale)
        return cls(mean, scale, weight, one_d, standardize)

    def encode(self, y, continuing=False):
        """Return ``(y - mean) / scale`` as float32 (the mask is always None).

        Parameters
        ----------
        y : ndarray of shape (N,) or (N, T), float64
        continuing : bool
            Whether a fitted network is trained further.

        Returns
        -------
        target : torch.Tensor of float32 and shape (N, T)
        mask : None
        """
        y = y.reshape(len(y), -1)
        if y.shape[1] != self.n_outputs:
            raise ValueError(
                f"y has {y.shape[1]} target(s), but the network being trained "
                f"further has {self.n_outputs} output(s)."
            )
        if not self.standardize:
            _check_representable(y)
        scaled = (y - self.mean) / self.scale
        return torch.from_numpy(scaled.astype(np.float32)), None

    def decode(self, target, weight=None):
        """Return targets in the user's units (float64), 1-D if ``y`` was."""
        mean = torch.as_tensor(self.mean, device=target.device)
        scale = torch.as_tensor(self.scale, device=target.device)
        y = target.double() * scale + mean
        return y.reshape(-1) if self.one_d else y

    def seen_prior(self, dataset, counts):
        """Return the targets the loss sees and their weights (as served).

        A loss with a label prior (Balanced MSE) fits it to them.
        """
        weight = None if dataset.weight is None else dataset.weight.numpy()
        if counts is not None:
            weight = counts if weight is None else counts * weight
        return dataset.target.numpy(), weight

    def start_phase(self, criterion, prior, criterion_params):
        """Fit a loss's label prior (Balanced MSE) to the training targets of this phase."""
        crit = getattr(criterion, "_orig_mod", criterion)
        if callable(getattr(crit, "fit_prior", None)):
            targets, weight = prior
            crit.fit_prior(targets, weight)

    def element_weights(self, weight, target):
        """Turn per-target weights into per-element weights ``(N, T)``.

        Then any loss that accepts element weights (or returns element
        losses) applies them.
        """
        if self.weight is None:
            return weight
        tw = torch.as_tensor(self.weight, dtype=target.dtype, device=target.device)
        if weight is None:
            weight = torch.ones(len(target), dtype=target.dtype, device=target.device)
        return weight.reshape(-1, 1) * tw.reshape(1, -1)

    def duplicated_weights(self, requested):
        """Per-target weights, when the estimator applies them (None otherwise)."""
        if requested is None:
            return None
        return "target_weight", ("target_weight",), "target weights"

    def check_output(self, out, n_samples, spatial):
        """Check the outputs' shape ``(N, T)`` (``(N,)`` for one target)."""
        if out.ndim == 1 and self.n_outputs == 1:
            return out.reshape(-1, 1)
        if tuple(out.shape) != (n_samples, self.n_outputs):
            raise ValueError(
                f"The module returned outputs of shape {tuple(out.shape)}, but "
                f"({n_samples}, {self.n_outputs}) was expected: one column per "
                f"target."
            )
        return out

    def inverse(self, out):
        """Return the network's outputs ``(N, T)`` in the user's units (float64 ndarray)."""
        y = np.asarray(out, dtype=np.float64) * self.scale + self.mean
        return y.ravel() if self.one_d else y


def column_scale(values):
    """Largest magnitude of each column (1 for all-zero columns)."""
    top = np.max(np.abs(values), axis=0)
    return np.where(top > 0, top, 1.0)


def weighted_mean_std(values, weights):
    """Column-wise weighted mean and (population) standard deviation.

    Computed on the columns divided by their largest magnitude, so that
    values of any unit (1e-20 or 1e200) neither underflow nor overflow when
    squared. ``weights`` is None or non-negative weights of shape (N,).
    """
    scale = column_scale(values)
    v = values / scale
    if weights is None:
        mean, std = v.mean(axis=0), v.std(axis=0)
    else:
        w = weights / weights.sum()
        mean = w @ v
        std = np.sqrt(w @ np.square(v - mean))
    return mean * scale, std * scale


def constant_columns(values, std):
    """Columns whose spread is at rounding level relative to their magnitude.

    Dividing such a column by its std would blow rounding noise up to O(1).
    The test is relative to the column's largest magnitude, so it does not
    depend on the target's unit.
    """
    return std <= 10 * np.finfo(np.float64).eps * column_scale(values)


def _check_representable(y):
    nonzero = np.abs(y[y != 0])
    if nonzero.size and (nonzero.max() > _FLOAT32_MAX / 10 or
                         nonzero.min() < _FLOAT32_TINY):
        raise ValueError(
            f"y has values down to {nonzero.min():.3g} and up to "
            f"{nonzero.max():.3g} in magnitude, which the network cannot output "
            f"in float32 with standardize_target=False; use "
            f"standardize_target=True (targets of any unit are then learned "
            f"alike) or rescale y."
        )


def _resolve_target_weight(tw, n_outputs, loss_scale):
    """Per-target loss weights with mean 1 (None: every target weighs the same)."""
    if tw is None:
        return None
    if isinstance(tw, str):  # "balanced", checked with the parameters
        # 1 / variance, as ratios to the smallest variance: finite for any unit.
        weights = np.square(loss_scale.min() / loss_scale)
    else:
        try:
            weights = np.array(tw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"target_weight must be an array of non-negative numbers, got {tw!r}."
            ) from exc
        if weights.shape != (n_outputs,):
            raise ValueError(
                f"target_weight has {weights.size} entries, but y has {n_outputs} "
                f"target(s); pass one weight per target."
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                f"target_weight must contain finite non-negative numbers, got "
                f"{weights.tolist()}."
            )
        if not np.any(weights > 0):
            raise ValueError(
                f"target_weight gives every target a weight of 0: {weights.tolist()}."
            )
        weights = weights / weights.max()
    return weights / weights.mean()


# ---------------------------------------------------------------------------
# Plain types for save_params
# ---------------------------------------------------------------------------


def _to_plain(value):
    """Convert a fitted value to types ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"tuple": [_to_plain(v) for v in value]}
    return value


def _from_plain(value):
    if isinstance(value, dict) and "ndarray" in value:
        return np.array(value["ndarray"], dtype=np.dtype(value["dtype"]))
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_from_plain(v) for v in value["tuple"])
    return value
