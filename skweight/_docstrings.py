"""Parameter documentation shared by the estimators, and the means to share more.

Docstrings name shared entries as ``%(name)s`` on a line of their own;
:func:`fill_doc` substitutes them, so that a parameter the three estimators
have in common is described once. Entries that differ only in a default
value take it from the estimator (``%(lr)s`` and friends). Other modules
pass their own entries to :func:`fill_doc` (``entries=``), as the metrics
do.
"""

import re
import textwrap

__all__ = ["fill_doc"]

_PARAMETERS = {
    "input_shape": """\
    input_shape : None or tuple, default=None
        ``(C, H, W)`` to reshape flattened 2-D ``X`` (as imbalanced-learn
        samplers and scikit-learn transformers produce). Without it, 2-D
        ``X`` is treated as ``(N, 1, 1, n_features)``.""",
    "input_scale": """\
    input_scale : "auto", None or float, default="auto"
        How integer inputs reach the network; they are stored as they come
        (no float copy of ``X``) and converted per batch on the device.
        ``"auto"``: ``uint8`` images are divided by 255 and ``uint16`` ones
        by 65535; other integers (e.g. token ids) reach a module of your own
        unscaled as int64, and the default network as float32; floats as
        they are. ``None``: every integer input reaches the network
        unscaled as int64 (ids stored as ``uint8``). A number multiplies
        every input (integers as float32).""",
    "input_mean": """\
    input_mean : None or array-like of shape (C,), default=None
        Per-channel mean subtracted from the images, after the integer
        scaling (``input_scale``), on the device, at fit and prediction
        alike: e.g. a pretrained backbone's ``(0.485, 0.456, 0.406)``. One
        value per channel of the images (for grey images into an RGB
        network, one value).""",
    "input_std": """\
    input_std : None or array-like of shape (C,), default=None
        Per-channel standard deviation the images are divided by, after
        ``input_mean``; no zeros.""",
    "head": """\
    head : "auto", None or str, default="auto"
        The layer that outputs the logits (or the regression outputs) of a
        network given as ``module``. ``"auto"``: the network's
        ``get_classifier()`` where it has one (timm), else its last
        ``nn.Linear`` (a segmenter: else its last convolution); or a layer's name
        (``"fc"``, ``"classifier.1"``). When its number of outputs is not
        the number of classes (or targets), it is replaced by a freshly
        initialised layer of the right size, seeded by ``random_state``.
        ``None``: the network's outputs are taken as they are.""",
    "freeze": """\
    freeze : None, "backbone" or list of str, default=None
        Parameters kept as they are while training: ``"backbone"`` is every
        parameter outside the head (the default U-Net: its encoder), a list
        holds ``fnmatch`` patterns of parameter names (``["conv1.*",
        "layer1.*"]``), each of which must match. Frozen parameters get no
        update and no weight decay, and normalisation layers whose
        parameters are all frozen stay in inference mode (BatchNorm's
        running statistics unchanged); to let a BatchNorm's statistics
        follow the new data, leave its parameters out of the patterns.""",
    "unfreeze_from_epoch": """\
    unfreeze_from_epoch : None or int, default=None
        The epoch (from 1, over the training history) from which the
        ``freeze`` d parameters train too, at ``backbone_lr``: fastai's two
        stages, the new head first. ``None``: frozen for the whole fit.""",
    "backbone_lr": """\
    backbone_lr : None or float, default=None
        The learning rate of every parameter outside the head (from the
        start, or once unfrozen); the head learns at ``lr``. ``None``:
        ``lr`` for all. A rate 10 to 100 times below ``lr`` is the usual
        choice for fine-tuning.""",
    "random_state": """\
    random_state : None, int or RandomState, default=None
        Seeds weight initialisation, shuffling, dropout, the validation
        split and any resampling or augmentation: the same seed gives the
        same model, whatever else runs in the process (seeded sections of
        fits in threads run one at a time). ``None`` draws the seeds from
        NumPy's global random state.""",
    "device": """\
    device : "auto", "cpu", "cuda" or torch.device, default="auto"
        ``"auto"`` uses CUDA when available; the device used is
        ``device_``.""",
    "precision": """\
    precision : {"32", "bf16", "fp16"}, default="32"
        Mixed precision on CUDA (ignored on the CPU). Losses are always
        computed in float32.""",
    "channels_last": """\
    channels_last : bool, default=False
        Use the channels-last memory format on CUDA (ignored on the CPU).
        It concerns memory only: ``X`` is always ``(N, C, H, W)``.""",
    "data_device_fraction": """\
    data_device_fraction : float, default=0.5
        On CUDA the training data live on the GPU when they take less than
        this share of its free memory (counting the bytes as stored: uint8
        images a quarter of float32's); else they stay in host memory and
        each batch is gathered into pinned memory for an asynchronous
        copy.""",
    "optimizer": """\
    optimizer : torch optimizer class or str, default=torch.optim.AdamW
        The optimizer, or its name: "adam", "adamw", "sgd", "rmsprop",
        "adagrad", "adadelta", "adamax", "nadam", "radam", "asgd", "rprop"
        or "lbfgs". Its settings go through ``optimizer__*``.""",
    "lr": """\
    lr : float, default=%(lr)s
        Learning rate.""",
    "weight_decay": """\
    weight_decay : float, default=0.0
        Decoupled weight decay (as AdamW's, with any optimizer): before each
        step the network's weights shrink by ``1 - lr * weight_decay``. It
        applies to the weights of convolutional, linear and embedding
        layers only: not to biases, not to normalisation layers, not to the
        loss's own parameters (e.g. Balanced MSE's noise scale), not to
        frozen parameters. ``optimizer__weight_decay`` keeps torch's meaning
        (every parameter the optimizer trains): the default
        ``torch.optim.AdamW`` decays every parameter by 0.01 unless
        ``optimizer__weight_decay=0``. A tuned weight decay is one
        of the strongest levers on long-tailed data (see the user guide on
        weights).""",
    "max_epochs": """\
    max_epochs : int, default=%(max_epochs)s
        Number of passes over the training data per ``fit``.""",
    "batch_size": """\
    batch_size : int, default=%(batch_size)s
        Samples per mini-batch; ``-1`` trains on the full batch.""",
    "train_split": """\
    train_split : None, float or callable, default=None
        ``None`` trains on all data. A float holds out that fraction of the
        %(samples)s, seeded by ``random_state``%(stratified)s, to report a
        weighted ``valid_loss`` (use it with ``skorch.callbacks.EarlyStopping``).
        A callable such as ``skorch.dataset.ValidSplit`` is used as in skorch.""",
    "callbacks": """\
    callbacks : None, "disable" or list, default=None
        The skorch callbacks. Those that listen to every batch
        (``on_batch_begin``/``on_batch_end``/``on_grad_computed``) see
        ``batch=(X, y)`` with ``y`` as given to ``fit``.""",
    "verbose": """\
    verbose : int, default=0
        ``1`` prints skorch's epoch table.""",
    "warm_start": """\
    warm_start : bool, default=False
        Continue training the current network at the next ``fit``
        (as ``partial_fit`` does) instead of starting afresh. Data that do
        not fit the network (other channels, classes or targets) are
        refused.""",
    "compile": """\
    compile : bool, default=False
        ``torch.compile`` the module.""",
    "augment": """\
    augment : None or callable, default=None
        Augmentation of the training batches, ``(X, y) -> (X, y)``, applied
        where a batch lives (on the GPU when training there), never to the
        validation split or at prediction: e.g. the seeded transforms of
        :mod:`skweight.augment` (``RandomFlip()``, ``Compose([...])``),
        which draw from a generator seeded by ``random_state``, or a
        ``torchvision.transforms.v2`` object. Weights stay with their
        samples; label masks and per-pixel weights move with their pixels,
        and pixels that come from outside the image get weight 0. Its own
        parameters can be set as ``augment__<name>``.""",
    "distributed": """\
    distributed : "auto" or bool, default="auto"
        Data-parallel training across the processes of ``torchrun``: with
        ``"auto"`` whenever torchrun's environment says ``WORLD_SIZE > 1``
        (the process group is created if there is none, and reused if there
        is). ``batch_size`` is the global batch, so the model does not
        depend on the number of processes; every process ends with the same
        fitted estimator. ``False`` trains in each process on its own.""",
    "class_prior": """\
    class_prior : None, "train" or array-like of shape (n_classes,), default=None
        The class frequencies of the population the probabilities are for.
        ``None`` gives the probabilities as trained: class weights, a
        sampler's balancing, focal ``alpha`` and logit adjustment all move
        them towards the class prior the loss saw. ``"train"`` maps them, by
        Bayes' rule, to the unweighted class frequencies of the training
        split; an array (aligned with ``classes_``, normalised by its sum,
        so counts work) to a deployment population's. It never enters the
        loss, and ``predict`` is the argmax of ``predict_proba``. The
        correction is exact for a calibrated network (see the user guide on
        weights).""",
    "prior_tau": """\
    prior_tau : float, default=1.0
        Strength of the ``class_prior`` correction: the probabilities become
        ``p(y|x) * (class_prior / effective_prior_) ** prior_tau``,
        renormalised (per label, on the log-odds, for multi-label ``y``).
        ``0`` leaves them as trained and ``1`` is Bayes' rule. It is applied
        at prediction only, so it can be tuned without refitting: compute
        ``predict_proba`` once and try values on a held-out set, or search
        over it with a fitted model (``FrozenEstimator``). Post-hoc logit
        adjustment with ``class_prior`` uniform and ``prior_tau`` near 0.65
        is a strong long-tail recipe (Hasegawa and Sato, 2024).""",
    "reweight_from_epoch": """\
    reweight_from_epoch : None or int, default=None
        Deferred re-weighting (Cao et al., 2019): the class weights and the
        sampler apply from this epoch on (counted from 1 over the training
        history); before it the network trains on the data with their sample
        weights only. ``None`` applies them from the start.""",
    "prior_attributes": """\
    train_prior_ : ndarray of shape (n_classes,)
        The class frequencies of the training split as drawn: unweighted,
        before any resampling (what ``class_prior="train"`` maps the
        probabilities to).
    effective_prior_ : ndarray of shape (n_classes,)
        The class prior the network's outputs are calibrated for: the class
        distribution the loss saw (the training rows as served, weighted by
        the sample and class weights), and, after logit adjustment with
        strength ``tau``, that distribution times ``prior ** -tau``,
        renormalised. ``class_prior`` moves the probabilities from it to the
        requested population by Bayes' rule.""",
    "kwargs": """\
    **kwargs
        Other skorch parameters with their prefixes: ``module__*``,
        ``criterion__*``, ``optimizer__*``, ``iterator_train__*``,
        ``iterator_valid__*``, ``callbacks__*``.""",
    "X": """\
    X : array-like, torch.Tensor or torch Dataset
        Images ``(N, C, H, W)`` or ``(N, H, W)``, or flattened
        ``(N, C*H*W)`` with ``input_shape``; ``uint8`` is scaled to [0, 1]
        per batch (see ``input_scale``), and a read-only memmap is read, not
        copied.
        A ``torch.utils.data.Dataset`` of images (items ``x`` or
        ``(x, ...)``) is read lazily, item by item.""",
    "sample_weight": """\
    sample_weight : None or array-like of shape (N,)
        Non-negative weights of any magnitude; weight 0 leaves a sample
        out, integer weight k counts it k times, and multiplying all
        weights by a constant changes nothing.""",
    "fit_params": """\
    **fit_params
        Passed to the module's ``forward``, as in skorch.""",
    "fitted_attributes": """\
    input_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    n_features_in_ : int
        Number of features of ``X`` as passed to ``fit`` (``C*H*W`` for
        images).
    feature_names_in_ : ndarray of str
        Column names of ``X`` when it was a DataFrame with string columns.
    head_ : None or str
        The name of the network's head (see ``head``).
    input_adapted_ : None or str
        How the first convolution of a network given as ``module`` was
        adapted to the images' channels, if it was.
    device_ : torch.device
        The device the network lives on.
    module_ : nn.Module
        The trained network.
    criterion_ : nn.Module
        The loss.
    history_ : skorch.History
        Per-epoch and per-batch losses and timings.""",
}


# The settings of the network and its inputs, in the order the estimators list them.
_NETWORK = ("input_mean", "input_std", "head", "freeze", "unfreeze_from_epoch",
            "backbone_lr")

# The settings of the training itself, in the order the estimators list them.
_TRAINING = ("random_state", "device", "precision", "channels_last",
             "data_device_fraction", "optimizer", "lr", "weight_decay", "max_epochs",
             "batch_size", "train_split", "callbacks", "verbose", "warm_start",
             "compile", "augment", "distributed", "kwargs")


def fill_doc(entries=None, **defaults):
    """Substitute the shared parameter docs into a docstring.

    A placeholder stands on a line of its own, indented like the entries
    around it (``    %(input_shape)s`` in a class docstring, eight spaces
    in a method's); the entry is indented to match.

    Parameters
    ----------
    entries : None or mapping of str to str, default=None
        More entries, for docs shared by another family of functions (e.g.
        the metrics'). They are written like the estimators' entries and
        take precedence over those of the same name.
    **defaults
        Values for the placeholders inside shared entries (e.g. ``lr``).

    Returns
    -------
    decorator : callable
    """
    sources = {**_PARAMETERS, **(entries or {})}

    def decorator(obj):
        if obj.__doc__ is None:  # docstrings are stripped under ``python -OO``
            return obj
        filled = {}
        for name, text in sources.items():
            if "%(" in text:
                try:
                    text = text % defaults
                except KeyError:  # an entry this docstring does not use
                    continue
            filled[name] = textwrap.dedent(text)
        filled["training_parameters"] = "\n".join(
            filled[name] for name in _TRAINING if name in filled
        )
        filled["network_parameters"] = "\n".join(
            filled[name] for name in _NETWORK if name in filled
        )

        def substitute(match):
            indent, name = match.group(1), match.group(2)
            if name not in filled:
                return match.group(0)
            return textwrap.indent(filled[name], indent)

        doc = re.sub(r"^( *)%\((\w+)\)s$", substitute, obj.__doc__, flags=re.MULTILINE)
        # (%% in a docstring stands for a literal %, as in %-formatting.)
        obj.__doc__ = doc % defaults
        return obj

    return decorator
