"""CNNClassifier: image classification with sample and class weights."""

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from ._base import BaseCNN
from ._data import to_numpy_1d
from ._loader import ArrayDataset, LazyImageDataset
from ._sampling import check_sampler, resample_training
from .losses import CrossEntropyLoss, FocalLoss
from .nets import SmallCNN
from .weighting import (
    check_sample_weight,
    compute_class_weight,
    normalize_weights,
    warn_if_small_ess,
)

__all__ = ["CNNClassifier"]

# Constructor arguments of losses that carry per-class weights; with
# ``class_weight`` set they would weight the classes a second time.
_CLASS_WEIGHT_ARGS = ("alpha", "class_weight", "weight")


def encode_labels(y, classes=None, name="y"):
    """Encode labels as ``0..K-1``, learning ``classes`` when not given.

    Parameters
    ----------
    y : ndarray
        Labels of any shape.
    classes : None or ndarray
        Sorted known labels; labels outside them raise a ValueError.
    name : str

    Returns
    -------
    classes : ndarray
    encoded : ndarray of int64, same shape as ``y``
    """
    if classes is None:
        classes, encoded = np.unique(y, return_inverse=True)
        return classes, encoded.reshape(np.shape(y)).astype(np.int64)
    flat = np.ravel(y)
    idx = np.searchsorted(classes, flat)
    idx = np.clip(idx, 0, len(classes) - 1)
    unknown = classes[idx] != flat
    if np.any(unknown):
        raise ValueError(
            f"{name} contains labels not seen in fit: "
            f"{np.unique(flat[unknown])[:10].tolist()}; fitted classes are "
            f"{classes.tolist()}."
        )
    return classes, idx.reshape(np.shape(y)).astype(np.int64)


class CNNClassifier(ClassifierMixin, BaseCNN):
    """Convolutional image classifier with sample and class weights.

    A scikit-learn classifier built on skorch: ``fit(X, y, sample_weight,
    class_weight)`` minimises the weighted mean loss
    ``sum_i w_i l_i / sum_i w_i`` with ``w_i = sample_weight_i *
    class_weight[y_i]``. Weights are normalised once over the training set
    in float64, so each mini-batch loss is an unbiased estimate of that
    objective and weights as small as 1e-100 are handled.

    Parameters
    ----------
    module : None, nn.Module class or instance, default=None
        The network; it returns raw logits of shape ``(N, n_classes)``.
        ``None`` builds :class:`skweight.nets.SmallCNN` sized from the data at
        ``fit``; its settings are ``module__channels``,
        ``module__hidden_units``, ``module__norm``, ``module__dropout``.
    criterion : {"cross_entropy", "focal"}, loss class or instance, \
            default="cross_entropy"
        The loss. ``"focal"`` is :class:`skweight.losses.FocalLoss` with
        ``criterion__gamma`` (default 2). Class weights act as the focal
        ``alpha`` (they are applied once, per sample, before the mean).
    class_weight : None, "balanced" or dict, default=None
        Per-class weights. ``"balanced"`` weighs class ``k`` by
        ``sum(w) / (n_classes * sum(w[y == k]))`` (scikit-learn's formula,
        with sample weights). A dict maps labels to weights (others get 1).
        ``fit(class_weight=...)`` overrides it for that call.
    input_shape : None or tuple, default=None
        ``(C, H, W)`` to reshape flattened 2-D ``X`` (as imbalanced-learn
        samplers and scikit-learn transformers produce). Without it, 2-D
        ``X`` is treated as ``(N, 1, 1, n_features)``.
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
    random_state : None, int or RandomState, default=None
        Seeds weight initialisation, shuffling, dropout and the validation
        split: the same seed gives the same model.
    device : "auto", "cpu", "cuda" or torch.device, default="auto"
        ``"auto"`` uses CUDA when available.
    precision : {"32", "bf16", "fp16"}, default="32"
        Mixed precision on CUDA (ignored on the CPU).
    channels_last : bool, default=False
        Use the channels-last memory format on CUDA (ignored on the CPU).
    data_device_fraction : float, default=0.5
        On CUDA the training data live on the GPU when they take less than
        this share of its free memory, else in pinned host memory.
    optimizer : torch optimizer class, default=torch.optim.AdamW
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=64
        ``-1`` trains on the full batch.
    train_split : None, float or callable, default=None
        ``None`` trains on all data. A float holds out that fraction, seeded
        by ``random_state`` and stratified by class, to report a weighted
        ``valid_loss`` (use it with ``skorch.callbacks.EarlyStopping``). A
        callable such as ``skorch.dataset.ValidSplit`` is used as in skorch.
    callbacks : None or list, default=None
        skorch callbacks.
    verbose : int, default=0
        ``1`` prints skorch's epoch table.
    warm_start : bool, default=False
    compile : bool, default=False
        ``torch.compile`` the module.
    **kwargs
        Other skorch parameters with their prefixes: ``module__*``,
        ``criterion__*``, ``optimizer__*``, ``iterator_train__*``,
        ``callbacks__*``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels.
    class_weight_ : None or ndarray of shape (n_classes,)
        The class weights used in the last ``fit``, aligned with ``classes_``
        (with a ``sampler``: computed on the resampled training data).
    input_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    n_features_in_ : int
        Number of features of ``X`` as passed to ``fit`` (``C*H*W`` for images).
    module_ : nn.Module
        The trained network.
    history_ : skorch.History
        Per-epoch losses and timings.

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

    _named_criteria = {"cross_entropy": CrossEntropyLoss, "focal": FocalLoss}

    def __init__(self, module=None, *, criterion="cross_entropy", class_weight=None,
                 input_shape=None, sampler=None, random_state=None, device="auto",
                 precision="32", channels_last=False, data_device_fraction=0.5,
                 optimizer=torch.optim.AdamW, lr=1e-3, max_epochs=20, batch_size=64,
                 train_split=None, callbacks=None, verbose=0, warm_start=False,
                 compile=False, **kwargs):
        super().__init__(
            module, criterion, input_shape=input_shape, random_state=random_state,
            device=device, precision=precision, channels_last=channels_last,
            data_device_fraction=data_device_fraction, optimizer=optimizer, lr=lr,
            max_epochs=max_epochs, batch_size=batch_size, train_split=train_split,
            callbacks=callbacks, verbose=verbose, warm_start=warm_start,
            compile=compile, **kwargs,
        )
        self.class_weight = class_weight
        self.sampler = sampler

    # -- fitting ----------------------------------------------------------

    def fit(self, X, y, sample_weight=None, class_weight=None, **fit_params):
        """Train the network from scratch.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images ``(N, C, H, W)`` or ``(N, H, W)``, or flattened
            ``(N, C*H*W)`` with ``input_shape``. ``uint8`` is scaled to [0, 1].
        y : array-like of shape (N,)
            Labels of any type.
        sample_weight : None or array-like of shape (N,)
            Non-negative weights; weight 0 leaves a sample out, integer
            weight k counts it k times.
        class_weight : None, "balanced" or dict
            Overrides the constructor's ``class_weight`` for this call.
        **fit_params
            Passed to the module's ``forward``, as in skorch.

        Returns
        -------
        self : CNNClassifier
        """
        dataset = self._prepare(
            X, y, sample_weight, {"class_weight": class_weight}, reset=True
        )
        return self._run_training(dataset, fit_params, "fit")

    def partial_fit(self, X, y, classes=None, sample_weight=None, class_weight=None,
                    **fit_params):
        """Continue training (or start, on the first call) for ``max_epochs``.

        Parameters
        ----------
        X, y, sample_weight, class_weight, **fit_params
            As in :meth:`fit`.
        classes : None or array-like
            All labels; needed on the first call if ``y`` lacks some of them.

        Returns
        -------
        self : CNNClassifier
        """
        first = not (self.initialized_ and hasattr(self, "classes_"))
        dataset = self._prepare(
            X, y, sample_weight,
            {"class_weight": class_weight, "classes": classes if first else None},
            reset=first,
        )
        return self._run_training(dataset, fit_params, "partial_fit")

    def _check_params(self):
        super()._check_params()
        check_sampler(self.sampler)

    def set_params(self, **params):
        """Set parameters, including nested ones of the sampler.

        Parameters
        ----------
        **params
            Estimator parameters; ``sampler__<name>`` sets ``<name>`` on the
            sampler object.

        Returns
        -------
        self : CNNClassifier
        """
        nested = {k: params.pop(k) for k in list(params) if k.startswith("sampler__")}
        super().set_params(**params)
        if nested:
            if not hasattr(self.sampler, "set_params"):
                raise ValueError(
                    f"Cannot set {sorted(nested)}: sampler={self.sampler!r} has "
                    f"no parameters."
                )
            self.sampler.set_params(
                **{k[len("sampler__"):]: v for k, v in nested.items()}
            )
        return self

    def _validate_targets(self, y, image_shape, reset, classes=None):
        n_samples = image_shape[0]
        y = to_numpy_1d(y)
        if len(y) != n_samples:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"X has {n_samples}, y has {len(y)}."
            )
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        check_classification_targets(y)
        if type_of_target(y) not in ("binary", "multiclass"):
            raise ValueError(
                f"CNNClassifier supports binary and multiclass targets, got "
                f"{type_of_target(y)!r}."
            )
        if reset:
            known = None if classes is None else np.unique(classes)
            classes, encoded = encode_labels(y, known)
            if len(classes) < 2:
                raise ValueError(
                    f"y has only one class ({classes[0]!r}); a classifier "
                    f"needs at least 2 classes."
                )
            self.classes_ = classes
        else:
            _, encoded = encode_labels(y, self.classes_)
        return torch.from_numpy(encoded)

    def _element_weights(self, y, sample_weight, fit_kwargs):
        y = y.numpy()
        sw = check_sample_weight(sample_weight, len(y))
        requested = fit_kwargs.get("class_weight")
        if requested is None:
            requested = self.class_weight
        cw = compute_class_weight(requested, y, self.classes_, sw)
        self.class_weight_ = cw
        if self.sampler is not None:
            # Class weights are folded in after resampling, from the
            # resampled data (get_split_datasets).
            self._class_weight_request_ = requested
            return sw
        if cw is None:
            return sw
        per_sample = cw[y]
        return per_sample if sw is None else sw * per_sample

    def _stratify_labels(self, dataset):
        return dataset.y.numpy()

    def get_split_datasets(self, X, y=None, **fit_params):
        """Split, resample the training part with ``sampler``, weigh both."""
        if self.sampler is not None and isinstance(X, LazyImageDataset):
            raise ValueError(
                f"sampler={self.sampler!r} needs the images in memory; with a "
                f"torch Dataset as X use skorch's iterator_train__sampler (e.g. "
                f"torch.utils.data.WeightedRandomSampler) instead."
            )
        if self.sampler is None or not isinstance(X, ArrayDataset):
            return super().get_split_datasets(X, y, **fit_params)
        train, valid = self._split(X, **fit_params)
        rng = np.random.default_rng([self._shuffle_seed_, self._split_seed_])
        sample = resample_training(self.sampler, train, self.classes_, rng)
        train = sample.dataset
        y_train = train.y.numpy()
        sw = None if train.weight is None else train.weight.numpy()
        served = sample.counts if sw is None else sample.counts * sw
        cw = compute_class_weight(
            self._class_weight_request_, y_train, self.classes_, served
        )
        self.class_weight_ = cw
        w = _fold(sw, cw, y_train)
        if w is not None:
            if not np.any(w * sample.counts > 0):
                raise ValueError(
                    "All samples the sampler kept have weight 0; nothing to "
                    "learn from."
                )
            if sample.epochs is not None:
                warn_if_small_ess(w[sample.epochs.first], self._weighted_what)
            else:
                warn_if_small_ess(w, self._weighted_what)
            train = train.with_weight(
                torch.from_numpy(_normalize_served(w, sample.counts).astype(np.float32))
            )
        if valid is not None:
            w_valid = _fold(
                None if valid.weight is None else valid.weight.numpy(), cw,
                valid.y.numpy(),
            )
            if w_valid is not None:
                valid = self._place(self._normalise(
                    valid.with_weight(torch.from_numpy(w_valid)), warn=False
                ))
            else:
                valid = self._place(valid)
        self._epoch_rows_ = sample.epochs
        return self._place(train), valid

    def _epoch_indices(self, dataset):
        # The rows were drawn for the training set get_split_datasets just
        # returned; they live on the estimator only until the iterator has
        # them (so a fitted model never pickles the training data).
        return self.__dict__.pop("_epoch_rows_", None)

    def _default_module(self, **kwargs):
        c, h, w = self.input_shape_
        return SmallCNN(in_channels=c, n_outputs=len(self.classes_), image_size=(h, w),
                        **kwargs)

    def initialize_criterion(self):
        """Instantiate the loss; refuse class weights given twice."""
        super().initialize_criterion()
        if getattr(self, "class_weight_", None) is not None:
            doubled = [a for a in _CLASS_WEIGHT_ARGS
                       if getattr(self.criterion_, a, None) is not None]
            if doubled:
                raise ValueError(
                    f"class_weight is set and the criterion also has "
                    f"{doubled[0]}={getattr(self.criterion_, doubled[0])!r}: "
                    f"class weights would be applied twice. Set only "
                    f"class_weight (it acts as the focal alpha)."
                )
        return self

    # -- prediction -------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images, as in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (N, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        self.check_is_fitted()
        images = self._validate_X(X, reset=False)
        logits = self._forward_images(images)
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X):
        """Most probable label for each image.

        Parameters
        ----------
        X : array-like or torch.Tensor

        Returns
        -------
        y : ndarray of shape (N,)
        """
        self.check_is_fitted()
        images = self._validate_X(X, reset=False)
        index = self._forward_images(images).argmax(dim=1).numpy()
        # skorch's EpochScoring compares with the internal (encoded) targets.
        return index if isinstance(X, ArrayDataset) else self.classes_[index]

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        self.check_is_fitted()
        images = self._validate_X(X, reset=False)
        logits = self._forward_images(images)
        return torch.log_softmax(logits.double(), dim=1).numpy()


def _fold(sample_weight, class_weight, y):
    """Per-sample weights ``sample_weight * class_weight[y]`` (None if both are)."""
    if class_weight is None:
        return sample_weight
    per_sample = class_weight[y]
    return per_sample if sample_weight is None else sample_weight * per_sample


def _normalize_served(weights, counts):
    """Scale weights to mean 1 over the rows served per epoch (``counts``)."""
    w = normalize_weights(weights)
    return w / (np.dot(counts, w) / counts.sum())
