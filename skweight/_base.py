"""The weighted-training core shared by all skweight estimators.

:class:`BaseCNN` is a skorch ``NeuralNet`` whose ``fit`` validates images,
targets and weights, folds class weights into per-element weights,
normalises them once over the training set (float64, mean 1) and trains on an
in-memory fast path. Each mini-batch loss is ``mean(w_i * l_i)``, an unbiased
estimate of ``sum_i w_i l_i / sum_i w_i``.
"""

import contextlib
import copy
import inspect
import numbers
import warnings

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from skorch.utils import is_dataset, to_tensor

from ._data import check_images, check_input_shape
from ._loader import (
    ArrayDataset,
    BatchIterator,
    LazyImageDataset,
    ShuffleSampler,
)
from .losses._prepare import value_checks
from .weighting import normalize_weights, warn_if_small_ess

__all__ = ["BaseCNN", "resolve_device"]

_PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# iterator_* settings the slicing iterator understands; any other one (a
# sampler, workers, a collate_fn...) sends the data through a DataLoader.
_FAST_ITERATOR_KEYS = {"batch_size", "shuffle", "drop_last"}
# Prediction outputs wait on the device until this much has gathered.
_OUTPUT_CHUNK_BYTES = 256 * 2**20


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device``.

    Parameters
    ----------
    device : "auto", str, torch.device or None
        ``"auto"`` (and ``None``) mean CUDA when available, else CPU.

    Returns
    -------
    device : torch.device
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, "
            f"got {device!r}."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; use "
            f"device='auto' to fall back to the CPU."
        )
    return dev


class BaseCNN(NeuralNet):
    """Base class of the skweight estimators; not for direct use.

    Subclasses define the criteria they know (``_named_criteria``), how targets
    are validated and encoded (``_validate_targets``), how per-element
    weights are built (``_element_weights``) and the default network
    (``_default_module``).
    """

    #: criterion name -> loss class; filled by subclasses.
    _named_criteria = {}
    #: Whether H and W at predict time must equal those seen in fit.
    _match_spatial = True
    #: What a weight is attached to, for messages.
    _weighted_what = "samples"

    # -- construction -----------------------------------------------------

    def __init__(self, module=None, criterion=None, *, input_shape=None,
                 random_state=None, device="auto", precision="32",
                 channels_last=False, data_device_fraction=0.5,
                 optimizer=torch.optim.AdamW, lr=1e-3, max_epochs=20,
                 batch_size=64, train_split=None, callbacks=None, verbose=0,
                 warm_start=False, compile=False, **kwargs):
        super().__init__(
            module, criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, train_split=train_split, callbacks=callbacks,
            verbose=verbose, device=device, warm_start=warm_start,
            compile=compile, **kwargs,
        )
        self.input_shape = input_shape
        self.random_state = random_state
        self.precision = precision
        self.channels_last = channels_last
        self.data_device_fraction = data_device_fraction

    # -- parameter validation ---------------------------------------------

    def _check_params(self):
        """Validate hyper-parameters; raise clear errors before any work."""
        check_input_shape(self.input_shape)
        try:
            check_random_state(self.random_state)
        except ValueError as exc:
            raise ValueError(
                f"random_state must be None, an int or a numpy RandomState, got "
                f"{self.random_state!r}."
            ) from exc
        resolve_device(self.device)
        if str(self.precision) not in _PRECISIONS:
            raise ValueError(
                f"precision must be one of {sorted(_PRECISIONS)}, got "
                f"{self.precision!r}."
            )
        if not isinstance(self.channels_last, (bool, np.bool_)):
            raise TypeError(
                f"channels_last must be a bool, got {self.channels_last!r}."
            )
        frac = self.data_device_fraction
        if not isinstance(frac, numbers.Real) or not 0.0 <= frac <= 1.0:
            raise ValueError(
                f"data_device_fraction must be a number in [0, 1], got {frac!r}."
            )
        if not isinstance(self.max_epochs, numbers.Integral) or self.max_epochs < 0:
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
        if not isinstance(self.lr, numbers.Real) or not self.lr > 0:
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
        self._check_criterion_param()

    def _check_criterion_param(self):
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

    # -- data preparation -------------------------------------------------

    def _validate_X(self, X, reset, lazy=False):
        if not reset and isinstance(X, ArrayDataset):
            # skorch's EpochScoring predicts on the internal validation set,
            # whose images are already checked.
            return X.X
        if is_dataset(X):
            return self._validate_dataset(X, reset, lazy)
        input_shape = check_input_shape(self.input_shape)
        if reset:
            images, raw_shape = check_images(X, input_shape=input_shape)
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
            estimator_name=type(self).__name__,
        )
        return images

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
        if reset:
            self.input_shape_ = tuple(first.shape)
            self.n_features_in_ = int(first.numel())
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            check_is_fitted(self, "input_shape_")
        if lazy:
            check_images(first[None], expected_shape=None if reset else self.input_shape_,
                         match_spatial=self._match_spatial,
                         estimator_name=type(self).__name__)
            return data
        images = torch.stack([data.image(i) for i in range(len(data))])
        return check_images(images, expected_shape=self.input_shape_,
                            match_spatial=self._match_spatial,
                            estimator_name=type(self).__name__)[0]

    def _set_feature_names(self, X, reset):
        if hasattr(X, "columns"):
            from sklearn.utils.validation import _check_feature_names

            _check_feature_names(self, X, reset=reset)
        elif reset and hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        elif not reset and hasattr(self, "feature_names_in_"):
            warnings.warn(
                f"X does not have valid feature names, but {type(self).__name__} "
                f"was fitted with feature names",
                UserWarning,
            )

    def _validate_targets(self, y, image_shape, reset, classes=None):
        """Return targets as a tensor; set fitted attributes when ``reset``.

        ``image_shape`` is ``(N, C, H, W)`` of the images they go with;
        ``classes`` is ``partial_fit``'s list of all labels (classifiers).
        """
        raise NotImplementedError

    def _element_weights(self, y, sample_weight, fit_kwargs):
        """Return per-element weights (float64 ndarray) or None."""
        raise NotImplementedError

    def _stratify_labels(self, dataset):
        """Labels to stratify a hold-out split by (None: no stratification)."""
        return None

    def _prepare(self, X, y, sample_weight, fit_kwargs, reset):
        self._check_params()
        images = self._validate_X(X, reset=reset, lazy=True)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                f"is None."
            )
        targets = self._validate_targets(
            y, tuple(images.shape), reset=reset, classes=fit_kwargs.get("classes")
        )
        weights = self._element_weights(targets, sample_weight, fit_kwargs)
        if weights is not None:
            weights = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))
        seeds = check_random_state(self.random_state).randint(0, 2**31 - 1, size=3)
        self._torch_seed_, self._shuffle_seed_, self._split_seed_ = (
            int(s) for s in seeds
        )
        if isinstance(images, LazyImageDataset):
            return images.with_targets(targets, weights)
        return ArrayDataset(images, targets, weights)

    # -- fitting ----------------------------------------------------------

    def _run_training(self, dataset, fit_params, routing_method):
        with self._rng_context():
            fresh = routing_method == "fit" and not self.warm_start
            if fresh or not self.initialized_:
                self.initialize()
            NeuralNet.partial_fit(
                self, dataset, None, _routing_method=routing_method, **fit_params
            )
        self._after_fit(dataset)
        return self

    def _after_fit(self, dataset):
        """Hook run after training (e.g. sanity checks on predictions)."""

    @contextlib.contextmanager
    def _rng_context(self):
        if self.random_state is None:
            yield
            return
        device = resolve_device(self.device)
        devices = []
        if device.type == "cuda":
            devices = [device.index or torch.cuda.current_device()]
        # fork_rng restores the caller's global RNG state afterwards: seeding
        # the model must not reseed the user's other torch code.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._torch_seed_)
            yield

    def initialize(self):
        """Initialise the module, criterion, optimizer and callbacks."""
        self.device_ = resolve_device(self.device)
        self.grad_scaler_ = self._make_grad_scaler()
        return super().initialize()

    def _make_grad_scaler(self):
        # float16 has a narrow exponent range: small gradients underflow
        # unless the loss is scaled up first. bfloat16 does not need it.
        if self._use_amp() and _PRECISIONS[str(self.precision)] == torch.float16:
            return torch.amp.GradScaler("cuda")
        return None

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

    def _initialize_module(self, reason=None):
        # skorch's version moves modules to ``self.device``, which may be
        # "auto"; ours uses the resolved ``device_``.
        with self._current_init_context("module"):
            self.initialize_module()
            module = self.module_.to(self.device_)
            if self.channels_last and self.device_.type == "cuda":
                module = module.to(memory_format=torch.channels_last)
            self.module_ = self.torch_compile(module, name="module")
        return self

    def _initialize_criterion(self, reason=None):
        with self._current_init_context("criterion"):
            self.initialize_criterion()
            crit = self.criterion_
            if isinstance(crit, torch.nn.Module):
                crit = self.torch_compile(crit.to(self.device_), name="criterion")
            self.criterion_ = crit
        return self

    def _criterion_kwargs(self, kwargs):
        """Adjust user criterion kwargs (e.g. refuse double class weights)."""
        return kwargs

    def initialize_criterion(self):
        """Instantiate the loss, deciding how it receives weights."""
        crit = self.criterion
        if isinstance(crit, str):
            crit = self._named_criteria[crit]
        kwargs = self._criterion_kwargs(self.get_params_for("criterion"))
        instance = self.initialized_instance(crit, kwargs)
        forward = getattr(instance, "forward", instance)
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            params = {}
        takes_weight = "sample_weight" in params
        if not takes_weight and getattr(instance, "reduction", None) not in (None, "none"):
            # Weighting needs per-element losses; never mutate the user's object.
            if instance is self.criterion:
                instance = copy.deepcopy(instance)
            instance.reduction = "none"
        self.criterion_ = instance
        self.criterion_takes_weight_ = takes_weight
        return self

    # -- data iteration ---------------------------------------------------

    def get_split_datasets(self, X, y=None, **fit_params):
        """Split into training and validation sets; normalise their weights."""
        if not isinstance(X, (ArrayDataset, LazyImageDataset)):
            return super().get_split_datasets(X, y, **fit_params)
        train, valid = self._split(X, **fit_params)
        train = self._place(self._normalise(train, warn=True))
        if valid is not None:
            valid = self._place(self._normalise(valid, warn=False), training=False)
        return train, valid

    def _split(self, dataset, **split_params):
        ts = self.train_split
        if ts is None:
            return dataset, None
        strat = self._stratify_labels(dataset)
        if isinstance(ts, numbers.Real):
            index = np.arange(len(dataset))
            try:
                train_idx, valid_idx = train_test_split(
                    index, test_size=ts, stratify=strat,
                    random_state=self._split_seed_,
                )
            except ValueError:
                if strat is None:
                    raise
                warnings.warn(
                    "A class has too few samples to stratify the validation "
                    "split; splitting without stratification.", UserWarning,
                )
                train_idx, valid_idx = train_test_split(
                    index, test_size=ts, random_state=self._split_seed_,
                )
            return dataset.take(train_idx), dataset.take(valid_idx)
        train, valid = ts(dataset, strat, **split_params)
        return _as_array_dataset(train), (
            None if valid is None else _as_array_dataset(valid)
        )

    def _normalise(self, dataset, warn):
        if not isinstance(dataset, (ArrayDataset, LazyImageDataset)) or (
            dataset.weight is None
        ):
            return dataset
        w = dataset.weight.numpy()
        if not np.any(w > 0):
            raise ValueError(
                "All samples of this split have weight 0; nothing to learn from "
                "or validate on."
            )
        if warn:
            warn_if_small_ess(w, self._weighted_what)
        w = normalize_weights(w)
        return dataset.with_weight(torch.from_numpy(w.astype(np.float32)))

    def _place(self, dataset, training=True):
        """On CUDA, keep the data on the GPU if it fits, else pin it.

        Only for the slicing iterator: a DataLoader indexes the data on the
        host (possibly in worker processes) and pins batches itself when
        asked to (``iterator_train__pin_memory=True``).
        """
        if self.device_.type != "cuda" or not self._fast_path(dataset, training):
            return dataset
        free, _ = torch.cuda.mem_get_info(self.device_)
        if dataset.nbytes <= self.data_device_fraction * free:
            return dataset.apply(lambda t: t.to(self.device_))
        return dataset.apply(lambda t: t if t.is_pinned() else t.pin_memory())

    def get_iterator(self, dataset, training=False):
        """Slicing iterator for in-memory data, skorch's DataLoader otherwise."""
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        iterator = self.iterator_train if training else self.iterator_valid
        batch_size = kwargs.get("batch_size", self.batch_size)
        if batch_size == -1:
            batch_size = len(dataset)
        shuffle = kwargs.get("shuffle", training)
        generator = None
        if shuffle:
            generator = torch.Generator().manual_seed(self._shuffle_seed_)
        epoch_indices = self._epoch_indices(dataset) if training else None
        if self._fast_path(dataset, training):
            return BatchIterator(
                dataset, batch_size, shuffle=shuffle, generator=generator,
                device=self.device_, drop_last=kwargs.get("drop_last", False),
                epoch_indices=epoch_indices,
            )
        if epoch_indices is not None:
            raise ValueError(
                "Per-epoch resampling needs the in-memory data path; remove the "
                "iterator_train__* settings that require a DataLoader."
            )
        if "batch_sampler" not in kwargs:
            kwargs = {**kwargs, "batch_size": batch_size}
        if iterator is torch.utils.data.DataLoader and not (
            {"sampler", "batch_sampler"} & set(kwargs)
        ):
            kwargs["shuffle"] = shuffle
            if shuffle and "generator" not in kwargs and isinstance(
                dataset, (ArrayDataset, LazyImageDataset)
            ):
                # The same permutations as the slicing iterator: switching
                # paths (e.g. to use workers) does not change the model.
                kwargs["shuffle"] = False
                kwargs["sampler"] = ShuffleSampler(len(dataset), generator)
            elif shuffle:
                kwargs.setdefault("generator", generator)
        return iterator(dataset, **kwargs)

    def _fast_path(self, dataset, training):
        """Whether batches come from the slicing iterator (no DataLoader)."""
        if training:
            iterator, prefix = self.iterator_train, "iterator_train"
        else:
            iterator, prefix = self.iterator_valid, "iterator_valid"
        return (
            isinstance(dataset, ArrayDataset)
            and iterator is torch.utils.data.DataLoader
            and set(self.get_params_for(prefix)) <= _FAST_ITERATOR_KEYS
        )

    def _epoch_indices(self, dataset):
        """Rows of each training epoch: None (every row once) or a callable
        ``f(generator) -> indices`` with ``len`` (see ``BatchIterator``)."""
        return None

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over the data.

        skorch calls ``loss.item()`` after every batch, which on a GPU waits
        for the batch to finish. Off the CPU, and unless a callback listens
        to ``on_batch_end`` (and may read the batch loss there), the losses
        stay on the device and are read back once, when the epoch ends.
        """
        if iterator is None:
            return
        # Once per epoch, not per batch: nn.Module.train() walks every
        # submodule, about 0.1 ms for the default network (see _ensure_mode).
        self._set_training(training)
        lazy = self._defer_loss_readback()
        record = self.history.record_batch
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        losses = []
        count = 0
        for batch in iterator:
            # Callbacks get skorch's (X, y): the weights are the loss's business,
            # and EpochScoring, e.g., collects y from the batches it is shown.
            seen = _without_weights(batch)
            self.notify("on_batch_begin", batch=seen, training=training)
            step = step_fn(batch, **fit_params)
            count += 1
            if lazy:
                losses.append(step["loss"].detach())
            else:
                record(loss_key, step["loss"].item())
            record(size_key, _batch_len(batch))
            self.notify("on_batch_end", batch=seen, training=training, **step)
        if losses:
            values = torch.stack([v.float() for v in losses]).cpu().tolist()
            batches = self.history[-1]["batches"][-len(values):]
            for batch_record, value in zip(batches, values, strict=True):
                batch_record[loss_key] = value
        self.history.record(prefix + "_batch_count", count)

    def _defer_loss_readback(self):
        """Whether batch losses may wait on the device until the epoch ends:
        off the CPU, when neither the net nor a callback overrides
        ``on_batch_end`` (where the batch loss may be read)."""
        if self.device_.type == "cpu" or (
            type(self).on_batch_end is not NeuralNet.on_batch_end
        ):
            return False
        return not any(
            type(cb).on_batch_end is not Callback.on_batch_end
            for _, cb in self.callbacks_
        )

    def _ensure_mode(self, training):
        """Put modules and criteria in train or eval mode if they are not.

        Only the top-level flags are read, so this costs a few attribute
        reads where ``_set_training`` walks every submodule.
        """
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and module.training != training:
                self._set_training(training)
                return

    # -- steps ------------------------------------------------------------

    def _use_amp(self):
        return (
            self.device_.type == "cuda"
            and _PRECISIONS[str(self.precision)] is not None
        )

    def _autocast(self):
        if not self._use_amp():
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=_PRECISIONS[str(self.precision)])

    def infer(self, x, **fit_params):
        """Forward a batch through the module on the resolved device."""
        if isinstance(x, torch.Tensor):
            # A no-op when the batch is already there (the usual case).
            x = x.to(self.device_, non_blocking=True)
        else:
            x = to_tensor(x, device=self.device_)
        if self.channels_last and self.device_.type == "cuda" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module_(x, **fit_params)

    def train_step_single(self, batch, **fit_params):
        """Forward, weighted loss and backward pass for one batch."""
        self._ensure_mode(True)
        Xi, yi = unpack_data(batch)
        with self._autocast():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        if self.grad_scaler_ is not None:
            self.grad_scaler_.scale(loss).backward()
        else:
            loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        """One optimiser step; with fp16 the gradient scaler drives it."""
        if self.grad_scaler_ is None:
            return super().train_step(batch, **fit_params)
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        self.grad_scaler_.unscale_(self.optimizer_)
        self.notify(
            "on_grad_computed",
            named_parameters=list(self.get_all_learnable_params()),
            batch=batch, training=True,
        )
        self.grad_scaler_.step(self.optimizer_)
        self.grad_scaler_.update()
        return step

    def validation_step(self, batch, **fit_params):
        """Weighted loss on a validation batch, without gradients."""
        self._ensure_mode(False)
        Xi, yi = unpack_data(batch)
        with torch.no_grad(), self._autocast():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def evaluation_step(self, batch, training=False):
        """Module output for a batch, in float32."""
        self.check_is_fitted()
        Xi, _ = unpack_data(batch)
        self._ensure_mode(training)
        with torch.set_grad_enabled(training), self._autocast():
            out = self.infer(Xi)
        return out.float() if torch.is_floating_point(out) else out

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Weighted mean loss of a batch: ``mean(w * l)``.

        Parameters
        ----------
        y_pred : torch.Tensor
            Module output.
        y_true : torch.Tensor or (torch.Tensor, torch.Tensor)
            Targets, or targets and normalised weights.
        X, training
            Unused; part of skorch's signature.

        Returns
        -------
        loss : torch.Tensor (scalar)
        """
        if isinstance(y_true, (tuple, list)):
            y, w = y_true
            w = w.to(self.device_, non_blocking=True)
        else:
            y, w = y_true, None
        y = y.to(self.device_, non_blocking=True)
        return self._weighted_loss(y_pred, y, w)

    def _weighted_loss(self, y_pred, y, w):
        if self.criterion_takes_weight_:
            with value_checks(False):
                return self.criterion_(y_pred, y, sample_weight=w)
        loss = self.criterion_(y_pred, y)
        if loss.ndim == 0:
            if w is not None:
                raise ValueError(
                    f"The criterion {type(self.criterion_).__name__} returns a "
                    f"scalar, so it cannot apply sample or class weights. Use a "
                    f"loss with a `reduction` attribute or a `sample_weight` "
                    f"argument in forward."
                )
            return loss
        if w is not None:
            loss = loss * w.reshape(w.shape + (1,) * (loss.ndim - w.ndim))
        return loss.mean()

    # -- prediction -------------------------------------------------------

    def _forward_images(self, images):
        """Module outputs for validated images, as a float32 CPU tensor.

        Unlike skorch's ``forward``, outputs are not copied to the CPU batch
        by batch (each copy waits for the GPU): they are gathered where the
        data are and copied in large chunks.
        """
        dataset = self._place(ArrayDataset(images), training=False)
        iterator = self.get_iterator(dataset, training=False)
        self._set_training(False)
        on_host, pending, pending_bytes = [], [], 0
        for batch in iterator:
            out = self.evaluation_step(batch, training=False)
            pending.append(out)
            pending_bytes += out.element_size() * out.nelement()
            if pending_bytes >= _OUTPUT_CHUNK_BYTES:
                on_host.append(torch.cat(pending).cpu())
                pending, pending_bytes = [], 0
        if pending:
            on_host.append(torch.cat(pending).cpu())
        return on_host[0] if len(on_host) == 1 else torch.cat(on_host)

    def _forward_dataset(self, dataset):
        """Module outputs for an internal (in-memory or lazy) dataset."""
        if isinstance(dataset, ArrayDataset):
            return self._forward_images(dataset.X)
        return self.forward(dataset).float()

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        """Raise ``NotFittedError`` unless ``fit`` has run."""
        check_is_fitted(self, attributes or ["module_", "input_shape_"])

    def _get_param_names(self):
        # skorch keeps bookkeeping such as ``_params_to_validate`` in
        # ``__dict__``; it is not a hyper-parameter.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def __sklearn_is_fitted__(self):
        return hasattr(self, "input_shape_") and hasattr(self, "module_")

    # -- persistence ------------------------------------------------------

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("grad_scaler_", None)
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


def _without_weights(batch):
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(
        batch[1], (tuple, list)
    ):
        return batch[0], batch[1][0]
    return batch


def _batch_len(batch):
    X = batch[0] if isinstance(batch, (tuple, list)) else batch
    return X.shape[0] if isinstance(X, torch.Tensor) else len(X)


def _as_array_dataset(ds):
    """Turn a ``Subset`` of an ArrayDataset (skorch's ValidSplit) back into one."""
    if isinstance(ds, ArrayDataset):
        return ds
    if isinstance(ds, torch.utils.data.Subset) and isinstance(
        ds.dataset, (ArrayDataset, LazyImageDataset)
    ):
        return ds.dataset.take(np.asarray(ds.indices))
    return ds
