"""The estimator core: one base class whose ``fit`` every estimator follows.

:class:`BaseCNN` is a skorch ``NeuralNet``; each estimator is the base plus
what differs (its parameters, docs, targets and default network). Three of
skweight's classes stand in an estimator's MRO: the estimator,
:class:`BaseCNN`, and :class:`~skweight._fit.loop.TrainingLoop` (skorch's
loop overrides, which must sit on the net). Everything else is a plain
function, or the target object ``targets_`` (the protocol in
:mod:`skweight._fit.targets`; the kinds in :mod:`skweight._fit.labels` and
:mod:`skweight._fit.real`).

The path of ``fit``
-------------------

======================================  ============================================
step                                    where
======================================  ============================================
1. check the parameters                 ``_check_params`` (estimators extend it)
2. check the images (kept as stored)    ``_validate_X`` -> ``data.check_images``
3. check the sample weights             ``_validation.check_sample_weight``; scaled
                                        to a maximum of 1 in float64
4. check and learn the targets          ``_check_targets``, ``_learn_targets``
                                        (estimators) -> ``targets_``
                                        (``LabelTargets``, ``MultiLabelTargets``
                                        or ``RealTargets``), ``targets_.encode``
5. draw the seeds, set up processes     ``seeding.draw_seeds``, ``distributed``
6. split off the validation set         ``weight_path.split_validation`` (rows,
                                        not copies)
7. resample the training split          ``_resample`` (classifier: ``sampling``)
8. class weights from the rows served   ``targets_.learn_class_weights``
9. fold and normalise the weights       ``weight_path.weigh``: ``sample_weight x
                                        class_weight[y] x mask``, mean 1,
                                        float64, then float32; training and
                                        validation alike
10. build the network, loss, optimizer  ``initialize`` (skorch):
                                        ``initialize_module`` (``_default_module``,
                                        or a copy of the user's instance), then
                                        ``_adapt_module`` (``pretrained``: head,
                                        input channels, ``freeze``, input
                                        statistics); the loss gets what the
                                        targets supply (``criterion_defaults``);
                                        the optimizer's groups (``optim``)
11. train                               ``TrainingLoop._fit_loop``: each batch is
                                        prepared on the device (scaled,
                                        normalised), each mini-batch loss is
                                        ``mean(w_i l_i)``; phases switch the data
                                        (``reweight_from_epoch``), the loss's
                                        prior and the decoupled stage; frozen
                                        parts are released at
                                        ``unfreeze_from_epoch``
12. finish                              ``_after_fit`` (regressor: collapse
                                        warning; classifier: tuned thresholds,
                                        tau-norm)
======================================  ============================================

Hooks (a default here, overridden by the estimators named):

- ``_check_params``: all three extend it with their own parameters;
- ``_check_targets``, ``_learn_targets``, ``_default_module``: each estimator
  (no default);
- ``_weight_extra_shape``: per pixel for the segmenter; the classifier adds
  per (sample, label);
- ``_resample``: none here; the classifier's ``sampler=``;
- ``_prepare_X``: nothing here; the segmenter reads 4-D ``X`` with
  masks of its shape as one-channel volumes;
- ``_criterion_for``: the named losses; the classifier and the segmenter
  pick the sigmoid forms for multi-label targets;
- ``_decision_threshold``: 0.5 for overlapping masks; the classifier's
  ``threshold``;
- ``_after_fit``: nothing here; the regressor's collapse check, the
  classifier's thresholds and tau-norm.

Prediction is ``_outputs`` (checked images -> network outputs, batch by
batch, each batch transformed where it was computed) followed by
``targets_`` (probabilities and labels, or values in the user's units); the
segmenter overrides ``_outputs`` for tiled prediction.
"""

import copy
import inspect
import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names, check_is_fitted
from skorch import NeuralNet
from skorch.dataset import Dataset as SkorchDataset
from skorch.utils import is_dataset

from .._seeding import draw_seeds, seeded_section
from .._validation import check_bool, check_int, check_real, check_sample_weight
from .data import check_images, check_input_scale, check_input_shape
from .distributed import check_distributed, data_parallel
from .loader import ArrayDataset, LazyImageDataset
from .loop import PRECISIONS, TrainingLoop, resolve_device, resolve_optimizer
from .persistence import load_files, resolve_files, restore_learned, save_learned
from .pretrained import (
    LearnedScale,
    adapt_input_channels,
    check_channels_stats,
    check_pretrained_params,
    find_head,
    frozen_norm_layers,
    frozen_parameters,
    replace_head,
    starting_copy,
)
from .targets import check_prior_tau
from .threads import worker_threads
from .weight_path import Served, TrainingPhase, split_validation, weigh

__all__ = ["BaseCNN", "shared_parameters"]


def shared_parameters(arguments):
    """Pick the parameters ``BaseCNN`` stores from an estimator's ``__init__`` arguments.

    Parameters
    ----------
    arguments : dict
        The estimator's ``locals()`` at the top of its ``__init__``: its
        parameters, ``self`` and ``kwargs`` (skorch's prefixed settings).

    Returns
    -------
    arguments : dict
        The keyword arguments of ``BaseCNN.__init__``.
    """
    shared = {name: arguments[name] for name in _BASE_PARAMETERS if name in arguments}
    return {**shared, **arguments.get("kwargs", {})}


def _accepts(callable_, name):
    try:
        return name in inspect.signature(callable_).parameters
    except (TypeError, ValueError):
        return False

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


class BaseCNN(TrainingLoop, NeuralNet):
    """Base class of the skweight estimators; not for direct use.

    See the module docstring for the path from ``fit`` to the loss and the
    hooks the estimators override.
    """

    #: criterion name -> loss class; filled by the estimators.
    _named_criteria = {}
    #: Whether H and W at predict time must equal those seen in fit.
    _match_spatial = True
    #: The numbers of spatial dimensions the estimator takes (2: images).
    _spatial_ndims = (2,)
    #: Whether ``sample_weight`` may be given per pixel (segmenters).
    _pixel_weights = False
    #: What one sample is, for messages.
    _sample_unit = "sample"
    #: Whether the default network runs channels-last on the CPU, where
    #: oneDNN's convolutions are faster in it (the segmenter's U-Net).
    _default_channels_last_on_cpu = False
    #: Parameters holding objects whose own parameters are set as
    #: ``<name>__<param>`` (scikit-learn's nested convention).
    _nested_params = ("augment",)
    #: Fitted attributes besides the network's weights that prediction needs
    #: (saved by ``save_params`` and restored by ``load_params``).
    _learned_attributes = ("input_shape_", "n_features_in_", "feature_names_in_",
                           "targets_")

    def __init__(self, module=None, criterion=None, *, input_shape=None,
                 input_scale="auto", input_mean=None, input_std=None, head="auto",
                 freeze=None, unfreeze_from_epoch=None, backbone_lr=None,
                 random_state=None, device="auto", precision="32",
                 channels_last=False, data_device_fraction=0.5,
                 optimizer=torch.optim.AdamW, lr=1e-3, weight_decay=0.0, max_epochs=20,
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
        self.weight_decay = weight_decay
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
        self.input_scale = input_scale
        self.input_mean = input_mean
        self.input_std = input_std
        self.head = head
        self.freeze = freeze
        self.unfreeze_from_epoch = unfreeze_from_epoch
        self.backbone_lr = backbone_lr
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

    # -- parameters -----------------------------------------------------------

    def _get_param_names(self):
        # skorch keeps bookkeeping such as ``_params_to_validate`` in
        # ``__dict__``; it is not a hyper-parameter. skorch's own settings
        # that only reach the estimators through ``**kwargs`` are parameters
        # once set to something else than skorch's default: otherwise every
        # repr would list them (clone restores the defaults anyway).
        return [
            k for k in super()._get_param_names()
            if not k.startswith("_") and not (
                k in _SKORCH_DEFAULTS and self.__dict__.get(k) is _SKORCH_DEFAULTS[k]
            )
        ]

    # scikit-learn's repr: the parameters that differ from their defaults
    # (skorch's lists the module only).
    __repr__ = BaseEstimator.__repr__

    def set_params(self, **params):
        """Set parameters; nothing is built or checked before ``fit``.

        Parameters
        ----------
        **params : dict
            Estimator parameters, including skorch's prefixed ones
            (``module__*``, ``criterion__*``, ``optimizer__*``,
            ``callbacks__*``, ...).

        Returns
        -------
        self : estimator
            The estimator, with the new parameters.
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

    def _check_params(self):
        """Validate hyper-parameters; raise clear errors before any work."""
        check_input_shape(self.input_shape, self._spatial_ndims)
        check_input_scale(self.input_scale)
        check_pretrained_params(self)
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
        check_real(self.weight_decay, "weight_decay", low=0.0)
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

    # -- input checks (steps 2 to 4) ------------------------------------------

    def _validate_X(self, X, reset):
        """Return the images as a dataset: an ArrayDataset, or a user's Dataset read lazily.

        The images stay as stored (integers as integers, shared with the
        caller's array where possible). With ``reset`` the input shape and
        number of features are learned; otherwise ``X`` must match them.
        """
        if isinstance(X, (ArrayDataset, LazyImageDataset)):
            # An internal dataset (e.g. skorch's EpochScoring predicting on
            # the validation split): its images are checked already.
            return X
        if is_dataset(X):
            return self._validate_dataset(X, reset)
        input_shape = check_input_shape(self.input_shape, self._spatial_ndims)
        if reset:
            images, raw_shape = check_images(
                X, input_shape=input_shape, ndims=self._spatial_ndims,
            )
            self.input_shape_ = tuple(images.shape[1:])
            self.n_features_in_ = int(np.prod(raw_shape[1:]))
            self._set_feature_names(X, reset=True)
        else:
            check_is_fitted(self, "input_shape_")
            self._set_feature_names(X, reset=False)
            images, _ = check_images(
                X, input_shape=input_shape, expected_shape=self.input_shape_,
                match_spatial=self._match_spatial,
                n_features=self.n_features_in_ if self._match_spatial else None,
                estimator_name=type(self).__name__, ndims=self._spatial_ndims,
            )
        self._check_input_dtype(images.dtype)
        return ArrayDataset(images)

    def _check_input_dtype(self, dtype):
        if self.input_scale is None and self.module is None and not dtype.is_floating_point:
            raise ValueError(
                f"input_scale=None passes integer inputs (here {dtype}) to the network "
                f"unscaled as int64, which the default network cannot take; use "
                f"input_scale='auto' for images, or a module of your own for ids."
            )

    def _validate_dataset(self, X, reset):
        """Validate a user's torch Dataset of images (items ``x`` or ``(x, ...)``).

        It is read lazily, item by item, at fit and at prediction alike;
        only its first item is checked here.
        """
        if len(X) == 0:
            raise ValueError("Found a Dataset with 0 sample(s) while a minimum of 1 "
                             "is required.")
        data = LazyImageDataset(X)
        first = data.image(0)
        if reset:
            self.input_shape_ = tuple(first.shape)
            self.n_features_in_ = int(first.numel())
            self.__dict__.pop("feature_names_in_", None)
        else:
            check_is_fitted(self, "input_shape_")
        check_images(first[None], expected_shape=None if reset else self.input_shape_,
                     match_spatial=self._match_spatial,
                     estimator_name=type(self).__name__, ndims=self._spatial_ndims)
        self._check_input_dtype(first.dtype)
        return data

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

    def _validate_fit_data(self, X, y, sample_weight, reset, classes=None):
        """Check everything ``fit`` receives (steps 2 to 4); return one dataset of it."""
        X = self._prepare_X(X, y)
        images = self._validate_X(X, reset=reset)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                f"is None."
            )
        shape = tuple(images.shape)
        spatial = shape[2:]
        extra = self._weight_extra_shape(y, spatial)
        element = "label" if extra is not None and len(extra) == 1 else (
            "pixel" if len(spatial) == 2 else "voxel"
        )
        sw = check_sample_weight(sample_weight, shape[0], extra_shape=extra,
                                 unit=self._sample_unit, element=element)
        if sw is not None:
            # Only ratios matter: weights of any magnitude become numbers
            # near 1 before anything is computed from them.
            sw = sw / sw.max()
        y = self._check_targets(y, shape[0], spatial)
        if reset:
            self.targets_ = self._learn_targets(y, sw, classes)
        target, mask = self.targets_.encode(y, continuing=not reset)
        sw = self.targets_.element_sample_weight(sw, tuple(target.shape))
        weight = None if sw is None else torch.from_numpy(sw)
        mask = None if mask is None else torch.from_numpy(mask)
        return images.replace(target=target, weight=weight, mask=mask,
                              decode=self.targets_.decode)

    # -- hooks of the estimators ------------------------------------------------

    def _prepare_X(self, X, y):
        """Return ``X`` as the image checks should read it (``y``: None at prediction)."""
        return X

    def _check_targets(self, y, n_samples, spatial):
        """Check ``y`` against ``n_samples`` images of shape ``spatial``; return it."""
        raise NotImplementedError

    def _weight_extra_shape(self, y, spatial):
        """Return the trailing shape ``sample_weight`` may have besides ``(N,)``.

        ``y`` is the targets as given (not checked yet).
        """
        return spatial if self._pixel_weights else None

    def _learn_targets(self, y, sample_weight, classes):
        """Learn the target object (``targets_``) from checked targets."""
        raise NotImplementedError

    def _resample(self, train):
        """Return the training rows served per epoch (:class:`Served`); no resampling."""
        return Served(train)

    def _default_module(self, **kwargs):
        """Build the default network, sized from the data."""
        raise NotImplementedError

    def _after_fit(self, data, valid):
        """Finish the fit with the data and the validation split (nothing by default)."""

    def _criterion_for(self, name):
        """Return the loss class of a criterion name."""
        return self._named_criteria[name]

    def _decision_threshold(self):
        """Return the thresholds of ``predict`` (None: the most probable class).

        Overlapping masks (multi-label targets) are thresholded at 0.5.
        """
        if hasattr(self.targets_, "threshold"):
            return np.full(self.targets_.n_outputs, 0.5)
        return None

    # -- the fit template (steps 5 to 12) ---------------------------------------

    def _fit(self, X, y, sample_weight=None, *, class_weight=None, classes=None,
             partial=False, fit_params=None):
        """Fit by the one training path of every estimator (see the module docstring).

        Parameters
        ----------
        X, y, sample_weight
            As given to ``fit``.
        class_weight : None, "balanced" or dict
            ``fit``'s own ``class_weight``, which overrides the parameter.
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
            valid = self._train(data, X, y, class_weight, partial, continuing,
                                fit_params, device, dp)
        self._after_fit(data, valid)
        return self

    def _train(self, data, X, y, class_weight, partial, continuing, fit_params, device,
               dp):
        """Run steps 6 to 11 of the fit template, in the seeded section."""
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
                phases, valid = self._training_data(data, class_weight, split_params,
                                                    first_epoch)
                self._training_prior_ = phases[0].class_prior
                if not continuing:
                    self.initialize()
                else:
                    self._set_frozen(self._frozen_at(first_epoch))
                self._refuse_double_weights(class_weight)
                trained = len(self.history)
                self.notify("on_train_begin", X=X, y=y)
                # A callback may have restored a checkpoint's history (skorch's
                # LoadInitState, e.g. after torchrun restarted the script):
                # the fit then finishes that run rather than adding max_epochs.
                restored = len(self.history) - trained
                try:
                    self._fit_loop(phases, valid, forward_params, epochs=(
                        max(self.max_epochs - restored, 0) if restored > 0 else None))
                except KeyboardInterrupt:
                    pass
                self.notify("on_train_end", X=X, y=y)
            if dp is not None:
                # A checkpoint may have reloaded its best weights on process 0.
                dp.broadcast_module(self.module_)
            return valid
        finally:
            object.__setattr__(self, "verbose", verbose)
            self.__dict__.pop("_dp_", None)
            self.__dict__.pop("_training_prior_", None)

    def _training_data(self, data, class_weight, split_params, first_epoch=1):
        """Split, resample and weigh (steps 6 to 9): training phases and validation set.

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
        targets = self.targets_
        train, valid = split_validation(
            data, self.train_split, seed=self._seeds_.split,
            stratify=targets.stratify(data), split_params=split_params,
        )
        served = self._resample(train)
        requested = getattr(self, "class_weight", None) if class_weight is None else (
            class_weight
        )
        class_weights = targets.learn_class_weights(requested, served)
        targets.learn_training_prior(train)

        def weighed(dataset, weights, counts, training=True):
            return weigh(dataset, weights, counts, training=training,
                         unit=targets.weight_unit(self._sample_unit),
                         sources=self._weight_sources())

        # Only the label estimators have reweight_from_epoch; the others
        # apply their (sample) weights from the start.
        start = getattr(self, "reweight_from_epoch", None)
        start = first_epoch if start is None else max(int(start), first_epoch)
        phases = []
        if start > first_epoch:
            plain = weighed(train, None, None)
            phases.append(TrainingPhase(first_epoch, self._place(plain), None,
                                        targets.seen_prior(plain, None)))
        weighted = weighed(served.dataset, class_weights, served.counts)
        # The decoupled recipes retrain (or rescale) the head alone in the
        # second phase (classifier only; checked with its parameters).
        stage = getattr(self, "decoupled", None) if phases else None
        phases.append(TrainingPhase(start, self._place(weighted), served.epoch_rows,
                                    targets.seen_prior(weighted, served.counts),
                                    stage if stage in ("crt", "lws") else None))
        if valid is not None:
            valid = self._place(weighed(valid, class_weights, None, training=False),
                                training=False)
        return phases, valid

    def _weight_sources(self):
        """Where weights come from besides sample_weight, for messages."""
        sources = [name for name in ("class_weight", "ignore_index") if hasattr(self, name)]
        if getattr(self, "sampler", None) is not None:
            sources.append("the sampler")
        if not sources:
            return ""
        if len(sources) == 1:
            return f" and {sources[0]}"
        return ", " + ", ".join(sources[:-1]) + f" and {sources[-1]}"

    def get_split_datasets(self, X, y=None, **fit_params):
        """Return the training and validation datasets ``fit`` would train on.

        Parameters
        ----------
        X : array-like, tensor or Dataset
            Images (or an internal dataset).
        y : array-like or None
            Targets, as in ``fit``.
        **fit_params : dict
            ``sample_weight`` and ``class_weight`` (as in ``fit``), and
            parameters of the validation splitter.

        Returns
        -------
        train : dataset
            The training rows, with their normalised weights.
        valid : dataset or None
            The validation rows.
        """
        sample_weight = fit_params.pop("sample_weight", None)
        class_weight = fit_params.pop("class_weight", None)
        if not isinstance(X, (ArrayDataset, LazyImageDataset)):
            X = self._validate_fit_data(X, y, sample_weight, reset=False)
        if not hasattr(self, "_seeds_"):
            self._seeds_ = draw_seeds(self.random_state)
        phases, valid = self._training_data(X, class_weight, fit_params)
        return phases[-1].dataset, valid

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

    # -- components (step 10) -------------------------------------------------

    def initialize_module(self):
        """Build the network: the default one sized from the data, or the user's.

        Returns
        -------
        self : estimator
            With ``module_`` set.
        """
        kwargs = self.get_params_for("module")
        if self.module is None:
            if not hasattr(self, "input_shape_"):
                raise ValueError(
                    "The default network (module=None) is sized from the data; "
                    "call fit(X, y) instead of initialize()."
                )
            module = self._default_module(**kwargs)
        elif isinstance(self.module, torch.nn.Module):
            if kwargs:
                raise ValueError(
                    f"module is an instance ({type(self.module).__name__}) and "
                    f"{sorted('module__' + k for k in kwargs)} are set: an instance is "
                    f"a starting point trained as it is, and skorch would rebuild it "
                    f"from its class (its weights lost). Pass the class with its "
                    f"settings, or the instance without module__* parameters."
                )
            # A starting point, never trained itself: every fit, clone and
            # search fold starts from the caller's weights.
            module = starting_copy(self.module)
        else:
            module = self.initialized_instance(self.module, kwargs)
        self.module_ = module
        if "targets_" in self.__dict__:
            self._adapt_module(module)
        return self

    def _adapt_module(self, module):
        """Fit the network to the data: its head, its input channels, what is frozen."""
        self.head_ = None
        if self.head is not None and self.module is not None:
            name, layer = find_head(module, self.head, spatial=self._pixel_weights)
            n_outputs = self.targets_.n_outputs
            if (layer.out_features if isinstance(layer, torch.nn.Linear)
                    else layer.out_channels) != n_outputs:
                replace_head(module, name, n_outputs)
            self.head_ = name
        elif self.module is None:
            # The default networks' heads: for freeze, backbone_lr and the
            # decoupled recipes.
            self.head_ = find_head(module, "auto", spatial=self._pixel_weights)[0]
        self.input_adapted_ = adapt_input_channels(module, self.input_shape_[0])
        names = frozen_parameters(module, self.freeze, self.head_)
        self._frozen_names_ = names
        self._set_frozen(bool(names))
        mean = check_channels_stats(self.input_mean, "input_mean", self.input_shape_[0])
        std = check_channels_stats(self.input_std, "input_std", self.input_shape_[0])
        self._input_norm_ = None if mean is None and std is None else (
            np.zeros(self.input_shape_[0]) if mean is None else mean,
            np.ones(self.input_shape_[0]) if std is None else std,
        )

    def _frozen_at(self, epoch):
        """Whether ``freeze`` holds at ``epoch`` (1-based, over the history)."""
        start = self.unfreeze_from_epoch
        frozen = bool(self.__dict__.get("_frozen_names_"))
        return frozen and (start is None or epoch < start)

    def _unfreezes(self, epoch):
        """Whether the frozen parameters are released at ``epoch``."""
        return (self.unfreeze_from_epoch == epoch
                and bool(self.__dict__.get("_frozen_names_")))

    def _start_stage(self, stage):
        """Begin a decoupled stage: only the head learns (cRT), or a scale per class (LWS).

        cRT (classifier re-training) re-initialises the head, in place, and
        freezes the rest; LWS (learnable weight scaling) freezes everything
        and learns one factor per class on the head's outputs (Kang et al.,
        ICLR 2020). The sampler and class weights of this phase make it
        class-balanced.
        """
        module = getattr(self.module_, "_orig_mod", self.module_)
        head = module.get_submodule(self.head_)
        in_head = {id(p) for p in head.parameters()}
        names = [n for n, p in module.named_parameters()
                 if stage == "lws" or id(p) not in in_head]
        self._set_frozen(False)
        self._frozen_names_ = names
        self._set_frozen(True)
        if stage == "crt":
            head.reset_parameters()
            for param in head.parameters():
                self.optimizer_.state.pop(param, None)
        else:
            scale = LearnedScale(self.targets_.n_outputs).to(head.weight.device)
            scale.attach(head)
            self.optimizer_.add_param_group({"params": [scale.scale], "weight_decay": 0.0})

    def _end_stages(self):
        """After training: fold a learned scale into the head; unfreeze what was frozen."""
        module = getattr(self.module_, "_orig_mod", self.module_)
        head_name = self.__dict__.get("head_")
        head = None if head_name is None else module.get_submodule(head_name)
        scale = getattr(head, "lws", None)
        if scale is not None:
            scale.fold(head)
            self.optimizer_.param_groups = [
                g for g in self.optimizer_.param_groups
                if not any(p is scale.scale for p in g["params"])
            ]
            self.optimizer_.state.pop(scale.scale, None)
        self._set_frozen(False)

    def _set_frozen(self, frozen):
        """Freeze (or unfreeze) the parameters ``freeze`` names; frozen norms in eval."""
        names = set(self.__dict__.get("_frozen_names_", ()))
        module = getattr(self.module_, "_orig_mod", self.module_)  # torch.compile'd
        for name, param in module.named_parameters():
            if name in names:
                param.requires_grad_(not frozen)
        self._frozen_norms_ = frozen_norm_layers(module) if frozen else []

    def initialize_criterion(self):
        """Instantiate the loss, deciding how it receives weights.

        Returns
        -------
        self : estimator
            With ``criterion_`` and ``criterion_call_`` set.
        """
        crit = self.criterion
        if isinstance(crit, str):
            crit = self._criterion_for(crit)
        kwargs = self.get_params_for("criterion")
        targets = self.__dict__.get("targets_")  # None: initialize() before fit
        if not isinstance(crit, torch.nn.Module) and targets is not None:
            prior = self.__dict__.get("_training_prior_")
            kwargs = targets.criterion_defaults(crit, kwargs, prior)
            seeds = self.__dict__.get("_seeds_")
            if seeds is not None and "random_state" not in kwargs and _accepts(
                crit, "random_state"
            ):
                # A loss that draws (e.g. Balanced MSE's mixture) is seeded by
                # the estimator: the same random_state, the same model.
                kwargs["random_state"] = seeds.torch
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

    def _refuse_double_weights(self, class_weight):
        """Refuse a loss that would apply the estimator's class or target weights again."""
        requested = getattr(self, "class_weight", None) if class_weight is None else (
            class_weight
        )
        if requested is None:
            requested = getattr(self, "target_weight", None)
        duplicated = self.targets_.duplicated_weights(requested)
        if duplicated is None:
            return
        setting, names, what = duplicated
        crit = getattr(self.criterion_, "_orig_mod", self.criterion_)
        if names is None:
            # skweight's losses name their class-weight argument; for others
            # the names torch's losses use.
            names = getattr(crit, "_class_weight_name", None)
            names = (names,) if names else ("weight", "class_weight")
        for name in names:
            value = getattr(crit, name, None)
            if value is not None:
                raise ValueError(
                    f"{setting} is set and the criterion also has {name}={value!r}: "
                    f"{what} would be applied twice. Set only the estimator's "
                    f"{setting}: it is applied to every loss."
                )

    # -- prediction ---------------------------------------------------------

    def _outputs(self, X, transform=None):
        """Validate ``X`` and return the checked module outputs, batch by batch.

        ``transform`` maps each batch's checked float32 outputs (on the
        device) to what is kept on the CPU, e.g. probabilities or labels.
        """
        self.check_is_fitted()
        images = self._validate_X(self._prepare_X(X, None), reset=False)
        spatial = tuple(images.shape[2:])
        targets = self.targets_

        def checked(out):
            out = targets.check_output(out, len(out), spatial)
            return out if transform is None else transform(out)

        with worker_threads():
            return self._forward_images(images, checked)

    def _class_prior(self):
        """Return the checked ``class_prior`` and ``prior_tau``, for the fitted classes."""
        return self.targets_.check_prior(self.class_prior), check_prior_tau(self.prior_tau)

    def predict_proba(self, X):
        """Predict class probabilities (per pixel for a segmenter).

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in ``fit``.

        Returns
        -------
        proba : ndarray of shape (N, n_classes) or (N, n_classes, H, W), float32
            Sums to 1 over axis 1, whose entries follow ``classes_``; with
            ``class_prior`` set, for that population of classes. For volumes,
            ``(N, n_classes, D, H, W)``.
        """
        self.check_is_fitted()
        (prior, tau), targets = self._class_prior(), self.targets_
        return self._outputs(X, lambda out: targets.proba(out, prior, tau)).numpy()

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in ``fit``.

        Returns
        -------
        log_proba : ndarray
            The shape of :meth:`predict_proba`'s output, float32.
        """
        self.check_is_fitted()
        (prior, tau), targets = self._class_prior(), self.targets_
        return self._outputs(
            X, lambda out: targets.log_proba(out, prior, tau).float()
        ).numpy()

    def predict(self, X):
        """Predict the most probable label (per pixel for a segmenter).

        The argmax of :meth:`predict_proba`; for multi-label targets, each
        label's probability against its threshold.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in ``fit``.

        Returns
        -------
        y : ndarray of shape (N,), (N, H, W) or (N, D, H, W)
            Labels of ``classes_`` (in their dtype). Multi-label: the 0/1
            indicator ``(N, C)`` (int64), or overlapping masks ``(N, C, H,
            W)`` (uint8).
        """
        self.check_is_fitted()
        (prior, tau), targets = self._class_prior(), self.targets_
        threshold = self._decision_threshold()
        decisions = self._outputs(
            X, lambda out: targets.decision(out, prior, threshold, tau)
        )
        return targets.labels(decisions.numpy())

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        """Raise ``NotFittedError`` unless ``fit`` has run.

        Parameters
        ----------
        attributes : None or list of str
            The fitted attributes to look for (default: the network and the
            target object).
        *args, **kwargs
            Ignored; skorch's signature.
        """
        check_is_fitted(self, attributes or ["module_", "targets_"])

    def __sklearn_is_fitted__(self):
        return "targets_" in self.__dict__ and "module_" in self.__dict__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags

    # -- persistence ------------------------------------------------------------

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
            Where to save the weights, the optimizer, the loss and the
            history (skorch's files).
        use_safetensors : bool, default=False
            Store the weights with safetensors (without the fitted
            attributes).
        **kwargs : dict
            Other ``f_*`` files, as in skorch.

        Returns
        -------
        None
            Nothing, as skorch's ``save_params``.
        """
        if f_params is None:
            # skorch's own callers (e.g. Checkpoint) name it f_module.
            f_params = kwargs.pop("f_module", None)
        if f_params is not None and not use_safetensors:
            self.check_is_fitted(["module_"])
            save_learned(self, f_params)
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
            The files to load (skorch's).
        checkpoint : None or skorch.callbacks.Checkpoint
            Load the files this checkpoint wrote.
        use_safetensors : bool, default=False
            Whether the weights were stored with safetensors.
        **kwargs : dict
            Other ``f_*`` files, as in skorch.

        Returns
        -------
        self : object
            The estimator, with what the files held.
        """
        files = resolve_files(self, checkpoint, f_params, f_optimizer, f_criterion,
                              f_history, kwargs)
        device = resolve_device(self.device)
        weights = None
        if files.get("f_params") and not use_safetensors:
            weights = load_files(files.pop("f_params"), device, self.torch_load_kwargs)
            restore_learned(self, weights)
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


#: The parameters of ``BaseCNN.__init__`` (every estimator has them).
_BASE_PARAMETERS = tuple(
    name for name, param in inspect.signature(BaseCNN.__init__).parameters.items()
    if name != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD
)
