"""CNNSegmenter: semantic segmentation with class, image and pixel weights."""

import numbers

import numpy as np
import torch

from ._base import BaseCNN
from ._loader import ArrayDataset
from .classifier import encode_labels
from .losses import CrossEntropyLoss, DiceCELoss, DiceLoss, FocalLoss, TverskyLoss
from .losses._base import ClassWeightedLoss
from .metrics import dice_score
from .nets import UNet
from .weighting import check_sample_weight, compute_class_weight

__all__ = ["CNNSegmenter"]


def _check_ignore_index(ignore_index):
    if ignore_index is None:
        return None
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(
            f"ignore_index must be None or an int (the label of pixels that neither "
            f"teach nor count), got {ignore_index!r}."
        )
    return int(ignore_index)


def _check_masks(y, n_samples, spatial_shape, name="y"):
    """``y`` as an int64 array of shape ``(N, H, W)`` matching the images."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if hasattr(y, "tocsr"):
        raise TypeError(f"{name} must be dense label masks, got a sparse matrix.")
    y = np.asarray(y)
    expected = (n_samples, *spatial_shape)
    if y.shape != expected:
        hint = ""
        if y.ndim == 4 and y.shape[1] == 1:
            hint = " Drop the channel axis, e.g. y[:, 0]."
        elif y.ndim == 1:
            hint = (" A segmenter needs one label per pixel; for one label per image "
                    "use CNNClassifier.")
        raise ValueError(
            f"{name} must hold label masks of shape (N, H, W) = {expected}, matching "
            f"the images X, got shape {y.shape}.{hint}"
        )
    if y.dtype.kind in "biu":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f":
        # Masks often arrive as floats after a framework conversion; whole
        # numbers are labels, anything else (probabilities, NaN) is not.
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(
                f"{name} must hold integer class labels, got non-integer values "
                f"(dtype {y.dtype}); pass label masks, not probabilities."
            )
        return y.astype(np.int64)
    raise ValueError(
        f"{name} must hold integer class labels, got an array of dtype {y.dtype}."
    )


class CNNSegmenter(BaseCNN):
    """Fully convolutional segmenter with class, image and pixel weights.

    A scikit-learn estimator built on skorch that maps images ``(N, C, H,
    W)`` to label masks ``(N, H, W)``. ``fit(X, y, sample_weight,
    class_weight)`` minimises the weighted mean loss over pixels, with
    pixel weight ``w = sample_weight * class_weight[y]`` where
    ``sample_weight`` is given per image ``(N,)`` or per pixel ``(N, H,
    W)``. Weights are normalised once over the training pixels in float64
    (mean 1), so each mini-batch loss is an unbiased estimate of
    ``sum w l / sum w`` for the pixel-wise losses; for Dice and Tversky the
    weights enter inside the sums. Pixels labelled ``ignore_index`` get
    weight 0: they neither teach nor count.

    Parameters
    ----------
    module : None, nn.Module class or instance, default=None
        The network; it returns logits of shape ``(N, n_classes, H, W)``.
        ``None`` builds :class:`skweight.nets.UNet` from the data at ``fit``;
        set its width and depth with ``module__channels`` (default
        ``(16, 32, 64)``: three stages, two poolings) and its normalisation
        with ``module__norm``. It accepts any ``H x W`` at predict time.
    criterion : {"dice_ce", "dice", "cross_entropy", "focal", "tversky"}, \
            loss class or instance, default="dice_ce"
        The loss, from :mod:`skweight.losses`: ``"dice_ce"`` is Dice plus
        cross-entropy (:class:`~skweight.losses.DiceCELoss`), ``"tversky"``
        takes ``criterion__alpha`` and ``criterion__beta``, ``"focal"``
        ``criterion__gamma``. Class weights are applied by the estimator as
        pixel weights; do not also give the loss its own class weights.
    class_weight : None, "balanced" or dict, default=None
        Per-class pixel weights. ``"balanced"`` weighs class ``k`` by
        ``sum(w) / (n_classes * sum(w[y == k]))`` over the training pixels
        (with their sample weights; ignored pixels excluded). A dict maps
        labels to weights (others get 1). ``fit(class_weight=...)``
        overrides it for that call.
    ignore_index : None or int, default=None
        Label of pixels that are left out of training, of ``classes_`` and
        of :meth:`score` (e.g. 255 for unannotated borders).
    input_shape : None or tuple, default=None
        ``(C, H, W)`` to reshape flattened 2-D ``X``.
    random_state : None, int or RandomState, default=None
        Seeds weight initialisation, shuffling and the validation split:
        the same seed gives the same model.
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
    lr : float, default=3e-3
    max_epochs : int, default=15
    batch_size : int, default=16
        ``-1`` trains on the full batch.
    train_split : None, float or callable, default=None
        ``None`` trains on all images. A float holds out that fraction of
        the images (seeded by ``random_state``) to report a weighted
        ``valid_loss``. A callable such as ``skorch.dataset.ValidSplit`` is
        used as in skorch.
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
        The labels found in the training masks (``ignore_index`` excluded),
        sorted. ``classes_[0]`` is treated as the background by
        :meth:`score`.
    class_weight_ : None or ndarray of shape (n_classes,)
        The class weights used in the last ``fit``, aligned with ``classes_``.
    input_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    n_features_in_ : int
        Number of features of ``X`` as passed to ``fit``.
    module_ : nn.Module
        The trained network.
    history_ : skorch.History
        Per-epoch losses and timings.

    See Also
    --------
    skweight.metrics.dice_score, skweight.metrics.iou_score,
    skweight.metrics.hausdorff_distance : Metrics for the predicted masks.

    Notes
    -----
    The defaults (U-Net widths ``(16, 32, 64)``, ``lr=3e-3``,
    ``batch_size=16``, ``max_epochs=15``) are tuned on 600 noisy 32x32
    scenes of :func:`skweight.datasets.make_disk_scenes`: they segment
    disks of radius 2 (Dice about 0.85) and squares (about 0.97) in some
    20 seconds of CPU time. Small batches give many optimiser steps per
    epoch, which small data sets need.

    The segmenter is not a scikit-learn classifier (its ``y`` is not one
    label per sample), so cross-validation splits images with ``KFold``,
    and ``GridSearchCV`` without ``scoring`` ranks models by :meth:`score`,
    the mean foreground Dice.

    Examples
    --------
    >>> from skweight import CNNSegmenter
    >>> from skweight.datasets import make_disk_scenes
    >>> X, y = make_disk_scenes(40, image_size=16, square_size=6, random_state=0)
    >>> seg = CNNSegmenter(max_epochs=2, random_state=0).fit(X, y)
    >>> seg.predict(X[:3]).shape, seg.predict_proba(X[:3]).shape
    ((3, 16, 16), (3, 3, 16, 16))
    """

    _named_criteria = {
        "cross_entropy": CrossEntropyLoss,
        "dice": DiceLoss,
        "dice_ce": DiceCELoss,
        "focal": FocalLoss,
        "tversky": TverskyLoss,
    }
    _match_spatial = False

    def __init__(self, module=None, *, criterion="dice_ce", class_weight=None,
                 ignore_index=None, input_shape=None, random_state=None, device="auto",
                 precision="32", channels_last=False, data_device_fraction=0.5,
                 optimizer=torch.optim.AdamW, lr=3e-3, max_epochs=15, batch_size=16,
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
        self.ignore_index = ignore_index

    @property
    def _weighted_what(self):
        # For the effective-sample-size warning: weights are per image
        # unless a per-pixel map or class weights spread them over pixels.
        return "pixels" if getattr(self, "pixel_weights_", False) else "images"

    # -- fitting ----------------------------------------------------------

    def fit(self, X, y, sample_weight=None, class_weight=None, **fit_params):
        """Train the network from scratch.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images ``(N, C, H, W)`` or ``(N, H, W)``, or flattened
            ``(N, C*H*W)`` with ``input_shape``. ``uint8`` is scaled to [0, 1].
        y : array-like of shape (N, H, W)
            Integer label masks (any integer labels; ``ignore_index`` marks
            pixels to leave out).
        sample_weight : None or array-like of shape (N,) or (N, H, W)
            Non-negative weights per image or per pixel. Weight 0 leaves an
            image (or a pixel) out; integer weight k counts it k times.
        class_weight : None, "balanced" or dict
            Overrides the constructor's ``class_weight`` for this call.
        **fit_params
            Passed to the module's ``forward``, as in skorch.

        Returns
        -------
        self : CNNSegmenter
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
            As in :meth:`fit`; later calls may use other image sizes.
        classes : None or array-like
            All labels; needed on the first call if ``y`` lacks some of them.

        Returns
        -------
        self : CNNSegmenter
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
        _check_ignore_index(self.ignore_index)

    def _validate_targets(self, y, image_shape, reset, classes=None):
        # The masks must match these images' H and W, which may differ from
        # fit's at partial_fit.
        y = _check_masks(y, image_shape[0], image_shape[2:])
        ignore = _check_ignore_index(self.ignore_index)
        ignored = None if ignore is None else y == ignore
        if ignored is not None and not ignored.any():
            ignored = None
        kept = y if ignored is None else y[~ignored]
        if reset:
            known = None if classes is None else np.unique(classes)
            if known is not None and ignore is not None:
                known = known[known != ignore]
            if kept.size == 0:
                raise ValueError(
                    f"Every pixel of y has the label ignore_index={ignore}; there is "
                    f"nothing to learn from."
                )
            classes, encoded_kept = encode_labels(kept, known)
            if len(classes) < 2:
                where = "" if ignored is None else " outside ignore_index"
                raise ValueError(
                    f"y has only one class ({classes[0]!r}){where}; a segmenter needs "
                    f"at least 2 classes (e.g. background and object)."
                )
            self.classes_ = classes
        else:
            _, encoded_kept = encode_labels(kept, self.classes_)
        if ignored is None:
            return torch.from_numpy(encoded_kept.reshape(y.shape))
        # -1 marks ignored pixels until _element_weights turns them into
        # weight-0 pixels of class 0.
        encoded = np.full(y.shape, -1, dtype=np.int64)
        encoded[~ignored] = encoded_kept
        return torch.from_numpy(encoded)

    def _element_weights(self, y, sample_weight, fit_kwargs):
        spatial = tuple(y.shape[1:])
        sw = check_sample_weight(sample_weight, y.shape[0], extra_shape=spatial)
        ignored = y < 0
        any_ignored = bool(ignored.any())
        if any_ignored:
            # The loss must never see an out-of-range label; with weight 0
            # the stand-in label 0 counts in no sum and no gradient.
            y.masked_fill_(ignored, 0)
        requested = fit_kwargs.get("class_weight")
        if requested is None:
            requested = self.class_weight
        self.pixel_weights_ = False
        if requested is None and not any_ignored:
            self.class_weight_ = None
            self.pixel_weights_ = sw is not None and sw.ndim > 1
            return sw  # None (the fast path) or weights per image or pixel
        labels = y.numpy()
        w = np.ones(y.shape) if sw is None else np.broadcast_to(
            sw.reshape(sw.shape + (1,) * (labels.ndim - sw.ndim)), labels.shape
        ).astype(np.float64)
        if any_ignored:
            w = w * ~ignored.numpy()
        cw = compute_class_weight(requested, labels, self.classes_, w)
        self.class_weight_ = cw
        if cw is not None:
            w = w * cw[labels]
        if not np.any(w > 0):
            raise ValueError(
                "Every training pixel has weight 0 (after ignore_index, "
                "sample_weight and class_weight); there is nothing to learn from."
            )
        self.pixel_weights_ = True
        return w

    def _default_module(self, **kwargs):
        return UNet(in_channels=self.input_shape_[0], n_classes=len(self.classes_),
                    **kwargs)

    def initialize_criterion(self):
        """Instantiate the loss; refuse class weights given twice."""
        super().initialize_criterion()
        if getattr(self, "class_weight_", None) is None:
            return self
        crit = self.criterion_
        if isinstance(crit, ClassWeightedLoss):
            names = [crit._class_weight_name]
        else:
            names = ["weight", "class_weight"]
        doubled = [n for n in names if getattr(crit, n, None) is not None]
        if doubled:
            raise ValueError(
                f"class_weight is set and the criterion also has "
                f"{doubled[0]}={getattr(crit, doubled[0])!r}: class weights would be "
                f"applied twice. Set only the estimator's class_weight (it is "
                f"applied to the pixels of every loss, including focal and Dice)."
            )
        return self

    # -- prediction -------------------------------------------------------

    def _logits(self, X):
        self.check_is_fitted()
        images = self._validate_X(X, reset=False)
        logits = self._forward_images(images)
        expected = (images.shape[0], len(self.classes_), *images.shape[2:])
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"The module returned output of shape {tuple(logits.shape)}; a "
                f"segmenter needs logits of shape (N, n_classes, H, W) = {expected}."
            )
        return logits

    def predict_proba(self, X):
        """Class probabilities per pixel.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images as in :meth:`fit`, with the same number of channels; any
            height and width.

        Returns
        -------
        proba : ndarray of shape (N, n_classes, H, W)
            Sums to 1 over axis 1; channels follow ``classes_``.
        """
        return torch.softmax(self._logits(X).double(), dim=1).numpy()

    def predict(self, X):
        """Most probable label of each pixel.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images as in :meth:`fit`, with the same number of channels; any
            height and width.

        Returns
        -------
        y : ndarray of shape (N, H, W)
            Label masks with the labels of ``classes_``.
        """
        labels = self._logits(X).argmax(dim=1).numpy()
        # skorch's EpochScoring compares with the internal (encoded) masks.
        return labels if isinstance(X, ArrayDataset) else self.classes_[labels]

    def score(self, X, y, sample_weight=None):
        """Mean foreground Dice of the predicted masks.

        The Dice of each class but the background ``classes_[0]`` is
        computed per image and averaged over images (weighted by a per-image
        ``sample_weight``), then over classes, as
        :func:`skweight.metrics.dice_score` does with
        ``labels=classes_[1:]``. A class absent from both masks of an image
        scores 1 there. Pixels labelled ``ignore_index`` are not scored.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images.
        y : array-like of shape (N, H, W)
            True label masks; labels must be among ``classes_`` (or be
            ``ignore_index``).
        sample_weight : None or array-like of shape (N,) or (N, H, W)
            Weights per image or per pixel.

        Returns
        -------
        score : float
            Greater is better, in [0, 1].
        """
        self.check_is_fitted()
        pred = self.predict(X)
        y = _check_masks(y, pred.shape[0], pred.shape[1:])
        ignore = _check_ignore_index(self.ignore_index)
        kept = y if ignore is None else y[y != ignore]
        encode_labels(kept, self.classes_)  # raises on labels unknown to fit
        return float(dice_score(
            y, pred, labels=self.classes_[1:], ignore_index=ignore,
            sample_weight=sample_weight,
        ))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Neither classifier nor regressor: cross-validation then splits
        # images with KFold, and model selection uses ``score``.
        tags.estimator_type = None
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.input_tags.three_d_array = True
        return tags
