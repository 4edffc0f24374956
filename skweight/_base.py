"""The weighted-training core shared by all skweight estimators.

:class:`BaseCNN` is a skorch ``NeuralNet`` whose ``fit`` follows one path,
the same for every estimator:

1. check the parameters, the images, the targets and the sample weights
   (once; the weights are scaled to a maximum of 1 in float64, so their
   unit no longer matters);
2. split off the validation set (seeded; stratified for classifiers);
3. resample the training split (``sampler=``, classifiers);
4. compute the class weights from the rows actually trained on, and fold
   ``sample_weight x class_weight[y] x mask`` into one weight per element
   (:func:`skweight.weighting.fold_weights`), for the training and the
   validation split alike;
5. normalise each split's weights once, in float64, to mean 1 and cast them
   to float32;
6. train (:class:`skweight._training.TrainingLoop`): each mini-batch loss is
   ``mean(w_i l_i)``, an unbiased estimate of ``sum_i w_i l_i / sum_i w_i``.

Subclasses only say what differs: how targets are checked and encoded
(``_validate_targets``) and decoded (``_decode_targets``), the shape of the
network's output (``_check_output``), the default network
(``_default_module``), the loss names (``_named_criteria``) and, for
classifiers, resampling and class weights.
"""

import copy
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names, check_is_fitted
from skorch import NeuralNet
from skorch.dataset import Dataset as SkorchDataset
from skorch.history import History
from skorch.utils import is_dataset

from ._data import check_images, check_input_shape
from ._distributed import check_distributed, data_parallel
from ._loader import ArrayDataset, LazyImageDataset
from ._seeding import draw_seeds, seeded_section
from ._threads import worker_threads
from ._training import PRECISIONS, TrainingLoop, resolve_device, resolve_optimizer
from ._validation import check_bool, check_real, check_sample_weight
from .weighting import fold_weights, normalize_weights, warn_if_small_ess

__all__ = ["BaseCNN", "TrainingPhase", "resolve_device"]

# skorch's own constructor parameters that the estimators take through
# ``**kwargs``, with skorch's defaults.
_SKORCH_DEFAULTS = {
    "iterator_train": torch.utils.data.DataLoader,
    "iterator_valid": torch.utils.data.DataLoader,
    "dataset": SkorchDataset,
    "predict_nonlinearity": "auto",
    "use_caching": "auto",
    "torch_load_kwargs": None,
}
class TrainingPhase(NamedTuple):
    """What the network trains on from ``start_epoch`` on (1-based, over the
    whole history)."""

    start_epoch: int
    dataset: object
    epoch_rows: object  # None, or a callable drawing each epoch's rows
    class_prior: object  # None, or the class distribution the loss sees


# Version of the learned state stored with ``save_params``.
_STATE_VERSION = 1


class BaseCNN(TrainingLoop, NeuralNet):
    """Base class of the skweight estimators; not for direct use.

    See the module docstring for the path from ``fit`` to the loss.
    """

    #: criterion name -> loss class; filled by subclasses.
    _named_criteria = {}
    #: Whether H and W at predict time must equal those seen in fit.
    _match_spatial = True
    #: What one sample is, for messages.
    _sample_unit = "sample"
    #: Fitted attributes besides the network's weights that prediction needs
    #: (saved by ``save_params`` and restored by ``load_params``).
    _learned_attributes = ("input_shape_", "n_features_in_", "feature_names_in_")

    def __init__(self, module=None, criterion=None, *, input_shape=None,
                 random_state=None, device="auto", precision="32",
                 channels_last=False, data_device_fraction=0.5,
                 optimizer=torch.optim.AdamW, lr=1e-3, max_epochs=20,
                 batch_size=64, train_split=None, callbacks=None, verbose=0,
                 warm_start=False, compile=False, augment=None, distributed="auto",
                 **kwargs):
        # Only parameters are stored here (scikit-learn's convention):
        # skorch's bookkeeping (history_, initialized_, virtual_params_) is
        # created when first used.
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.train_split = train_split
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.compile = compile
        for name, default in _SKORCH_DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        self.input_shape = input_shape
        self.augment = augment
        self.distributed = distributed
        self.random_state = random_state
        self.precision = precision
        self.channels_last = channels_last
        self.data_device_fraction = data_device_fraction
        self._params_to_validate = set(kwargs)
        vars(self).update(kwargs)

    # -- skorch's state, created lazily -------------------------------------

    @property
    def initialized_(self):
        """Whether ``initialize`` has built the module, criterion and optimizer."""
        return self.__dict__.get("_initialized", False)

    @initialized_.setter
    def initialized_(self, value):
        self.__dict__["_initialized"] = value

    @property
    def history_(self):
        """skorch's training history (None before the first fit)."""
        return self.__dict__.get("_history")

    @history_.setter
    def history_(self, value):
        self.__dict__["_history"] = value

    @property
    def virtual_params_(self):
        """skorch's virtual parameters (e.g. ``optimizer__lr``)."""
        return self.__dict__.setdefault("_virtual_params", {})

    @virtual_params_.setter
    def virtual_params_(self, value):
        self.__dict__["_virtual_params"] = value

    def __setattr__(self, name, value):
        # Parameters (no trailing underscore) are stored as given, modules
        # included: skorch's registration of torch components is for the
        # attributes it builds (module_, criterion_, optimizer_, ...).
        if name.endswith("_"):
            super().__setattr__(name, value)
        else:
            object.__setattr__(self, name, value)

    def _get_param_names(self):
        # skorch keeps bookkeeping such as ``_params_to_validate`` in
        # ``__dict__``; it is not a hyper-parameter.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def set_params(self, **params):
        """Set parameters; nothing is built or checked before ``fit``.

        Parameters
        ----------
        **params
            Estimator parameters, including skorch's prefixed ones
            (``module__*``, ``criterion__*``, ``optimizer__*``,
            ``callbacks__*``, ...).

        Returns
        -------
        self : estimator
        """
        nested = {k: params.pop(k) for k in list(params)
                  if k.split("__", 1)[0] in self._nested_params and "__" in k}
        if not self.initialized_:
            # skorch would build the callbacks at once (and fail there on a
            # bad value); they are built, and checked, when fit starts.
            callback_params = {k: params.pop(k) for k in list(params)
                               if k.startswith("callbacks")}
            for key, value in callback_params.items():
                if key != "callbacks":
                    self._params_to_validate.add(key)
                setattr(self, key, value)
        super().set_params(**params)
        for owner in self._nested_params:
            prefix = owner + "__"
            own = {k[len(prefix):]: v for k, v in nested.items() if k.startswith(prefix)}
            if not own:
                continue
            target = getattr(self, owner)
            if not hasattr(target, "set_params"):
                raise ValueError(
                    f"Cannot set {sorted(prefix + k for k in own)}: {owner}={target!r} "
                    f"has no parameters."
                )
            target.set_params(**own)
        return self

    #: Parameters holding objects whose own parameters are set as
    #: ``<name>__<param>`` (scikit-learn's nested convention).
    _nested_params = ("augment",)

    # -- parameter validation ---------------------------------------------

    def _check_params(self):
        """Validate hyper-parameters; raise clear errors before any work."""
        check_input_shape(self.input_shape, self._image_ndims())
        try:
            check_random_state(self.random_state)
        except ValueError as exc:
            raise ValueError(
                f"random_state must be None, an int or a numpy RandomState, got "
                f"{self.random_state!r}."
            ) from exc
        resolve_device(self.device)
        resolve_optimizer(self.optimizer)
        if str(self.precision) not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {sorted(PRECISIONS)}, got "
                f"{self.precision!r}."
            )
        check_bool(self.channels_last, "channels_last")
        check_bool(self.warm_start, "warm_start")
        check_real(self.data_device_fraction, "data_device_fraction", low=0.0, high=1.0)
        if not isinstance(self.max_epochs, numbers.Integral) or isinstance(
            self.max_epochs, bool
        ) or self.max_epochs < 0:
            raise ValueError(
                f"max_epochs must be a non-negative int, got {self.max_epochs!r}."
            )
        bs = self.batch_size
        if not isinstance(bs, numbers.Integral) or isinstance(bs, bool) or (
            bs <= 0 and bs != -1
        ):
            raise ValueError(
                f"batch_size must be a positive int or -1 (full batch), got {bs!r}."
            )
        if not isinstance(self.lr, numbers.Real) or isinstance(self.lr, bool) or not (
            np.isfinite(self.lr) and self.lr > 0
        ):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}.")
        ts = self.train_split
        if not (ts is None or callable(ts) or (
            isinstance(ts, numbers.Real) and not isinstance(ts, bool) and 0 < ts < 1
        )):
            raise ValueError(
                f"train_split must be None, a fraction in (0, 1) for a seeded "
                f"(stratified, for classifiers) hold-out split, or a callable "
                f"such as skorch.dataset.ValidSplit, got {ts!r}."
            )
        if not (self.callbacks is None or self.callbacks == "disable" or (
            isinstance(self.callbacks, (list, tuple))
        )):
            raise TypeError(
                f"callbacks must be None, 'disable' or a list of skorch callbacks "
                f"(or (name, callback) pairs), got {self.callbacks!r}."
            )
        check_distributed(self.distributed)
        if self.augment is not None and not callable(self.augment):
            raise TypeError(
                f"augment must be None or a callable (X, y) -> (X, y) such as "
                f"skweight.augment.RandomFlip(), got {self.augment!r}."
            )
        crit = self.criterion
        if isinstance(crit, str):
            if crit not in self._named_criteria:
                raise ValueError(
                    f"criterion={crit!r} is not a known loss for "
                    f"{type(self).__name__}; use one of "
                    f"{sorted(self._named_criteria)}, or a loss class or instance."
                )
        elif not (isinstance(crit, torch.nn.Module) or callable(crit)):
            raise TypeError(
                f"criterion must be a name ({sorted(self._named_criteria)}), a loss "
                f"class or an nn.Module instance, got {crit!r}."
            )

    # -- input checks -------------------------------------------------------

    def _validate_X(self, X, reset, lazy=False):
        """Images as a float32 tensor (or a lazy dataset of them when ``lazy``).

        With ``reset`` the input shape and number of features are learned;
        otherwise ``X`` must match them.
        """
        if isinstance(X, ArrayDataset):
            # An internal dataset (e.g. skorch's EpochScoring predicting on
            # the validation split): its images are checked already.
            return X.X
        if is_dataset(X):
            return self._validate_dataset(X, reset, lazy)
        input_shape = check_input_shape(self.input_shape, self._image_ndims())
        if reset:
            images, raw_shape = check_images(
                X, input_shape=input_shape, ndims=self._image_ndims(),
            )
            self.input_shape_ = tuple(images.shape[1:])
            self.n_features_in_ = int(np.prod(raw_shape[1:]))
            self._set_feature_names(X, reset=True)
            return images
        check_is_fitted(self, "input_shape_")
        self._set_feature_names(X, reset=False)
        images, _ = check_images(
            X, input_shape=input_shape, expected_shape=self.input_shape_,
            match_spatial=self._match_spatial,
            n_features=self.n_features_in_ if self._match_spatial else None,
            estimator_name=type(self).__name__, ndims=self._image_ndims(),
        )
        return images

    def _image_ndims(self):
        """Spatial dimensions the estimator takes (2: images)."""
        return (2,)

    def _validate_dataset(self, X, reset, lazy):
        """A user's torch Dataset of images (items ``x`` or ``(x, ...)``).

        Training reads it lazily through a DataLoader (``lazy``); prediction
        stacks its images into one tensor.
        """
        if len(X) == 0:
            raise ValueError("Found a Dataset with 0 sample(s) while a minimum of 1 "
                             "is required.")
        data = LazyImageDataset(X)
        first = data.image(0)
        name = type(self).__name__
        if reset:
            self.input_shape_ = tuple(first.shape)
            self.n_features_in_ = int(first.numel())
            self.__dict__.pop("feature_names_in_", None)
        else:
            check_is_fitted(self, "input_shape_")
        expected = None if reset else self.input_shape_
        if lazy:
            check_images(first[None], expected_shape=expected,
                         match_spatial=self._match_spatial, estimator_name=name,
                         ndims=self._image_ndims())
            return data
        images = torch.stack([data.image(i) for i in range(len(data))])
        return check_images(images, expected_shape=self.input_shape_,
                            match_spatial=self._match_spatial, estimator_name=name,
                            ndims=self._image_ndims())[0]

    def _set_feature_names(self, X, reset):
        if hasattr(X, "columns"):
            _check_feature_names(self, X, reset=reset)
        elif reset:
            self.__dict__.pop("feature_names_in_", None)
        elif hasattr(self, "feature_names_in_"):
            warnings.warn(
                f"X does not have valid feature names, but {type(self).__name__} "
                f"was fitted with feature names",
                UserWarning,
            )

    def _validate_targets(self, y, image_shape, sample_weight, reset, classes=None):
        """Targets as a tensor, and a mask of the elements that count (or None).

        Parameters
        ----------
        y : array-like
        image_shape : tuple of int
            ``(N, C, *spatial)`` of the images they go with.
        sample_weight : None or ndarray
            The validated sample weights (scaled to a maximum of 1).
        reset : bool
            Learn the fitted attributes (classes, target scaling); otherwise
            ``y`` must be compatible with them.
        classes : None or array-like
            ``partial_fit``'s list of all labels (classifiers).

        Returns
        -------
        target : torch.Tensor
        mask : None or ndarray of bool
        """
        raise NotImplementedError

    def _validate_fit_data(self, X, y, sample_weight, reset, classes=None):
        """Check everything ``fit`` receives; return one dataset of it."""
        images = self._validate_X(X, reset=reset, lazy=True)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                f"is None."
            )
        shape = tuple(images.shape)
        spatial = shape[2:]
        sw = check_sample_weight(
            sample_weight, shape[0], extra_shape=spatial if self._pixel_weights else None,
            unit=self._sample_unit, element="pixel" if len(spatial) == 2 else "voxel",
        )
        if sw is not None:
            # Only ratios matter: weights of any magnitude become numbers
            # near 1 before anything is computed from them.
            sw = sw / sw.max()
        target, mask = self._validate_targets(y, shape, sw, reset=reset, classes=classes)
        weight = None if sw is None else torch.from_numpy(sw)
        mask = None if mask is None else torch.from_numpy(mask)
        if isinstance(images, LazyImageDataset):
            return images.replace(target=target, weight=weight, mask=mask,
                                  decode=self._decode_targets)
        return ArrayDataset(images, target, weight, mask, decode=self._decode_targets)

    #: Whether ``sample_weight`` may be given per pixel (segmenters).
    _pixel_weights = False

    # -- the fit template -------------------------------------------------

    def _fit(self, X, y, sample_weight=None, *, fit_request=None, classes=None,
             partial=False, fit_params=None):
        """The one training path of every estimator (see the module docstring).

        Parameters
        ----------
        X, y, sample_weight
            As given to ``fit``.
        fit_request : dict
            Per-call settings of ``fit`` (e.g. ``{"class_weight": ...}``).
        classes : None or array-like
            ``partial_fit``'s labels.
        partial : bool
            ``partial_fit`` (continue training) rather than ``fit``.
        fit_params : dict
            Passed to the module's ``forward`` (and, with metadata routing,
            to the validation splitter).

        Returns
        -------
        self
        """
        fit_params = dict(fit_params or {})
        self._check_params()
        continuing = self.initialized_ and (partial or self.warm_start)
        reset = not (continuing and self._has_learned_state())
        data = self._validate_fit_data(X, y, sample_weight, reset=reset, classes=classes)
        self._seeds_ = draw_seeds(self.random_state)
        device = resolve_device(self.device)
        with worker_threads(), data_parallel(self.distributed, device) as dp:
            if dp is not None:
                device = dp.device(device)
                # Unseeded fits draw their seeds per process: use process 0's.
                self._seeds_ = dp.broadcast_object(self._seeds_)
            self._train(data, X, y, fit_request or {}, partial, continuing, fit_params,
                        device, dp)
        self._after_fit(data)
        return self

    def _train(self, data, X, y, fit_request, partial, continuing, fit_params, device,
               dp):
        """Steps 2 to 6 of the fit template, in the seeded section."""
        self.__dict__["_dp_"] = dp
        verbose = self.verbose
        if dp is not None and not dp.leader:
            object.__setattr__(self, "verbose", 0)  # only process 0 prints
        try:
            with seeded_section(self._seeds_.torch, device):
                self.device_ = device
                forward_params, split_params = self._route(
                    "partial_fit" if partial else "fit", fit_params
                )
                # The training data first: the loss may depend on what it
                # will see (e.g. the class prior of logit adjustment).
                first_epoch = len(self.history) + 1 if continuing else 1
                phases, valid = self._training_data(data, fit_request, split_params,
                                                    first_epoch)
                self._training_prior_ = phases[0].class_prior
                if not continuing:
                    self.initialize()
                self._refuse_double_weights(fit_request)
                self.notify("on_train_begin", X=X, y=y)
                try:
                    self._fit_loop(phases, valid, forward_params)
                except KeyboardInterrupt:
                    pass
                self.notify("on_train_end", X=X, y=y)
            if dp is not None:
                # A checkpoint may have reloaded its best weights on process 0.
                dp.broadcast_module(self.module_)
        finally:
            object.__setattr__(self, "verbose", verbose)
            self.__dict__.pop("_dp_", None)
            self.__dict__.pop("_training_prior_", None)

    def _has_learned_state(self):
        return all(hasattr(self, name) for name in self._learned_attributes
                   if name != "feature_names_in_")

    def _route(self, method, fit_params):
        """Split ``fit_params`` into module ``forward`` and splitter parameters."""
        from sklearn.utils._metadata_requests import _routing_enabled, process_routing

        if _routing_enabled():
            routed = process_routing(self, method, **fit_params)
            split_params = routed.get("splitter", {"split": {}})["split"]
            return fit_params, split_params
        return fit_params, fit_params

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
        """The epoch from which class weights and resampling apply."""
        return first_epoch

    def _learn_training_split(self, split):
        """Hook: learn class statistics of the training split (classifiers)."""

    def _seen_prior(self, dataset, counts):
        """The class distribution the loss sees in ``dataset`` (None: no classes)."""
        return None

    def get_split_datasets(self, X, y=None, **fit_params):
        """The training and validation datasets ``fit`` would train on.

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
        """The rows to train on: ``(dataset, epoch_rows, counts)``.

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
        served = w if counts is None else w * counts.reshape(
            counts.shape + (1,) * (w.ndim - 1)
        )
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
        """What the weights are attached to, plural, for messages."""
        if np.ndim(weights) > 1:
            return "pixels" if np.ndim(weights) == 3 else "voxels"
        return self._sample_unit + "s"

    def _weight_sources(self):
        """Where weights came from besides sample_weight, for messages."""
        return ""

    def _after_fit(self, data):
        """Hook run after training (e.g. sanity checks on predictions)."""

    # -- components ---------------------------------------------------------

    def initialize_module(self):
        """Build the network: the default one sized from the data, or the user's."""
        kwargs = self.get_params_for("module")
        if self.module is None:
            if not hasattr(self, "input_shape_"):
                raise ValueError(
                    "The default network (module=None) is sized from the data; "
                    "call fit(X, y) instead of initialize()."
                )
            module = self._default_module(**kwargs)
        else:
            module = self.initialized_instance(self.module, kwargs)
        self.module_ = module
        return self

    def _default_module(self, **kwargs):
        raise NotImplementedError

    def initialize_criterion(self):
        """Instantiate the loss, deciding how it receives weights."""
        crit = self.criterion
        if isinstance(crit, str):
            crit = self._named_criteria[crit]
        kwargs = self.get_params_for("criterion")
        if not isinstance(crit, torch.nn.Module):
            kwargs = self._criterion_defaults(crit, kwargs)
        instance = self.initialized_instance(crit, kwargs)
        call = self._criterion_call(instance)
        if call == "elementwise" and getattr(instance, "reduction", None) not in (
            None, "none"
        ):
            # Weighting needs per-element losses; never mutate the user's object.
            if instance is self.criterion:
                instance = copy.deepcopy(instance)
            instance.reduction = "none"
        self.criterion_ = instance
        self.criterion_call_ = call
        return self

    def _criterion_defaults(self, criterion_class, kwargs):
        """Settings the estimator supplies to a loss class (e.g. a class prior)."""
        return kwargs

    def _duplicated_weights(self, fit_request):
        """Weights the estimator applies that its criterion must not repeat.

        Returns None, or ``(setting, criterion attribute names, what)``:
        while ``setting`` is in use, a criterion that has one of those
        attributes set would apply ``what`` a second time.
        """
        return None

    def _refuse_double_weights(self, fit_request):
        duplicated = self._duplicated_weights(fit_request)
        if duplicated is None:
            return
        setting, names, what = duplicated
        crit = getattr(self.criterion_, "_orig_mod", self.criterion_)
        for name in names:
            value = getattr(crit, name, None)
            if value is not None:
                raise ValueError(
                    f"{setting} is set and the criterion also has {name}={value!r}: "
                    f"{what} would be applied twice. Set only the estimator's "
                    f"{setting}: it is applied to every loss."
                )

    # -- prediction ---------------------------------------------------------

    def _outputs(self, X):
        """Checked module outputs (float32 CPU tensor) for validated ``X``."""
        self.check_is_fitted()
        images = self._validate_X(X, reset=False)
        with worker_threads():
            out = self._forward_images(images)
        return self._check_output(out, len(images), tuple(images.shape[2:]))

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        """Raise ``NotFittedError`` unless ``fit`` has run."""
        check_is_fitted(self, attributes or ["module_", "input_shape_"])

    def __sklearn_is_fitted__(self):
        return hasattr(self, "input_shape_") and hasattr(self, "module_")

    # -- persistence ------------------------------------------------------

    def _learned_state(self):
        """What ``fit`` learned besides the network's weights, in plain types."""
        state = {"version": _STATE_VERSION, "estimator": type(self).__name__}
        for name in self._learned_attributes:
            if name in self.__dict__:
                state[name] = _to_plain(self.__dict__[name])
        return state

    def _restore_learned_state(self, state):
        for name in self._learned_attributes:
            if name in state:
                setattr(self, name, _from_plain(state[name]))

    def save_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, use_safetensors=False, **kwargs):
        """Save the network's weights, and what fit learned besides them.

        As skorch's ``save_params``; the ``f_params`` file is a plain
        ``state_dict`` (loadable into the module by ``torch.load``) that also
        carries the fitted attributes prediction needs (classes, input shape,
        target scaling) in its ``_metadata``, so that ``load_params`` on a
        fresh estimator restores a model that predicts exactly as this one.
        With ``use_safetensors=True`` only the weights are stored.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : None, str or file
        use_safetensors : bool, default=False
        **kwargs
            Other ``f_*`` files, as in skorch.
        """
        if f_params is None:
            # skorch's own callers (e.g. Checkpoint) name it f_module.
            f_params = kwargs.pop("f_module", None)
        if f_params is not None and not use_safetensors:
            self.check_is_fitted(["module_"])
            state = self.module_.state_dict()
            state._metadata["skweight"] = self._learned_state()
            torch.save(state, f_params)
            f_params = None
        return super().save_params(
            f_params=f_params, f_optimizer=f_optimizer, f_criterion=f_criterion,
            f_history=f_history, use_safetensors=use_safetensors, **kwargs,
        )

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, checkpoint=None, use_safetensors=False, **kwargs):
        """Load what ``save_params`` saved (skorch's ``load_params``).

        The fitted attributes stored with the weights are restored too; an
        estimator that is not initialised yet is then initialised from them
        (which builds the default network), so that ``load_params`` on a
        fresh estimator gives back the saved model. ``device="auto"`` is
        resolved as in ``fit``.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : None, str or file
        checkpoint : None or skorch.callbacks.Checkpoint
        use_safetensors : bool, default=False
        **kwargs
            Other ``f_*`` files, as in skorch.
        """
        files = {}
        if checkpoint is not None:
            # The history first: the checkpoint's file names may be formatted
            # from its last epoch.
            if f_history is None and checkpoint.f_history is not None:
                self.history = History.from_file(checkpoint.f_history_)
            elif self.history_ is None:
                self.history_ = History()
            files.update(checkpoint.get_formatted_files(self))
            files.pop("f_history", None)
        files.update(kwargs)
        for key, value in (("f_params", f_params), ("f_optimizer", f_optimizer),
                           ("f_criterion", f_criterion), ("f_history", f_history)):
            if value:
                files[key] = value
        if "f_module" in files:  # skorch's other name for f_params
            files["f_params"] = files.pop("f_module")
        device = resolve_device(self.device)
        weights = None
        if files.get("f_params") and not use_safetensors:
            weights = torch.load(files.pop("f_params"), map_location=device,
                                 **(self.torch_load_kwargs or {"weights_only": True}))
            learned = getattr(weights, "_metadata", {}).get("skweight")
            if learned is not None:
                self._restore_learned_state(learned)
        if not self.initialized_:
            self.initialize()
        if weights is not None:
            self.module_.load_state_dict(weights)
        if files:
            requested = self.device
            # skorch maps the files onto ``self.device``, which must be a
            # real device name for that.
            self.device = str(self.device_)
            try:
                super().load_params(use_safetensors=use_safetensors, **files)
            finally:
                self.device = requested
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("grad_scaler_", None)
        state.pop("_loop_", None)
        return state

    def __setstate__(self, state):
        requested = state.get("device", "auto")
        if requested is None or requested == "auto":
            state = dict(state)
            state["device"] = "cuda" if torch.cuda.is_available() else "cpu"
            super().__setstate__(state)
            self.device = requested
        else:
            super().__setstate__(state)
        if "module_" in self.__dict__:
            self.device_ = resolve_device(self.device)
            self.grad_scaler_ = self._make_grad_scaler()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags


def _as_dataset(ds):
    """Turn a ``Subset`` of an internal dataset (skorch's ValidSplit) back into one."""
    if isinstance(ds, (ArrayDataset, LazyImageDataset)):
        return ds
    if isinstance(ds, torch.utils.data.Subset) and isinstance(
        ds.dataset, (ArrayDataset, LazyImageDataset)
    ):
        return ds.dataset.take(np.asarray(ds.indices))
    return ds


def _to_plain(value):
    """A fitted attribute as types ``torch.load(weights_only=True)`` accepts."""
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
