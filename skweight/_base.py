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

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names, check_is_fitted
from skorch import NeuralNet
from skorch.dataset import Dataset as SkorchDataset
from skorch.utils import is_dataset

from ._data import check_images, check_input_shape
from ._distributed import check_distributed, data_parallel
from ._loader import ArrayDataset, LazyImageDataset
from ._persistence import PersistenceMixin
from ._seeding import draw_seeds, seeded_section
from ._threads import worker_threads
from ._training import PRECISIONS, TrainingLoop, resolve_device, resolve_optimizer
from ._validation import check_bool, check_int, check_real, check_sample_weight
from ._weight_path import WeightPathMixin

__all__ = ["BaseCNN", "resolve_device"]

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


class BaseCNN(PersistenceMixin, WeightPathMixin, TrainingLoop, NeuralNet):
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
        """The skorch training history (None before the first fit)."""
        return self.__dict__.get("_history")

    @history_.setter
    def history_(self, value):
        self.__dict__["_history"] = value

    @property
    def virtual_params_(self):
        """The skorch virtual parameters (e.g. ``optimizer__lr``)."""
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
        check_int(self.max_epochs, "max_epochs", low=0)
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
        """Validate a user's torch Dataset of images (items ``x`` or ``(x, ...)``).

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
        """Fit by the one training path of every estimator (see the module docstring).

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
        """Run steps 2 to 6 of the fit template, in the seeded section."""
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

    def _after_fit(self, data):
        """Run after training: a hook (e.g. for sanity checks on predictions)."""

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
        """Add the settings the estimator supplies to a loss class (e.g. a class prior)."""
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
        """Validate ``X`` and return the checked module outputs (float32 CPU tensor)."""
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags
