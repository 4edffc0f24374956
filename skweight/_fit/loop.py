"""The training loop: skorch's hooks, made cheap per step and device-aware.

:class:`TrainingLoop` replaces skorch's ``fit_loop`` and the per-batch
machinery around it. What a skorch user sees is kept (callbacks get
``on_*`` notifications with ``batch=(X, y)``, the history holds per-batch
``train_loss``, ``train_batch_size`` and ``valid_batch_size``), but what
nobody listens to is not done per step:

- a batch hook (``on_batch_begin``, ``on_batch_end``, ``on_grad_computed``)
  is called only on the callbacks that override it; when none does, the
  per-batch history records are written once per epoch, in bulk;
- batch losses stay on the device and are read back once per epoch unless
  someone may read them after each batch (a GPU sync per step otherwise);
- skweight's own losses are called through ``forward_validated``, which
  skips the data-dependent checks ``fit`` has already made;
- the train/eval mode is set once per pass.

It also owns the device (``device="auto"``), mixed precision, data placement
on the GPU and the two data paths (slicing pre-loaded tensors, or skorch's
``DataLoader`` for a user's Dataset or custom iterator settings).
"""

import contextlib
import inspect
from typing import NamedTuple

import torch
from skorch import NeuralNet
from skorch.callbacks import (
    Callback,
    Checkpoint,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
    TrainEndCheckpoint,
)
from skorch.utils import TeeGenerator, to_tensor

from .data import scale_inputs
from .loader import (
    ArrayDataset,
    BatchIterator,
    LazyImageDataset,
    ShardedBatchSampler,
    ShuffleSampler,
)
from .optim import DecoupledDecay, decayed_parameters, parameter_groups

__all__ = ["TrainingLoop", "resolve_device", "resolve_optimizer"]

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# iterator_* settings the slicing iterator understands; any other one (a
# sampler, workers, a collate_fn...) sends the data through a DataLoader.
_FAST_ITERATOR_KEYS = {"batch_size", "shuffle", "drop_last"}
# Prediction outputs wait on the device until this much has gathered.
_OUTPUT_CHUNK_BYTES = 256 * 2**20
# ... and on the CPU until this much (then transformed and written out).
_CPU_CHUNK_BYTES = 2**20
_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_grad_computed")

#: Optimizer names accepted by the ``optimizer`` parameter (lower case).
OPTIMIZERS = {
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamax": torch.optim.Adamax,
    "adamw": torch.optim.AdamW,
    "asgd": torch.optim.ASGD,
    "lbfgs": torch.optim.LBFGS,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "rmsprop": torch.optim.RMSprop,
    "rprop": torch.optim.Rprop,
    "sgd": torch.optim.SGD,
}


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


def resolve_optimizer(optimizer):
    """Return the optimizer class for the ``optimizer`` parameter.

    Parameters
    ----------
    optimizer : str or callable
        A name of :data:`OPTIMIZERS` (any case), or a torch optimizer class
        (any callable ``optimizer(params, lr=..., **kwargs)``).

    Returns
    -------
    optimizer : callable
    """
    if isinstance(optimizer, str):
        try:
            return OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(
                f"optimizer={optimizer!r} is not a known optimizer name; use one of "
                f"{sorted(OPTIMIZERS)} or a torch.optim.Optimizer class."
            ) from None
    if not callable(optimizer) or isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.AdamW) "
            f"or one of the names {sorted(OPTIMIZERS)}, got {optimizer!r}."
        )
    return optimizer


class _LoopState(NamedTuple):
    """Per-fit facts the steps consult (see ``TrainingLoop._loop_state``)."""

    hooks: dict  # hook name -> (the net overrides it, callbacks that do)
    records_live: bool
    grads_heard: bool
    optimizers: tuple
    closure: bool
    autocast: object  # a callable returning the step's autocast context
    augment_generator: object  # None, or the generator of the batch augmentation
    decay: object  # None, or the decoupled weight decay (a DecoupledDecay)
    train_module: object  # None, or the data-parallel wrapper of module_


_NULL_CONTEXT = contextlib.nullcontext()
# Callbacks that write files: process 0's business in data-parallel training.
_LEADER_ONLY = (Checkpoint, TrainEndCheckpoint)


def _no_autocast():
    return _NULL_CONTEXT


def _overrides(obj, name, base):
    return getattr(type(obj), name, None) is not getattr(base, name)


class EpochLoss(PassthroughScoring):
    """skorch's ``PassthroughScoring``, reading the epoch's batches directly.

    The same record (the batch losses averaged, weighted by batch size, and
    whether it is the best so far), without the history's generic slicing
    and NumPy: those took 90 us per epoch and loss in a fit, the time of 25
    training steps of a linear model.
    """

    def on_epoch_end(self, net, **kwargs):
        """Record the epoch's mean loss (nothing where no batch recorded one).

        Parameters
        ----------
        net : NeuralNet
        **kwargs
            Unused, part of skorch's signature.
        """
        size_key = "train_batch_size" if self.on_train else "valid_batch_size"
        pairs = [(b[self.name], b[size_key]) for b in net.history[-1]["batches"]
                 if self.name in b]
        if not pairs:  # no validation data
            return
        score = sum(v * n for v, n in pairs) / sum(n for _, n in pairs)
        is_best = self._is_best_score(score)
        if is_best:
            self.best_score_ = score
        net.history.record(self.name, score)
        if is_best is not None:
            net.history.record(self.name + "_best", bool(is_best))


class TrainingLoop:
    """skorch's training loop for in-memory images, without per-step waste.

    A mixin placed before ``skorch.NeuralNet``; the estimator core supplies
    the datasets (:class:`~skweight._loader.ArrayDataset` or
    :class:`~skweight._loader.LazyImageDataset`) with their targets and
    normalised weights, and ``_fit_loop`` trains on them.
    """

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", EpochLoss(name="train_loss", on_train=True)),
            ("valid_loss", EpochLoss(name="valid_loss")),
            ("print_log", PrintLog()),
        ]

    # -- components on the resolved device ---------------------------------

    def initialize(self):
        """Initialise the module, criterion, optimizer and callbacks.

        Returns
        -------
        self : object
            The estimator, initialised on the resolved device ``device_``.
        """
        self.device_ = resolve_device(self.device)
        self.grad_scaler_ = self._make_grad_scaler()
        return super().initialize()

    def _make_grad_scaler(self):
        # float16 has a narrow exponent range: small gradients underflow
        # unless the loss is scaled up first. bfloat16 does not need it.
        if self._use_amp() and PRECISIONS[str(self.precision)] == torch.float16:
            return torch.amp.GradScaler("cuda")
        return None

    def _initialize_module(self, reason=None):
        # skorch's version moves modules to ``self.device``, which may be
        # "auto"; ours uses the resolved ``device_``.
        with self._current_init_context("module"):
            self.initialize_module()
            module = self.module_.to(self.device_)
            self._channels_last_ = _is_2d(self) and (
                (self.channels_last and self.device_.type == "cuda")
                or (self.device_.type == "cpu" and self.module is None
                    and self._default_channels_last_on_cpu)
            )
            if self._channels_last_:
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

    def initialize_optimizer(self, triggered_directly=None):
        """Build the optimizer; ``optimizer`` may be a class or a name such as "adam".

        Parameters
        ----------
        triggered_directly : None
            Unused; part of skorch's signature.

        Returns
        -------
        self : object
            The estimator, with the new ``optimizer_``.
        """
        named_parameters = self.get_all_learnable_params()
        args, kwargs = self.get_params_for_optimizer("optimizer", named_parameters)
        groups = parameter_groups(args[0], self.__dict__.get("criterion_"),
                                  self._learning_rate_of())
        self.optimizer_ = resolve_optimizer(self.optimizer)(groups, **kwargs)
        return self

    def _learning_rate_of(self):
        """Return ``param -> lr`` for parameters with a rate of their own (None: none).

        With ``backbone_lr`` every parameter outside the head has that rate.
        """
        head = self.__dict__.get("head_")
        if self.backbone_lr is None or head is None:
            return None
        module = getattr(self.module_, "_orig_mod", self.module_)
        in_head = {id(p) for p in module.get_submodule(head).parameters()}
        backbone = {id(p) for p in module.parameters()} - in_head

        def lr_of(param):
            return self.backbone_lr if id(param) in backbone else None

        return lr_of

    def _set_training(self, training=True):
        """Set the train/eval mode; normalisation layers of frozen parts stay in eval.

        A frozen BatchNorm keeps its running statistics (as Keras keeps it),
        whatever a callback set in between: the mode is set here, once per
        pass.
        """
        super()._set_training(training)
        if training:
            for layer in self.__dict__.get("_frozen_norms_", ()):
                layer.eval()

    # -- data placement and iteration -----------------------------------

    def _place(self, dataset, training=True, moved=None):
        """On CUDA, keep the data on the GPU if they fit.

        Otherwise they stay where they are, and each batch is gathered into
        pinned host memory for an asynchronous copy (no pinned copy of the
        whole data). Only for the slicing iterator: a DataLoader indexes the
        data on the host (possibly in worker processes) and pins batches
        itself when asked to (``iterator_train__pin_memory=True``).
        ``moved`` maps tensors already moved in this fit to their device
        copies: the training and validation splits share one ``X``, which
        is moved once.
        """
        if self.device_.type != "cuda" or not self._fast_path(dataset, training):
            return dataset
        moved = {} if moved is None else moved
        if id(dataset.X) not in moved:
            free, _ = torch.cuda.mem_get_info(self.device_)
            # Integer images count as stored: uint8 takes a quarter of float32.
            fits = dataset.nbytes <= self.data_device_fraction * free
            moved[id(dataset.X)] = dataset.X.to(self.device_) if fits else None
        X = moved[id(dataset.X)]
        if X is None:
            return dataset
        return dataset.apply(lambda t: X if t is dataset.X else t.to(self.device_))

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

    def get_iterator(self, dataset, training=False, epoch_rows=None):
        """Slicing iterator for in-memory data, skorch's DataLoader otherwise.

        Parameters
        ----------
        dataset : torch Dataset
            The data to iterate over.
        training : bool
            Training batches (``iterator_train``'s settings, shuffled by
            default) or validation and prediction batches
            (``iterator_valid``'s).
        epoch_rows : None or callable
            The rows of each training epoch (a sampler's draws); see
            :class:`~skweight._loader.BatchIterator`.

        Returns
        -------
        iterator : iterable of batches
            The batches of ``dataset``.
        """
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        iterator = self.iterator_train if training else self.iterator_valid
        batch_size = kwargs.get("batch_size", self.batch_size)
        if batch_size == -1:
            batch_size = len(dataset)
        shuffle = kwargs.get("shuffle", training)
        generator = None
        if shuffle:
            generator = torch.Generator().manual_seed(self._seeds_.shuffle)
        shard = self.__dict__.get("_dp_") if training else None
        if self._fast_path(dataset, training):
            return BatchIterator(
                dataset, batch_size, shuffle=shuffle, generator=generator,
                device=self.device_, drop_last=kwargs.get("drop_last", False),
                epoch_indices=epoch_rows, shard=shard,
            )
        if epoch_rows is not None:
            raise ValueError(
                "Per-epoch resampling needs the in-memory data path; remove the "
                "iterator_train__* settings that require a DataLoader."
            )
        if shard is not None:
            if {"sampler", "batch_sampler"} & set(kwargs):
                raise ValueError(
                    "Data-parallel training serves each process its share of the "
                    "global batches; it cannot use iterator_train__sampler or "
                    "iterator_train__batch_sampler."
                )
            order = (ShuffleSampler(len(dataset), generator) if shuffle
                     else range(len(dataset)))
            kwargs = {k: v for k, v in kwargs.items()
                      if k not in ("batch_size", "shuffle", "drop_last")}
            kwargs["batch_sampler"] = ShardedBatchSampler(
                order, batch_size, self.get_params_for(prefix).get("drop_last", False),
                shard,
            )
            return iterator(dataset, **kwargs)
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

    # -- the loop -----------------------------------------------------------

    def _fit_loop(self, phases, valid, forward_params, epochs=None):
        """Train for ``epochs`` (default ``max_epochs``) on prepared datasets.

        Parameters
        ----------
        phases : list of TrainingPhase
            The training data (with targets and normalised weights, placed on
            the device) from each phase's first epoch on.
        valid : None or dataset
        forward_params : dict
            Passed to the module's ``forward``.
        epochs : None or int
        """
        self.check_training_readiness()
        epochs = self.max_epochs if epochs is None else epochs
        iterator_valid = None if valid is None else self.get_iterator(valid, training=False)
        self._loop_ = self._loop_state()
        phase, iterator_train = None, None
        try:
            for _ in range(epochs):
                epoch = len(self.history) + 1
                current = [p for p in phases if p.start_epoch <= epoch][-1]
                if current is not phase:
                    phase = current
                    iterator_train = self.get_iterator(
                        phase.dataset, training=True, epoch_rows=phase.epoch_rows
                    )
                    # A fit resumed from a checkpoint (LoadInitState) trained
                    # this phase's first epochs already: their row orders are
                    # drawn again, so that the next ones shuffle as they would have.
                    _skip_passes(iterator_train, epoch - phase.start_epoch)
                    # A loss that adjusts for the class prior learns the
                    # one this phase shows it.
                    self.targets_.start_phase(self.criterion_, phase.class_prior,
                                              self.get_params_for("criterion"))
                    if phase.stage is not None:
                        self._start_stage(phase.stage)
                        self._loop_ = self._loop_state()
                if self._unfreezes(epoch):
                    self._set_frozen(False)
                    self._loop_ = self._loop_state()
                on_epoch_kwargs = {"dataset_train": phase.dataset, "dataset_valid": valid}
                self.notify("on_epoch_begin", **on_epoch_kwargs)
                self.run_single_epoch(iterator_train, training=True, prefix="train",
                                      step_fn=self.train_step, **forward_params)
                self.run_single_epoch(iterator_valid, training=False, prefix="valid",
                                      step_fn=self.validation_step, **forward_params)
                self.notify("on_epoch_end", **on_epoch_kwargs)
        finally:
            self.__dict__.pop("_loop_", None)
            self._end_stages()
            self.targets_.end_training(self.criterion_, (phase or phases[0]).class_prior)
        return self

    def _loop_state(self):
        """Work out what every step needs to know, once per fit."""
        hooks = {}
        for hook in _BATCH_HOOKS:
            cbs = tuple(cb for _, cb in self.callbacks_ if _overrides(cb, hook, Callback))
            hooks[hook] = (_overrides(self, hook, NeuralNet), cbs)
        optimizers = tuple(getattr(self, name + "_") for name in self._optimizers)
        # L-BFGS re-evaluates the loss: skorch's closure-based step serves it.
        closure = any(isinstance(opt, torch.optim.LBFGS) for opt in optimizers)
        return _LoopState(
            hooks=hooks,
            # Someone may read the batch's history record from a batch hook.
            records_live=any(net or cbs for hook, (net, cbs) in hooks.items()
                             if hook != "on_grad_computed"),
            grads_heard=any(hooks["on_grad_computed"]),
            optimizers=optimizers,
            closure=closure,
            autocast=self._autocast if self._use_amp() else _no_autocast,
            augment_generator=None if getattr(self, "augment", None) is None else (
                torch.Generator(self.device_).manual_seed(self._seeds_.augment)
            ),
            train_module=self._train_module(closure),
            decay=None if not self.weight_decay else DecoupledDecay(
                self.optimizer_, decayed_parameters(self.module_), self.weight_decay
            ),
        )

    def _train_module(self, closure):
        """Return the network as the training steps call it.

        It is wrapped for data-parallel training, the plain ``module_``
        otherwise; ``closure`` says whether the optimizer re-evaluates the
        loss (L-BFGS), which data-parallel training cannot serve.
        """
        dp = self.__dict__.get("_dp_")
        if dp is None:
            return None
        if closure:
            raise ValueError(
                "L-BFGS re-evaluates the loss inside its step and cannot train "
                "data-parallel; use another optimizer or distributed=False."
            )
        return dp.wrap(self.module_, self.device_)

    def notify(self, method_name, **cb_kwargs):
        """Call ``method_name`` on the net and its callbacks (skorch's notify).

        In data-parallel training only process 0 runs the callbacks that
        write files (checkpoints); the others run the rest, with the same
        numbers, so that e.g. early stopping stops every process at once.

        Parameters
        ----------
        method_name : str
            The hook to call, e.g. ``"on_epoch_end"``.
        **cb_kwargs
            Passed to the hook.

        Returns
        -------
        None
            Nothing, as skorch's ``notify``.
        """
        dp = self.__dict__.get("_dp_")
        follower = dp is not None and not dp.leader
        # PrintLog tabulates every epoch's history row even when it prints
        # nothing (verbose=0 and its sink print): half a millisecond per
        # epoch, a fifth of a small network's epoch.
        silent = method_name == "on_epoch_end" and not self.verbose
        getattr(self, method_name)(self, **cb_kwargs)
        for _, cb in self.callbacks_:
            if follower and isinstance(cb, _LEADER_ONLY):
                continue
            if silent and isinstance(cb, PrintLog) and cb.sink is print:
                continue
            getattr(cb, method_name)(self, **cb_kwargs)
        return None

    def _current_loop(self):
        loop = self.__dict__.get("_loop_")
        # A step or pass called directly, outside _fit_loop, works it out.
        return self._loop_state() if loop is None else loop

    def _hook(self, name, **kwargs):
        net_listens, callbacks = self._current_loop().hooks[name]
        if net_listens:
            getattr(self, name)(self, **kwargs)
        for cb in callbacks:
            getattr(cb, name)(self, **kwargs)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over the data, recording per-batch losses and sizes.

        Parameters
        ----------
        iterator : iterable of batches or None
            ``None`` skips the pass.
        training : bool
            Whether the pass trains (modules in train mode) or validates.
        prefix : {"train", "valid"}
            Prefix of the history keys, ``{prefix}_loss`` and
            ``{prefix}_batch_size``.
        step_fn : callable
            ``step_fn(batch, **fit_params) -> {"loss": ..., "y_pred": ...}``.
        **fit_params
            Passed to ``step_fn``.
        """
        if iterator is None:
            return
        loop = self._current_loop()
        # Once per epoch, not per batch: nn.Module.train() walks every
        # submodule, about 0.1 ms for the default network.
        self._set_training(training)
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        dp = self.__dict__.get("_dp_") if training else None
        if dp is not None:
            global_sizes = []
            iterator = self._shares(iterator, dp, global_sizes)
        if not loop.records_live:
            self._run_quiet_epoch(iterator, step_fn, loss_key, size_key, fit_params)
        else:
            self._run_live_epoch(iterator, step_fn, training, loss_key, size_key,
                                 fit_params, defer=dp is not None)
        if dp is not None:
            self._global_records(dp, loss_key, size_key, global_sizes)

    def _shares(self, iterator, dp, global_sizes):
        """Yield this process's share of each global batch, with its loss scale.

        ``_step_scale_`` is set for the step that takes the batch; the global
        batch sizes are collected for the history.
        """
        batch_size = getattr(iterator, "batch_size", None) or (
            iterator.batch_sampler.batch_size
        )
        rows = None
        try:
            for b, batch in enumerate(iterator):
                if rows is None:  # known once the pass has drawn its rows
                    epoch_rows = getattr(iterator, "epoch_indices", None)
                    rows = len(epoch_rows) if epoch_rows is not None else (
                        len(iterator.dataset))
                n_global = min(batch_size, rows - b * batch_size)
                global_sizes.append(n_global)
                self._step_scale_ = dp.loss_scale(_batch_len(batch), n_global)
                yield batch
        finally:
            self.__dict__.pop("_step_scale_", None)

    def _global_records(self, dp, loss_key, size_key, global_sizes):
        """Replace this pass's per-process records by the global batches'."""
        records = [r for r in self.history[-1]["batches"] if loss_key in r]
        records = records[-len(global_sizes):] if global_sizes else []
        if not records:
            return
        local = torch.tensor([r[loss_key] for r in records], dtype=torch.float64)
        totals = dp.sum(local.to(self._collective_device(dp))).cpu().tolist()
        for record, total, size in zip(records, totals, global_sizes, strict=True):
            record[loss_key] = total
            record[size_key] = size

    def _collective_device(self, dp):
        # NCCL reduces CUDA tensors only; gloo the CPU's.
        return self.device_ if self.device_.type == "cuda" else torch.device("cpu")

    def _run_live_epoch(self, iterator, step_fn, training, loss_key, size_key,
                        fit_params, defer=False):
        """Run a pass whose batch hooks are heard: history written as batches run."""
        history = self.history
        defer = defer or self._defer_loss_readback()
        losses, count = [], 0
        for batch in iterator:
            seen = self._batch_for_callbacks(batch)
            history.new_batch()
            self._hook("on_batch_begin", batch=seen, training=training)
            step = step_fn(batch, **fit_params)
            count += 1
            if defer:
                losses.append(step["loss"].detach())
            else:
                history.record_batch(loss_key, step["loss"].item())
            history.record_batch(size_key, _batch_len(batch))
            self._hook("on_batch_end", batch=seen, training=training, **step)
        if losses:
            values = torch.stack([v.float() for v in losses]).cpu().tolist()
            records = history[-1]["batches"][-len(values):]
            for record, value in zip(records, values, strict=True):
                record[loss_key] = value
        history.record(prefix_count(loss_key), count)

    def _augment_batch(self, X, y, generator):
        """Augment a training batch where it lives (after its inputs are prepared).

        Weights follow their samples; for label masks, a per-pixel weight map
        moves with the pixels, and pixels that come from outside the image get
        weight 0 (they neither teach nor count, whatever label the transform
        filled in).
        """
        from ..augment import apply_weighted

        device = X.device
        w = None
        if isinstance(y, (tuple, list)):
            y, w = y
        if y is not None:  # the transforms see the targets as the loss will
            y = self.targets_.batch_target(y.to(device, non_blocking=True))
        w = None if w is None else w.to(device, non_blocking=True)
        masks = self._pixel_weights and y is not None
        if masks and (w is None or w.ndim == 1):
            ones = torch.ones(y.shape, dtype=torch.float32, device=device)
            w = ones if w is None else ones * w.reshape((-1,) + (1,) * (y.ndim - 1))
        X, y, w = apply_weighted(self.augment, X, y, w, generator)
        if masks:
            # Labels the transform filled in where weight is 0 may lie
            # outside the classes; the loss must still be able to index.
            y = y.masked_fill(w == 0, 0)
        return X, (y if w is None else (y, w))

    def _run_quiet_epoch(self, iterator, step_fn, loss_key, size_key, fit_params):
        """Run a pass no batch hook listens to: history written once, at the end."""
        losses, sizes = [], []
        for batch in iterator:
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            sizes.append(_batch_len(batch))
        values = torch.stack([v.float() for v in losses]).cpu().tolist() if losses else []
        epoch = self.history[-1]
        epoch["batches"].extend(
            {loss_key: value, size_key: size}
            for value, size in zip(values, sizes, strict=True)
        )
        epoch[prefix_count(loss_key)] = len(values)

    def _defer_loss_readback(self):
        """Whether batch losses may wait on the device until the epoch ends.

        They may when training off the CPU and nobody hears ``on_batch_end``
        (where the batch loss may be read).
        """
        if self.device_.type == "cpu":
            return False
        net_listens, callbacks = self._current_loop().hooks["on_batch_end"]
        return not (net_listens or callbacks)

    def _batch_for_callbacks(self, batch):
        """Return skorch's ``(X, y)`` with ``y`` in the user's terms.

        The weights are the loss's business, and e.g. EpochScoring compares
        ``y`` with ``predict``.
        """
        X, y = batch
        if isinstance(y, (tuple, list)):
            y, w = y
        else:
            w = None
        return X, (None if y is None else self.targets_.decode(y, w))

    # -- steps ----------------------------------------------------------------

    def _use_amp(self):
        return (
            self.device_.type == "cuda"
            and PRECISIONS[str(self.precision)] is not None
        )

    def _autocast(self):
        if not self._use_amp():
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=PRECISIONS[str(self.precision)])

    def infer(self, x, **fit_params):
        """Forward a batch of images, as stored, through the module (prepared first).

        Parameters
        ----------
        x : torch.Tensor or array-like
            A batch of images as stored; anything but a tensor is converted
            with skorch's ``to_tensor``.
        **fit_params
            Passed to the module's ``forward``.

        Returns
        -------
        torch.Tensor
            The module's output.
        """
        if not isinstance(x, torch.Tensor):
            x = to_tensor(x, device=self.device_)
        return self.module_(self._prepare_inputs(x), **fit_params)

    def _prepare_inputs(self, x):
        """Make a batch of images, as stored, what the network takes, on its device.

        Each batch is prepared once, in the step that uses it: moved to the
        device (integer images cross as integers, a quarter of float32's
        bytes), scaled there by ``input_scale`` and put in the layout the
        network wants.
        """
        if x.device != self.device_:  # the usual case is already there
            x = x.to(self.device_, non_blocking=True)
        x = scale_inputs(x, self.input_scale, user_module=self.module is not None)
        norm = self.__dict__.get("_input_norm_")
        if norm is not None:
            x = self._normalized(x, norm)
        if x.ndim == 4 and self.__dict__.get("_channels_last_"):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _ensure_mode(self, training):
        """Put modules and criteria in train or eval mode if they are not.

        Only the top-level flags are read (a few attribute reads), where
        ``_set_training`` walks every submodule: a callback may have
        predicted in the middle of an epoch.
        """
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and module.training != training:
                self._set_training(training)
                return

    def _normalized(self, x, norm):
        """Return ``(x - input_mean) / input_std``, per channel, on x's device."""
        cache = self.__dict__.setdefault("_input_norm_on_", {})
        key = (x.device, x.dtype)
        if key not in cache:
            if not x.is_floating_point():
                raise ValueError(
                    "input_mean and input_std apply to images; with input_scale=None "
                    "the inputs are integer ids."
                )
            shape = (1, -1) + (1,) * (x.ndim - 2)
            cache[key] = tuple(torch.as_tensor(v, dtype=x.dtype, device=x.device)
                               .reshape(shape) for v in norm)
        mean, std = cache[key]
        return (x - mean) / std

    def train_step_single(self, batch, **fit_params):
        """Forward, weighted loss and backward pass for one batch.

        Parameters
        ----------
        batch : tuple
            ``(X, y)``: the images as stored, and the targets or the targets
            and normalised weights.
        **fit_params
            Passed to the module's ``forward``.

        Returns
        -------
        step : dict
            ``{"loss": loss, "y_pred": y_pred}``: the batch's loss and the
            module output.
        """
        loop = self._current_loop()
        if loop.records_live:
            # A batch hook may have predicted (eval mode) since the last step.
            self._ensure_mode(True)
        Xi, yi = batch
        Xi = self._prepare_inputs(Xi)
        if loop.augment_generator is not None:
            Xi, yi = self._augment_batch(Xi, yi, loop.augment_generator)
        module = self.module_ if loop.train_module is None else loop.train_module
        with loop.autocast():
            y_pred = module(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scale = self.__dict__.get("_step_scale_")
        if scale is not None:
            # Data-parallel: DDP averages the processes' gradients; this
            # process's share of the global batch's mean is scale / K of it.
            loss = loss * scale
        if self.grad_scaler_ is not None:
            self.grad_scaler_.scale(loss).backward()
        else:
            loss.backward()
        if scale is not None:
            loss = loss / self.__dict__["_dp_"].world_size
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        """One optimiser step (the loss and the module output).

        Parameters
        ----------
        batch : tuple
            ``(X, y)``: the images as stored, and the targets or the targets
            and normalised weights.
        **fit_params
            Passed to the module's ``forward``.

        Returns
        -------
        step : dict
            ``{"loss": loss, "y_pred": y_pred}``: the batch's loss and the
            module output.
        """
        loop = self._current_loop()
        if loop.closure:
            if loop.decay is not None:
                loop.decay()
            return super().train_step(batch, **fit_params)
        for optimizer in loop.optimizers:
            optimizer.zero_grad(set_to_none=True)
        step = self.train_step_single(batch, **fit_params)
        scaler = self.grad_scaler_
        if scaler is not None:
            for optimizer in loop.optimizers:
                scaler.unscale_(optimizer)
        if loop.grads_heard:
            self._hook(
                "on_grad_computed",
                named_parameters=TeeGenerator(self.get_all_learnable_params()),
                batch=batch, training=True,
            )
        if loop.decay is not None:
            loop.decay()
        for optimizer in loop.optimizers:
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
        if scaler is not None:
            scaler.update()
        return step

    def validation_step(self, batch, **fit_params):
        """Weighted loss on a validation batch, without gradients.

        Parameters
        ----------
        batch : tuple
            ``(X, y)``: the images as stored, and the targets or the targets
            and normalised weights.
        **fit_params
            Passed to the module's ``forward``.

        Returns
        -------
        step : dict
            ``{"loss": loss, "y_pred": y_pred}``: the batch's loss and the
            module output.
        """
        self._ensure_mode(False)
        Xi, yi = batch
        with torch.no_grad(), self._autocast():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def evaluation_step(self, batch, training=False):
        """Compute the module output for a batch, in float32.

        Parameters
        ----------
        batch : torch.Tensor or tuple
            The images as stored, or a tuple whose first item they are.
        training : bool, default=False
            Compute in train mode, with gradients.

        Returns
        -------
        torch.Tensor
            The module output, in float32 when it is floating point.
        """
        self.check_is_fitted()
        self._ensure_mode(training)
        with torch.set_grad_enabled(training):
            return self._evaluate(batch)

    def _evaluate(self, batch):
        """Return the module output for a batch in float32, without the checks."""
        Xi = batch[0] if isinstance(batch, (tuple, list)) else batch
        with self._autocast():
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
        X : None or torch.Tensor, default=None
            The batch's images; only their spatial size is read, to check
            the output's.
        training : bool, default=False
            Unused; part of skorch's signature.

        Returns
        -------
        loss : torch.Tensor (scalar)
            The weighted loss of the batch.
        """
        device = self.device_
        if isinstance(y_true, (tuple, list)):
            y, w = y_true
            if w.device != device:
                w = w.to(device, non_blocking=True)
        else:
            y, w = y_true, None
        if y.device != device:
            y = y.to(device, non_blocking=True)
        spatial = None if X is None else X.shape[2:]
        y_pred = self.targets_.check_output(y_pred, len(y), spatial)
        y = self.targets_.batch_target(y)
        return self._weighted_loss(y_pred, y, self.targets_.element_weights(w, y))

    def _weighted_loss(self, y_pred, y, w):
        call = self.criterion_call_
        crit = self.criterion_
        if call == "validated":
            return crit.forward_validated(y_pred, y, w)
        if call == "weighted":
            return crit(y_pred, y, sample_weight=w)
        loss = crit(y_pred, y)
        if loss.ndim == 0:
            if w is not None:
                raise ValueError(
                    f"The criterion {type(crit).__name__} returns a scalar, so it "
                    f"cannot apply sample or class weights. Use a loss with a "
                    f"`reduction` attribute or a `sample_weight` argument in forward."
                )
            return loss
        if w is not None:
            loss = loss * w.reshape(w.shape + (1,) * (loss.ndim - w.ndim))
        return loss.mean()

    def _criterion_call(self, criterion):
        """Tell how the loss receives weights.

        "validated" (skweight's losses), "weighted" (a ``sample_weight``
        argument) or "elementwise" (``reduction="none"``, weighted here).
        """
        if callable(getattr(criterion, "forward_validated", None)):
            return "validated"
        forward = getattr(criterion, "forward", criterion)
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            params = {}
        return "weighted" if "sample_weight" in params else "elementwise"

    # -- prediction ---------------------------------------------------------

    def _forward_images(self, dataset, transform=None):
        """Compute module outputs for validated images, batch by batch, on the CPU.

        Parameters
        ----------
        dataset : ArrayDataset or LazyImageDataset
            The images as stored (a user's Dataset is read item by item).
        transform : None or callable
            Applied to each batch's float32 outputs where they were computed
            (e.g. probabilities, or their argmax), so that only its result
            is kept.

        Returns
        -------
        outputs : torch.Tensor
            One row per image, in a tensor allocated once. Unlike skorch's
            ``forward``, outputs are not copied to the CPU batch by batch
            (each copy waits for the GPU): they are gathered where the data
            are and copied in large chunks.
        """
        if isinstance(dataset, ArrayDataset):
            dataset = self._place(dataset, training=False)
        iterator = self.get_iterator(dataset, training=False)
        self._set_training(False)
        # The fitted check and the mode switch are the caller's, once; per
        # batch they cost more than a small network's forward. A subclass's
        # own evaluation_step is still called for every batch.
        if _overrides(self, "evaluation_step", TrainingLoop):
            def step(batch):
                return self.evaluation_step(batch, training=False)
        else:
            step = self._evaluate
        result, done, pending, pending_bytes = None, 0, [], 0

        def flush():
            # The transform runs on a chunk of batches where the outputs
            # are: one softmax for many small batches, not one per batch.
            nonlocal result, done, pending, pending_bytes
            chunk = torch.cat(pending) if len(pending) > 1 else pending[0]
            if transform is not None:
                chunk = transform(chunk)
            chunk = chunk.cpu()
            if result is None:
                result = torch.empty((len(dataset), *chunk.shape[1:]), dtype=chunk.dtype)
            result[done:done + len(chunk)] = chunk
            done += len(chunk)
            pending, pending_bytes = [], 0

        with torch.no_grad():
            for batch in iterator:
                out = step(batch)
                pending.append(out)
                pending_bytes += out.element_size() * out.nelement()
                # On the CPU a chunk stays small: many blocks kept between the
                # batches' large ones would fragment the heap (RSS grew by 2x
                # the images in a first pass that kept every batch's output).
                limit = _CPU_CHUNK_BYTES if out.device.type == "cpu" else (
                    _OUTPUT_CHUNK_BYTES)
                if pending_bytes >= limit:
                    flush()
        if pending:
            flush()
        return result


def prefix_count(loss_key):
    """``"train_loss"`` -> ``"train_batch_count"``."""
    return loss_key[: -len("loss")] + "batch_count"


def _batch_len(batch):
    X = batch[0] if isinstance(batch, (tuple, list)) else batch
    return X.shape[0] if isinstance(X, torch.Tensor) else len(X)


def _skip_passes(iterator, passes):
    """Draw, and drop, the row orders of ``passes`` passes of a training iterator.

    Only skweight's own orders are replayed (the slicing iterator, and a
    DataLoader over a :class:`ShuffleSampler`); a user's sampler or
    generator draws as it pleases.
    """
    if passes <= 0:
        return
    if isinstance(iterator, BatchIterator):
        for _ in range(passes):
            iterator._order()
        return
    order = getattr(getattr(iterator, "batch_sampler", None), "order", None)
    order = getattr(iterator, "sampler", None) if order is None else order
    if isinstance(order, ShuffleSampler):
        for _ in range(passes):
            iter(order)  # draws the pass's permutation


def _is_2d(net):
    return len(getattr(net, "input_shape_", (0, 0, 0))) == 3
