"""CNNClassifier: image classification with sample and class weights."""

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets

from ._docstrings import fill_doc
from ._fit.base import BaseCNN, shared_parameters
from ._fit.data import to_numpy_1d
from ._fit.labels import LabelTargets, MultiLabelTargets
from ._fit.loader import LazyImageDataset
from ._fit.pretrained import TAU_GRID, check_decoupled, tau_normalize
from ._fit.sampling import check_sampler, resample_training
from ._fit.targets import FittedAttribute, check_class_prior, check_prior_tau_setting
from ._fit.thresholds import THRESHOLD_METRICS, check_threshold, tune_thresholds
from ._fit.weight_path import Served
from ._validation import check_int, is_zero_one
from .losses import (
    AsymmetricLoss,
    BinaryCrossEntropyLoss,
    BinaryLogitAdjustedLoss,
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
)
from .nets import SmallCNN

__all__ = ["CNNClassifier"]


def _sample_weight_of(data, part):
    """Return the sample weights (not the class weights) of the rows ``part`` holds.

    Thresholds are tuned for the validation split as it is: a class-weighted
    F1 would trade precision away on the rare labels (their thresholds fell
    from about 0.7 to 0.02-0.04 in a trial).
    """
    if data.weight is None:
        return None
    rows = getattr(part, "rows", None)
    if rows is None:
        rows = getattr(part, "indices", None)
    weight = data.weight.numpy()
    return weight if rows is None else weight[np.asarray(rows)]


@fill_doc(lr="1e-3", max_epochs="20", batch_size="64",
          samples="samples", stratified=" and stratified by class")
class CNNClassifier(ClassifierMixin, BaseCNN):
    """Convolutional image classifier with sample and class weights.

    A scikit-learn classifier built on skorch: ``fit(X, y, sample_weight,
    class_weight)`` minimises the weighted mean loss
    ``sum_i w_i l_i / sum_i w_i`` with ``w_i = sample_weight_i *
    class_weight[y_i]``. Weights are normalised once over the training set
    in float64, so each mini-batch loss is an unbiased estimate of that
    objective and weights as small as 1e-100 are handled.

    With a multilabel-indicator ``y`` of shape ``(N, n_labels)`` (several
    findings per image) the network has one sigmoid logit per label,
    weights are per (sample, label) element, ``predict_proba`` returns
    ``(N, n_labels)`` and ``predict`` the 0/1 indicator, each label
    thresholded (``threshold``); ``score`` is then scikit-learn's subset
    accuracy (every label of a sample right), as for its other multi-label
    classifiers; use ``scoring="f1_macro"`` or ``"average_precision"`` in a
    search.

    Parameters
    ----------
    module : None, nn.Module class or instance, default=None
        The network; it returns raw logits of shape ``(N, n_classes)``
        (``(N, n_labels)`` for multi-label ``y``).
        ``None`` builds :class:`skweight.nets.SmallCNN` sized from the data at
        ``fit``; its settings are ``module__channels``,
        ``module__hidden_units``, ``module__norm``, ``module__dropout``.
    criterion : {"cross_entropy", "focal", "logit_adjusted", "bce", "asl"}, loss \
            class or instance, default="cross_entropy"
        The loss. For multi-label ``y`` every name is its sigmoid form, one
        logit per label: ``"cross_entropy"`` and ``"bce"`` are
        :class:`skweight.losses.BinaryCrossEntropyLoss`, ``"focal"``
        :class:`~skweight.losses.SigmoidFocalLoss` (its ``alpha`` comes from
        the class weights), ``"asl"`` :class:`~skweight.losses.AsymmetricLoss`
        (Ben-Baruch et al., 2021: ``criterion__gamma_neg=4``,
        ``criterion__gamma_pos=0``, ``criterion__clip=0.05``) and
        ``"logit_adjusted"`` :class:`~skweight.losses.BinaryLogitAdjustedLoss`
        (each label's log-odds shifted by ``tau`` times its prior's). For one
        label per image: ``"focal"`` is :class:`skweight.losses.FocalLoss` with
        ``criterion__gamma`` (default 2). Class weights act as the focal
        ``alpha`` (they are applied once, per sample, before the mean).
        ``"logit_adjusted"`` is :class:`skweight.losses.LogitAdjustedLoss`,
        ``CE(f(x) + tau log(prior), y)`` (Menon et al., 2021) with
        ``criterion__tau`` (default 1) and, unless ``criterion__class_prior``
        is given, the prior the loss sees: the class distribution of the
        training split after any resampling, weighted by the sample and
        class weights (on top of balanced weights or a balanced sampler it
        is uniform, and the loss is plain cross-entropy: never a double
        correction). The network's outputs, and ``predict_proba``, stay the
        unadjusted logits'.
    class_weight : None, "balanced", dict, list of dicts or array-like, \
            default=None
        Per-class weights. ``"balanced"`` weighs class ``k`` by
        ``sum(w) / (n_classes * sum(w[y == k]))`` (scikit-learn's formula,
        with sample weights), computed on the training split after any
        resampling. A dict maps labels to weights (others get 1). For
        multi-label ``y`` the weights are per (sample, label) element:
        ``"balanced"`` gives the positives and the negatives of each label
        half of that label's mass each; a list of one ``{0: w_neg, 1:
        w_pos}`` per label is scikit-learn's multi-output form; an array of
        one ratio per label weighs its positives by it (torch's
        ``pos_weight``). ``fit(class_weight=...)`` overrides it for that
        call.
    %(input_shape)s
    %(input_scale)s
    %(network_parameters)s
    sampler : None, "balanced" or imbalanced-learn sampler, default=None
        Resampling of the training data (never of the validation split),
        with ``X``, ``y`` and ``sample_weight`` resampled together and
        images flattened for the sampler and reshaped back for you.

        - A sampler that selects rows (``sample_indices_``: e.g.
          ``RandomUnderSampler``, ``RandomOverSampler``) is re-run every
          epoch with a fresh seed: an under-sampler shows different majority
          samples each epoch. Served rows keep their weights.
        - A sampler that synthesises rows (e.g. ``SMOTE``) runs once before
          training; a synthetic row gets the mean sample weight of its
          class.
        - ``"balanced"`` draws the same number of rows per class each epoch
          (rare rows repeated evenly, frequent ones sub-sampled afresh), so
          each mini-batch has roughly equal classes. Served rows keep their
          sample weights, which still weigh samples against the others of
          their class: a class then carries (rows per class) x (its mean
          sample weight) per epoch. Add ``class_weight="balanced"`` to
          divide out those class means as well, giving every class the same
          total weight.

        Rows of weight 0 are dropped before sampling. ``class_weight`` is
        computed on the resampled data (as it would be after a sampler in an
        imbalanced-learn pipeline), so ``class_weight="balanced"`` does not
        balance a second time what the sampler balanced already. The
        sampler's own ``random_state`` is replaced by seeds drawn from this
        estimator's ``random_state``. Nested parameters such as
        ``sampler__k_neighbors`` can be set and grid-searched.
    %(class_prior)s
    %(prior_tau)s
    %(reweight_from_epoch)s
    decoupled : None, "crt", "lws" or "tau_norm", default=None
        Decoupled training for the long tail (Kang et al., ICLR 2020): the
        network learns its features on the data as they are, then only its
        classifier is balanced. ``"crt"`` (classifier re-training): from
        ``reweight_from_epoch`` on, the head is re-initialised and trained
        alone, the rest frozen; ``"lws"`` (learnable weight scaling): from
        ``reweight_from_epoch`` on, everything is frozen and one factor per
        class on the head's logits is learned (then folded into the head).
        Both take their balance from that phase's ``sampler="balanced"``
        or ``class_weight="balanced"``. ``"tau_norm"``: after training, each
        class's row of the head's weights is divided by its norm to the
        power ``tau``, with ``tau`` in [0, 2] chosen for the balanced
        accuracy of the validation split (``train_split`` must be set;
        ``tau_`` holds it).
    threshold : float, array-like of shape (n_labels,) or "auto", default=0.5
        Multi-label ``y`` only: a label is predicted where its probability
        reaches its threshold. One number for every label, one per label,
        or ``"auto"``: one per label tuned on the validation split
        (``train_split`` must be set) for ``threshold_metric``; the
        thresholds used are ``threshold_``. It applies at prediction, so a
        fitted model takes new values without refitting.
    threshold_metric : {"f1", "balanced_accuracy"}, default="f1"
        What ``threshold="auto"`` maximises for each label on the validation
        split, weighted by its sample weights (not by the class weights: a
        class-weighted F1 would trade the rare labels' precision away).
    %(training_parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels; for multi-label ``y``, ``0..n_labels-1`` (the columns).
    class_weight_ : None or ndarray of shape (n_classes,) or (n_labels, 2)
        The class weights used in the last ``fit``, aligned with ``classes_``
        (computed on the training split, after any resampling); for
        multi-label ``y`` the weights of each label's negatives and
        positives.
    threshold_ : ndarray of shape (n_labels,)
        Multi-label ``y`` only: the thresholds of the last ``fit`` (tuned,
        with ``threshold="auto"``).
    tau_ : float
        With ``decoupled="tau_norm"``: the tau of the head's normalisation.
    %(prior_attributes)s
    %(fitted_attributes)s

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skweight import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(input_shape=(1, 8, 8), class_weight="balanced",
    ...                     max_epochs=3, random_state=0).fit(X / 16, y)
    >>> clf.predict_proba(X[:2] / 16).shape
    (2, 10)
    """

    #: The losses of one label per image (bce and asl are multi-label only).
    _named_criteria = {"cross_entropy": CrossEntropyLoss, "focal": FocalLoss,
                       "logit_adjusted": LogitAdjustedLoss,
                       "bce": BinaryCrossEntropyLoss, "asl": AsymmetricLoss}
    #: The losses of multi-label y: one sigmoid logit per label.
    _multilabel_criteria = {"cross_entropy": BinaryCrossEntropyLoss,
                            "bce": BinaryCrossEntropyLoss, "focal": SigmoidFocalLoss,
                            "asl": AsymmetricLoss,
                            "logit_adjusted": BinaryLogitAdjustedLoss}
    _nested_params = BaseCNN._nested_params + ("sampler",)

    classes_ = FittedAttribute("classes")
    class_weight_ = FittedAttribute("class_weight")
    train_prior_ = FittedAttribute("train_prior")
    effective_prior_ = FittedAttribute("effective_prior")
    threshold_ = FittedAttribute("threshold")

    def __init__(self, module=None, *, criterion="cross_entropy", class_weight=None,
                 input_shape=None, input_scale="auto", input_mean=None, input_std=None,
                 head="auto", freeze=None, unfreeze_from_epoch=None, backbone_lr=None,
                 sampler=None, class_prior=None, prior_tau=1.0, reweight_from_epoch=None,
                 decoupled=None, threshold=0.5, threshold_metric="f1", random_state=None,
                 device="auto", precision="32", channels_last=False,
                 data_device_fraction=0.5, optimizer=torch.optim.AdamW, lr=1e-3,
                 weight_decay=0.0, max_epochs=20, batch_size=64, train_split=None,
                 callbacks=None, verbose=0, warm_start=False, compile=False, augment=None,
                 distributed="auto", **kwargs):
        # The parameters every estimator has are the base's to store.
        super().__init__(**shared_parameters(locals()))
        self.class_weight = class_weight
        self.sampler = sampler
        self.class_prior = class_prior
        self.prior_tau = prior_tau
        self.reweight_from_epoch = reweight_from_epoch
        self.decoupled = decoupled
        self.threshold = threshold
        self.threshold_metric = threshold_metric

    @fill_doc()
    def fit(self, X, y, sample_weight=None, class_weight=None, **fit_params):
        """Train the network from scratch (or further, with ``warm_start``).

        Parameters
        ----------
        %(X)s
        y : array-like of shape (N,) or (N, n_labels)
            Labels of any type, or a multilabel indicator of 0/1 (one column
            per label, e.g. from :class:`sklearn.preprocessing.MultiLabelBinarizer`
            for lists of label sets).
        sample_weight : None or array-like of shape (N,) or (N, n_labels)
            Non-negative weights of any magnitude, per sample or (multi-label
            ``y``) per (sample, label) element; weight 0 leaves an element
            out, integer weight k counts it k times, and multiplying all
            weights by a constant changes nothing.
        class_weight : None, "balanced" or dict
            Overrides the constructor's ``class_weight`` for this call.
        %(fit_params)s

        Returns
        -------
        self : CNNClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, class_weight=class_weight,
                         fit_params=fit_params)

    def partial_fit(self, X, y, classes=None, sample_weight=None, class_weight=None,
                    **fit_params):
        """Continue training (or start, on the first call) for ``max_epochs``.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in :meth:`fit`.
        y : array-like of shape (N,)
            Labels, as in :meth:`fit`.
        classes : None or array-like
            All labels; needed on the first call if ``y`` lacks some of them.
        sample_weight : None or array-like of shape (N,)
            Non-negative weights, as in :meth:`fit`.
        class_weight : None, "balanced" or dict
            Overrides the constructor's ``class_weight`` for this call.
        **fit_params
            Passed to the module's ``forward``, as in skorch.

        Returns
        -------
        self : CNNClassifier
            The estimator, trained further.
        """
        return self._fit(X, y, sample_weight, class_weight=class_weight,
                         classes=classes, partial=True, fit_params=fit_params)

    def _check_params(self):
        super()._check_params()
        check_sampler(self.sampler)
        check_int(self.reweight_from_epoch, "reweight_from_epoch", low=1, allow_none=True)
        check_class_prior(self.class_prior)
        check_prior_tau_setting(self.prior_tau, self.class_prior)
        check_threshold(self.threshold)
        check_decoupled(self.decoupled, self.reweight_from_epoch, self.train_split,
                        self.head)
        if self.decoupled in ("crt", "lws") and self.sampler is None and (
            self.class_weight is None
        ):
            warnings.warn(
                f"decoupled={self.decoupled!r} balances the classes in its second "
                f"stage through sampler='balanced' or class_weight='balanced'; with "
                f"neither, that stage trains on the same imbalance.", UserWarning,
                stacklevel=3,
            )
        if self.threshold_metric not in THRESHOLD_METRICS:
            raise ValueError(
                f"threshold_metric must be one of {sorted(THRESHOLD_METRICS)}, got "
                f"{self.threshold_metric!r}."
            )

    # -- the hooks of the fit template ----------------------------------------

    def _check_targets(self, y, n_samples, spatial):
        if hasattr(y, "toarray"):  # MultiLabelBinarizer(sparse_output=True)
            y = y.toarray()
        if not hasattr(y, "shape"):
            y = np.asarray(y)
        if len(y.shape) == 2 and y.shape[1] > 1:
            return self._check_multilabel(y, n_samples)
        y = to_numpy_1d(y)
        if len(y) != n_samples:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"X has {n_samples}, y has {len(y)}."
            )
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        # For a 1-D y this leaves binary and multiclass only.
        check_classification_targets(y)
        return y

    def _check_multilabel(self, y, n_samples):
        if hasattr(y, "to_numpy"):
            y = y.to_numpy()
        y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
        if len(y) != n_samples:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"X has {n_samples}, y has {len(y)}."
            )
        if y.dtype.kind not in "biuf" or not is_zero_one(y):
            found = np.unique(y[~np.isin(y, (0, 1))])[:5].tolist() if (
                y.dtype.kind in "biuf") else y.dtype
            raise ValueError(
                f"A 2-D y is a multilabel indicator for CNNClassifier: one column per "
                f"label, 0 or 1, got other values ({found}). For lists of label "
                f"sets use sklearn.preprocessing.MultiLabelBinarizer; for several "
                f"multi-class outputs, one classifier per output."
            )
        return y.astype(np.int8, copy=False)

    def _weight_extra_shape(self, y, spatial):
        # Multi-label weights may be per (sample, label) element.
        shape = getattr(y, "shape", None)
        if shape is None:
            shape = np.shape(np.asarray(y, dtype=object))
        return tuple(shape[1:]) if len(shape) == 2 and shape[1] > 1 else None

    def _learn_targets(self, y, sample_weight, classes):
        if y.ndim == 2:
            if classes is not None and len(classes) != y.shape[1]:
                raise ValueError(
                    f"classes has {len(classes)} entries, but y has {y.shape[1]} "
                    f"label columns; for multi-label y, classes are the columns."
                )
            return MultiLabelTargets(y.shape[1])
        if not (isinstance(self.threshold, numbers.Real) and self.threshold == 0.5):
            raise ValueError(
                f"threshold={self.threshold!r} applies to multi-label y (one "
                f"probability per label); with one label per image predict is the "
                f"most probable class. Leave threshold=0.5."
            )
        return LabelTargets.learn(y, classes=classes)

    def _criterion_for(self, name):
        multilabel = isinstance(self.__dict__.get("targets_"), MultiLabelTargets)
        named = self._multilabel_criteria if multilabel else {
            k: v for k, v in self._named_criteria.items() if k not in ("bce", "asl")
        }
        if name not in named:
            kind = "multi-label y" if multilabel else "one label per image"
            raise ValueError(
                f"criterion={name!r} is not a loss for {kind}; use one of "
                f"{sorted(named)}."
            )
        return named[name]

    def _resample(self, train):
        if self.sampler is None:
            return Served(train)
        if isinstance(train, LazyImageDataset):
            raise ValueError(
                f"sampler={self.sampler!r} needs the images in memory; with a "
                f"torch Dataset as X use skorch's iterator_train__sampler (e.g. "
                f"torch.utils.data.WeightedRandomSampler) instead."
            )
        rng = np.random.default_rng(self._seeds_.sampler)
        return resample_training(self.sampler, train, self.classes_, rng)

    def _default_module(self, **kwargs):
        c, h, w = self.input_shape_
        return SmallCNN(in_channels=c, n_outputs=len(self.classes_), image_size=(h, w),
                        **kwargs)

    def _after_fit(self, data, valid):
        targets = self.targets_
        if self.decoupled is not None and isinstance(targets, MultiLabelTargets):
            raise ValueError(
                f"decoupled={self.decoupled!r} balances the classes of one label per "
                f"image; for multi-label y use class_weight or the sampler."
            )
        if self.decoupled == "tau_norm":
            self.tau_ = self._tau_normalize(valid)
        if not isinstance(targets, MultiLabelTargets):
            return
        if not (isinstance(self.threshold, str) and self.threshold == "auto"):
            targets.threshold = check_threshold(self.threshold, len(self.classes_))
            return
        if valid is None:
            raise ValueError(
                "threshold='auto' tunes one threshold per label on the validation "
                "split: set train_split (e.g. 0.2)."
            )
        prior, tau = self._class_prior()
        proba = self._forward_images(
            valid, lambda out: targets.proba(out, prior, tau)
        ).numpy()
        targets.threshold = tune_thresholds(valid.target.numpy(), proba,
                                            _sample_weight_of(data, valid),
                                            self.threshold_metric)

    def _tau_normalize(self, valid):
        """Normalise the head with the tau best for the validation balanced accuracy."""
        from sklearn.metrics import balanced_accuracy_score

        head = getattr(self.module_, "_orig_mod", self.module_).get_submodule(self.head_)
        original = head.weight.detach().clone()
        y = valid.target.numpy()
        weight = None if valid.weight is None else valid.weight.numpy()
        scores = []
        for tau in TAU_GRID:
            with torch.no_grad():
                head.weight.copy_(tau_normalize(original, tau))
            pred = self._forward_images(valid, lambda out: out.argmax(dim=1)).numpy()
            scores.append(balanced_accuracy_score(y, pred, sample_weight=weight))
        best = float(TAU_GRID[int(np.argmax(scores))])
        with torch.no_grad():
            head.weight.copy_(tau_normalize(original, best))
        return best

    def _decision_threshold(self):
        if not isinstance(self.targets_, MultiLabelTargets):
            return None
        if isinstance(self.threshold, str):  # "auto": tuned in fit
            return self.targets_.threshold
        return check_threshold(self.threshold, len(self.classes_))

    def __sklearn_tags__(self):
        """Return scikit-learn's tags: binary, multi-class and multi-label targets."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
