"""CNNRegressor: image regression with sample and per-target weights."""

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from ._docstrings import fill_doc
from ._fit.base import BaseCNN, shared_parameters
from ._fit.real import RealTargets, column_scale, constant_columns, weighted_mean_std
from ._fit.targets import FittedAttribute
from ._validation import check_bool, check_sample_weight
from .exceptions import PredictionCollapseWarning
from .losses import BalancedMSELoss, HuberLoss, L1Loss, MSELoss
from .nets import SmallCNN

__all__ = ["COLLAPSE_STD_RATIO", "CNNRegressor"]

#: A target is reported as collapsed when the weighted standard deviation of
#: the predictions on the training data is below this fraction of the
#: target's own. A least-squares fit has ``std(pred) = sqrt(R^2) * std(y)``,
#: so 0.1 means the network explains about 1 % of the variance of data it
#: was trained on: it predicts (nearly) the mean.
COLLAPSE_STD_RATIO = 0.1

def _ndim(value):
    try:
        return np.ndim(value)
    except ValueError:  # ragged nested sequences
        return -1


def _validate_target_array(y, name="y"):
    """Return ``y`` as a new float64 array ``(N,)`` or ``(N, T)``."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if hasattr(y, "to_numpy"):  # pandas Series / DataFrame
        y = y.to_numpy()
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{name} must hold numbers for regression, got dtype {y.dtype} "
                f"that cannot be converted to float: {exc}"
            ) from exc
    else:
        y = y.astype(np.float64)  # a copy: the caller's array is never touched
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_targets), got "
            f"{y.ndim}-D {name} of shape {y.shape}."
        )
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(f"{name} has 0 targets (shape {y.shape}); at least 1 is needed.")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return y


@fill_doc(lr="3e-3", max_epochs="20", batch_size="64", samples="samples",
          stratified="")
class CNNRegressor(RegressorMixin, BaseCNN):
    """Convolutional image regressor with sample and per-target weights.

    A scikit-learn regressor built on skorch: ``fit(X, y, sample_weight)``
    minimises ``sum_i w_i sum_j v_j l_ij / sum_i w_i`` with sample weights
    ``w_i`` and target weights ``v_j``. Sample weights are normalised once
    over the training set in float64 before the float32 cast, so weights
    spanning 1e-100..1 train without underflow and multiplying every weight
    by a constant changes nothing. Targets are standardised by default (in
    any unit, from 1e-20 to 1e200); predictions are returned on the
    original scale.

    Parameters
    ----------
    module : None, nn.Module class or instance, default=None
        The network; it returns raw outputs of shape ``(N, n_targets)``
        (``(N,)`` is accepted for a single target). ``None`` builds
        :class:`skweight.nets.SmallCNN` sized from the data at ``fit``, with
        ``module__channels``, ``module__hidden_units``, ``module__head_size``,
        ``module__norm`` and ``module__dropout`` as its settings.
    criterion : {"mse", "l1", "huber", "balanced_mse"}, loss class or instance, \
            default="mse"
        The loss: :class:`skweight.losses.MSELoss`, :class:`~skweight.losses.L1Loss`
        or :class:`~skweight.losses.HuberLoss` (``criterion__delta``, default
        1, i.e. one standard deviation of standardised targets).
        ``"balanced_mse"`` is :class:`~skweight.losses.BalancedMSELoss` (Ren
        et al., 2022) for long-tailed targets: its label prior is fitted, at
        the start of training, to the training split's standardised targets
        weighted by the sample weights (``criterion__prior="bni"``,
        ``"gai"`` or ``"bmc"``). Its ``criterion__noise_sigma`` is in
        standardised units: the default 1.0 balances far too strongly on
        the problems of the user guide (worse than MSE); about half the
        residual standard deviation of an MSE fit, ``0.5 * sqrt(1 - R^2)``
        on held-out data, with ``criterion__learn_sigma=False``, is what
        helped there (docs/regression.md). A loss with
        a ``sample_weight`` argument in ``forward`` receives the weights
        (of shape ``(N, n_targets)`` when ``target_weight`` is set); any
        other is built with ``reduction="none"`` and weighted here.
    target_weight : None, "balanced" or array-like of shape (n_targets,), \
            default=None
        Per-target loss weights for multi-output regression. They act on the
        targets as the loss sees them (standardised, by default) and are
        rescaled to mean 1: only their ratios matter. ``None`` weighs every
        target equally. ``"balanced"`` weighs target ``j`` by
        ``1 / Var_w(z_j)``, the inverse of the (sample-weighted) variance of
        the target ``z_j`` given to the loss; with the mean squared error
        each target then contributes ``(1 - R^2_j)``, its error relative to
        predicting its mean, which is exactly what :meth:`score` averages.
        With ``standardize_target=True`` every variance is already 1, so
        ``"balanced"`` equals ``None``: standardising *is* the balancing.
        With raw targets it balances the objective the same way, but the
        network must still produce outputs on each target's own scale, which
        the optimiser reaches slowly for large scales; standardising is the
        better route. The rule "largest mean / mean of each target" is not
        used: a target's mean says nothing about its spread (``sin(phi)``
        has mean 0 and would get an infinite weight), and the loss of each
        target is driven by its spread around the mean, not by the mean.
    standardize_target : bool, default=True
        Standardise each target with the weighted mean and standard
        deviation of the ``y`` passed to ``fit`` (weights of 0 leave a sample
        out). A constant target gets scale 1 instead of a division by zero.
        Standardised targets make the default learning rate and
        initialisation fit any unit of ``y``, and let a Huber ``delta`` mean
        the same thing for every target. Without it, targets must be
        representable in float32 (the network outputs them as they are).
    %(input_shape)s
    %(input_scale)s
    %(network_parameters)s
    %(training_parameters)s

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    target_mean_ : ndarray of shape (n_outputs,)
        Weighted mean of each target (zeros if ``standardize_target=False``).
    target_scale_ : ndarray of shape (n_outputs,)
        Weighted standard deviation of each target, 1 for constant targets
        (ones if ``standardize_target=False``). Predictions are
        ``network output * target_scale_ + target_mean_``.
    target_weight_ : None or ndarray of shape (n_outputs,)
        The per-target loss weights used, with mean 1.
    %(fitted_attributes)s

    Notes
    -----
    The effective sample size ``(sum w)^2 / sum w^2`` of the training weights
    is checked before training; below 1 %% of ``N``
    (:data:`skweight.weighting.ESS_WARN_FRACTION`) a ``UserWarning`` says that
    a handful of samples dominate. At that point a mini-batch of 64 carries
    less than one sample's worth of information, so the gradients are mostly
    noise; weights spanning many orders of magnitude (probabilities from 1 to
    1e-100) usually land there.

    After ``fit`` the predictions on the training data are compared with the
    targets: when their standard deviation is below
    :data:`COLLAPSE_STD_RATIO` (10 %%) of the target's for some target, a
    :class:`skweight.exceptions.PredictionCollapseWarning` says that the
    network predicts the mean, and what to try.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight import CNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> brightness = rng.uniform(0.2, 1.0, 300)
    >>> X = brightness[:, None, None, None] * rng.random((300, 1, 8, 8))
    >>> reg = CNNRegressor(max_epochs=10, random_state=0).fit(X, brightness)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> bool(reg.score(X, brightness) > 0.8)
    True
    """

    _named_criteria = {"mse": MSELoss, "l1": L1Loss, "huber": HuberLoss,
                       "balanced_mse": BalancedMSELoss}

    n_outputs_ = FittedAttribute("n_outputs")
    target_mean_ = FittedAttribute("mean")
    target_scale_ = FittedAttribute("scale")
    target_weight_ = FittedAttribute("weight")

    def __init__(self, module=None, *, criterion="mse", target_weight=None,
                 standardize_target=True, input_shape=None, input_scale="auto",
                 input_mean=None, input_std=None, head="auto", freeze=None,
                 unfreeze_from_epoch=None, backbone_lr=None, random_state=None,
                 device="auto", precision="32", channels_last=False,
                 data_device_fraction=0.5, optimizer=torch.optim.AdamW, lr=3e-3,
                 weight_decay=0.0, max_epochs=20, batch_size=64, train_split=None,
                 callbacks=None, verbose=0, warm_start=False, compile=False, augment=None,
                 distributed="auto", **kwargs):
        # The parameters every estimator has are the base's to store.
        super().__init__(**shared_parameters(locals()))
        self.target_weight = target_weight
        self.standardize_target = standardize_target

    def _check_params(self):
        super()._check_params()
        check_bool(self.standardize_target, "standardize_target")
        tw = self.target_weight
        if isinstance(tw, str):
            if tw != "balanced":
                raise ValueError(
                    f"target_weight must be None, 'balanced' or an array of one "
                    f"non-negative weight per target, got the string {tw!r}."
                )
        elif tw is not None and (isinstance(tw, numbers.Number) or _ndim(tw) != 1):
            raise ValueError(
                f"target_weight must be None, 'balanced' or a 1-D array of one "
                f"non-negative weight per target, got {tw!r}."
            )

    @fill_doc()
    def fit(self, X, y, sample_weight=None, **fit_params):
        """Train the network from scratch (or further, with ``warm_start``).

        Parameters
        ----------
        %(X)s
        y : array-like of shape (N,) or (N, n_targets)
            Finite targets of any unit. 1-D ``y`` gives 1-D predictions.
        %(sample_weight)s
        %(fit_params)s

        Returns
        -------
        self : CNNRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, fit_params=fit_params)

    def partial_fit(self, X, y, sample_weight=None, *, classes=None, **fit_params):
        """Continue training (or start, on the first call) for ``max_epochs``.

        The target scaling is learned on the first call and kept afterwards.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in :meth:`fit`.
        y : array-like of shape (N,) or (N, n_targets)
            Finite targets, as in :meth:`fit`.
        sample_weight : None or array-like of shape (N,)
            Non-negative weights, as in :meth:`fit`.
        classes : None
            Ignored. skorch's ``partial_fit`` has it and declares it unused
            for metadata routing, which then requires it in the signature.
        **fit_params
            Passed to the module's ``forward``, as in skorch.

        Returns
        -------
        self : CNNRegressor
            The estimator, trained further.
        """
        return self._fit(X, y, sample_weight, partial=True, fit_params=fit_params)

    # -- the hooks of the fit template ----------------------------------------

    def _check_targets(self, y, n_samples, spatial):
        y = _validate_target_array(y)
        if len(y) != n_samples:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"X has {n_samples}, y has {len(y)}."
            )
        return y

    def _learn_targets(self, y, sample_weight, classes):
        # The scaling belongs to the network: it is learned exactly when the
        # network is (re)initialised, and kept when training goes on.
        return RealTargets.learn(y, sample_weight, standardize=self.standardize_target,
                                 target_weight=self.target_weight)

    def _default_module(self, **kwargs):
        c, h, w = self.input_shape_
        # No normalisation layers by default: GroupNorm after a bias-free
        # convolution makes the network exactly invariant to the intensity
        # scale of each image, so a target such as brightness or dose could
        # not be learned at all (test R^2 < 0 on such a task, 0.99 without).
        # BatchNorm is ruled out by the weight semantics (see nets.py).
        kwargs.setdefault("norm", None)
        return SmallCNN(in_channels=c, n_outputs=self.n_outputs_, image_size=(h, w),
                        **kwargs)

    # -- collapse check ---------------------------------------------------

    def _after_fit(self, data, valid):
        if len(data) < 2 or self.max_epochs == 0:
            return
        targets = data.target.numpy().astype(np.float64)
        weights = None if data.weight is None else data.weight.numpy()
        out = self._forward_images(data)
        pred = self.targets_.check_output(out, len(targets), None).numpy()
        pred = pred.astype(np.float64)
        if not np.all(np.isfinite(pred)):
            warnings.warn(
                "The network's outputs on the training data are not finite: "
                "training diverged. Try a smaller learning rate `lr`, scaled "
                "inputs (uint8 images, or floats in [0, 1]) and "
                "standardize_target=True.",
                UserWarning,
                stacklevel=4,
            )
            return
        _, pred_std = weighted_mean_std(pred, weights)
        _, target_std = weighted_mean_std(targets, weights)
        # Constant targets, and targets the user gave weight 0, have nothing
        # to learn: a flat prediction is right for them.
        ignored = constant_columns(targets, target_std)
        if self.target_weight_ is not None:
            ignored = ignored | (self.target_weight_ == 0)
        ratio = np.divide(pred_std, target_std, out=np.ones_like(pred_std),
                          where=~ignored)
        collapsed = np.flatnonzero(ratio < COLLAPSE_STD_RATIO)
        if collapsed.size == 0:
            return
        which = (
            "the target" if self.n_outputs_ == 1
            else f"target(s) {collapsed.tolist()}"
        )
        warnings.warn(
            f"The predictions on the training data barely vary for {which}: their "
            f"standard deviation is {np.round(ratio[collapsed], 4).tolist()} times "
            f"the targets' (threshold {COLLAPSE_STD_RATIO}), so the network "
            f"predicts about the mean. Things to try: "
            f"{'; '.join(self._collapse_hints(getattr(data, 'X', None)))}.",
            PredictionCollapseWarning,
            stacklevel=4,
        )

    def _collapse_hints(self, images):
        hints = []
        # Integer images are scaled by input_scale; a lazily read Dataset is
        # not scanned again just for this hint.
        floats = images is not None and images.is_floating_point() and images.numel()
        top = float(images.abs().max()) if floats else 0.0
        if top > 10:
            hints.append(
                f"scale the inputs, which reach {top:.4g} (pass uint8 images, "
                f"divide by 255, or standardise them)"
            )
        hints.append(f"another learning rate (lr={self.lr:g}; try 10x smaller)")
        if not self.standardize_target:
            hints.append("standardize_target=True")
        hints.append(f"more epochs (max_epochs={self.max_epochs})")
        hints.append(
            "check that the inputs carry the information, e.g. against a linear "
            "baseline such as sklearn.linear_model.Ridge on the flattened pixels"
        )
        return hints

    # -- prediction -------------------------------------------------------

    def predict(self, X):
        """Predicted targets, on the scale of the ``y`` given to ``fit``.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in :meth:`fit`.

        Returns
        -------
        y : ndarray of shape (N,) or (N, n_targets)
            1-D when ``fit`` got a 1-D ``y``.
        """
        out = self._outputs(X)
        return self.targets_.inverse(out.numpy())

    @property
    def predict_proba(self):
        """Not available: a regressor has no class probabilities."""
        # The base class defines the label estimators' probabilities;
        # scikit-learn tells regressors from classifiers by their presence.
        raise AttributeError(
            f"{type(self).__name__} has no predict_proba; use predict."
        )

    @property
    def predict_log_proba(self):
        """Not available: a regressor has no class probabilities."""
        raise AttributeError(
            f"{type(self).__name__} has no predict_log_proba; use predict."
        )

    def score(self, X, y, sample_weight=None):
        """Weighted coefficient of determination R^2 of :meth:`predict`.

        As :func:`sklearn.metrics.r2_score` (averaged uniformly over
        targets). R^2 does not depend on the unit of a target, so each is
        first divided by its largest magnitude and the weights by their
        maximum: targets from 1e-20 to 1e200 and weights as small as 1e-300
        are handled.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images.
        y : array-like of shape (N,) or (N, n_targets)
            True targets, on the scale of the ``y`` given to ``fit``.
        sample_weight : None or array-like of shape (N,)
            Non-negative weights of the samples.

        Returns
        -------
        score : float
            R^2, averaged over the targets: 1 for perfect predictions, 0 for
            predicting the (weighted) mean, negative for worse.
        """
        y_pred = self.predict(X)
        y_true = _validate_target_array(y)
        y_true = y_true.reshape(len(y_true), -1)
        sw = check_sample_weight(sample_weight, len(y_pred))
        if sw is not None:
            sw = sw / sw.max()
        pred = y_pred.reshape(len(y_pred), -1)
        if pred.shape != y_true.shape:
            raise ValueError(
                f"y has shape {np.shape(y)}, but the predictions have shape "
                f"{y_pred.shape}."
            )
        scale = column_scale(y_true)
        return float(r2_score(y_true / scale, pred / scale, sample_weight=sw))

    def __sklearn_tags__(self):
        """Return scikit-learn's tags: single- and multi-output targets."""
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags
