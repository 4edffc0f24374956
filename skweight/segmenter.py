"""CNNSegmenter: semantic segmentation with class, image and pixel weights."""

import inspect

import numpy as np
import torch

from ._docstrings import fill_doc
from ._fit.base import BaseCNN, shared_parameters
from ._fit.labels import LabelTargets, MultiLabelTargets
from ._fit.targets import FittedAttribute, check_class_prior, check_prior_tau_setting
from ._fit.threads import worker_threads
from ._fit.tiling import (
    check_tile_blend,
    check_tile_multiple,
    check_tile_overlap,
    check_tile_shape,
    fits_one_tile,
    predict_tiled,
)
from ._validation import check_ignore_index, check_int, encode_labels, is_zero_one
from .losses import (
    BinaryCrossEntropyLoss,
    BinaryLogitAdjustedLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
    TverskyLoss,
)
from .metrics import dice_score
from .nets import UNet

__all__ = ["CNNSegmenter"]

# The default U-Net's widths, whose number sets the multiple tiles must be of.
_UNET_CHANNELS = inspect.signature(UNet).parameters["channels"].default


def _check_masks(y, n_samples, spatial_shape, name="y"):
    """Return label masks ``(N, *spatial)``, or 0/1 masks ``(N, C, *spatial)``.

    Integer label masks are returned as they are (no copy: a stack of masks
    can be as large as the images), boolean ones as uint8 0/1, whole-number
    floats as int64. Masks with a channel axis of at least two channels,
    matching the images, are overlapping structures (multi-label), returned
    as int8.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if hasattr(y, "tocsr"):
        raise TypeError(f"{name} must be dense label masks, got a sparse matrix.")
    y = np.asarray(y)
    expected = (n_samples, *spatial_shape)
    if (y.ndim == len(expected) + 1 and y.shape[0] == n_samples and y.shape[1] >= 2
            and tuple(y.shape[2:]) == tuple(spatial_shape)):
        if y.dtype.kind not in "biuf" or not is_zero_one(y):
            raise ValueError(
                f"{name} of shape {y.shape} holds one mask per channel (overlapping "
                f"structures): its values must be 0 or 1. For label masks, pass "
                f"{layout_of(spatial_shape)} = {expected}."
            )
        return y.astype(np.int8, copy=False)
    if y.shape != expected:
        hint = ""
        if y.ndim == len(expected) + 1 and y.shape[1] == 1:
            hint = " Drop the channel axis, e.g. y[:, 0]."
        elif y.ndim == 1:
            hint = (" A segmenter needs one label per pixel; for one label per image "
                    "use CNNClassifier.")
        raise ValueError(
            f"{name} must hold label masks of shape {layout_of(spatial_shape)} = "
            f"{expected}, matching the images X (or overlapping 0/1 masks (N, C, "
            f"...) of two channels or more), got shape {y.shape}.{hint}"
        )
    if y.dtype.kind == "b":
        return y.view(np.uint8)
    if y.dtype.kind in "iu":
        return y
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


def layout_of(spatial_shape):
    """Name the mask layout of images or volumes, for messages."""
    return "(N, H, W)" if len(spatial_shape) == 2 else "(N, D, H, W)"


@fill_doc(lr="3e-3", max_epochs="15", batch_size="16", samples="images",
          stratified="")
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
    weights enter inside the sums (and, with ``criterion__per_image=True``,
    each image's term is weighted by its mean pixel weight, so that an
    integer image weight k still counts the image k times). Pixels labelled
    ``ignore_index`` get weight 0: they neither teach nor count.

    Overlapping structures (nested regions, objects and their borders) come
    as 0/1 masks ``(N, n_structures, H, W)`` (two channels or more): the
    network then has one sigmoid channel per structure, every loss is its
    sigmoid form (``"dice"``, ``"dice_ce"`` with binary cross-entropy,
    ``"tversky"``, ``"focal"``, ``"cross_entropy"``/``"bce"``,
    ``"logit_adjusted"``), ``class_weight`` weighs each channel's positives
    and negatives (as :class:`CNNClassifier` does for multi-label ``y``),
    per-pixel weights apply to every channel, and ``predict`` returns the
    masks thresholded at 0.5. When 4-D images and the masks have the same
    shape, ``X`` is read as one-channel volumes unless
    ``input_shape=(C, H, W)`` says they are images.

    Parameters
    ----------
    module : None, nn.Module class or instance, default=None
        The network; it returns logits of shape ``(N, n_classes, H, W)``.
        ``None`` builds :class:`skweight.nets.UNet` from the data at ``fit``;
        set its width and depth with ``module__channels`` (default
        ``(12, 24, 48)``: three stages, two poolings) and its normalisation
        with ``module__norm``. It accepts any ``H x W`` at predict time.
    criterion : {"dice_ce", "dice", "cross_entropy", "focal", "logit_adjusted", \
            "tversky"}, loss class or instance, default="dice_ce"
        The loss, from :mod:`skweight.losses`: ``"dice_ce"`` is Dice plus
        cross-entropy (:class:`~skweight.losses.DiceCELoss`), ``"tversky"``
        takes ``criterion__alpha`` and ``criterion__beta``, ``"focal"``
        ``criterion__gamma``; ``"logit_adjusted"`` is per-pixel logit
        adjustment with the pixel class prior the loss sees (see
        :class:`skweight.CNNClassifier`). Class weights are applied by the
        estimator as pixel weights; do not also give the loss its own class
        weights.
    class_weight : None, "balanced" or dict, default=None
        Per-class pixel weights. ``"balanced"`` weighs class ``k`` by
        ``sum(w) / (n_classes * sum(w[y == k]))`` over the training pixels
        (with their sample weights; ignored pixels excluded). A dict maps
        labels to weights (others get 1). ``fit(class_weight=...)``
        overrides it for that call.
    ignore_index : None or int, default=None
        Label of pixels that are left out of training, of ``classes_`` and
        of :meth:`score` (e.g. 255 for unannotated borders).
    %(input_shape)s
    %(input_scale)s
    %(network_parameters)s
    %(class_prior)s
    %(prior_tau)s
    %(reweight_from_epoch)s
    tile_shape : None, int or tuple of int, default=None
        Predict images tile by tile (a sliding window) instead of whole, so
        that memory holds the activations of ``batch_size`` tiles rather
        than of a whole image: ``(H, W)`` or, for volumes, ``(D, H, W)``;
        an int is used on every axis. ``None`` predicts each image whole.
        Training is unchanged: train on tiles or crops of about this size
        (e.g. :func:`skweight.datasets.load_nuclei_tiles`) and predict
        large images with it. Tiles are placed as nnU-Net places them:
        ``n = ceil((I - T) / (T (1 - tile_overlap))) + 1`` tiles per axis,
        evenly spread from 0 to ``I - T``, so that they cover the image
        exactly. An axis shorter than the tile is padded to it by
        reflection and the padding is cropped off; an image no larger than
        one tile in every axis is predicted whole, as with ``None``. With
        the default U-Net every size must be a multiple of ``2 ** depth``
        (4 for the default ``module__channels``), or a ValueError is
        raised; a network of your own must take tiles of this shape (not
        checked). Tiles go through the network ``batch_size`` at a time
        (``iterator_valid__batch_size`` if set; -1: one image's tiles), and
        the blended sums are kept in a band one tile thick, so that the
        memory is the output plus a bounded amount. :meth:`predict`,
        :meth:`predict_proba`, :meth:`predict_log_proba` and :meth:`score`
        all use it; it may be set after ``fit`` with ``set_params``.
    tile_overlap : float, default=0.5
        Fraction of a tile that its neighbours share along each axis, in
        [0, 1): the target step between tiles is ``T * (1 - tile_overlap)``
        (nnU-Net: 0.5, MONAI's default: 0.25). More overlap costs more
        tiles (about ``(1 - tile_overlap) ** -ndim`` times the image) and
        smooths the seams.
    tile_blend : {"gaussian", "constant"}, default="gaussian"
        How overlapping tiles are averaged. Each tile's probabilities
        (softmax of its logits) are weighted by a map and divided by the
        summed map of the tiles covering each pixel: ``"constant"`` weighs
        every pixel of a tile alike, ``"gaussian"`` by ``exp(-d^2 / (2
        sigma^2))`` per axis, ``d`` the distance to the tile's centre and
        ``sigma = 0.125 T``, so that pixels near a tile's border, which saw
        little context, count little (clamped away from 0, so they still
        count). ``class_prior`` is applied to the blended probabilities.
    %(training_parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels found in the training masks (``ignore_index`` excluded),
        sorted. ``classes_[0]`` is treated as the background by
        :meth:`score`.
    class_weight_ : None or ndarray of shape (n_classes,)
        The class weights used in the last ``fit``, aligned with ``classes_``.
    %(prior_attributes)s
    %(fitted_attributes)s

    See Also
    --------
    skweight.metrics.dice_score : Dice coefficient of the predicted masks.
    skweight.metrics.iou_score : Intersection over union of the predicted masks.
    skweight.metrics.hausdorff_distance : Hausdorff distance of their boundaries.

    Notes
    -----
    The defaults (U-Net widths ``(12, 24, 48)``, ``lr=3e-3``,
    ``batch_size=16``, ``max_epochs=15``) are tuned on 600 noisy 32x32
    scenes of :func:`skweight.datasets.make_disk_scenes` and on tiles of the
    real nuclei image (:func:`skweight.datasets.load_nuclei_tiles`): they
    segment disks of radius 2 (Dice about 0.85), squares (about 0.97) and
    nuclei (foreground Dice about 0.92 with cross-entropy and 10 epochs on
    half-overlapping 64x64 tiles). Widths ``(16, 32, 64)`` cost 1.4 times
    as much for the same Dice; ``(8, 16, 32)`` sometimes got stuck
    predicting background on the nuclei. Small batches give many optimiser
    steps per epoch, which small data sets need. On the CPU the default
    network runs in the channels-last memory format, which oneDNN's
    convolutions prefer (about 10 %% faster).

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
        "logit_adjusted": LogitAdjustedLoss,
        "tversky": TverskyLoss,
        "bce": BinaryCrossEntropyLoss,
    }
    #: The losses of overlapping 0/1 masks, one sigmoid channel per structure.
    _multilabel_criteria = {
        "cross_entropy": BinaryCrossEntropyLoss, "bce": BinaryCrossEntropyLoss,
        "focal": SigmoidFocalLoss, "logit_adjusted": BinaryLogitAdjustedLoss,
    }
    _match_spatial = False
    _spatial_ndims = (2, 3)
    _pixel_weights = True
    _sample_unit = "image"
    # The default U-Net's convolutions dominate its cost, and oneDNN runs
    # them faster channels-last (a training step of 16 32x32 images with
    # Dice + CE: 32.5 -> 28.6 ms on 2 cores). The results agree to float32
    # round-off; only the memory layout differs.
    _default_channels_last_on_cpu = True

    classes_ = FittedAttribute("classes")
    class_weight_ = FittedAttribute("class_weight")
    train_prior_ = FittedAttribute("train_prior")
    effective_prior_ = FittedAttribute("effective_prior")

    def __init__(self, module=None, *, criterion="dice_ce", class_weight=None,
                 ignore_index=None, input_shape=None, input_scale="auto", input_mean=None,
                 input_std=None, head="auto", freeze=None, unfreeze_from_epoch=None,
                 backbone_lr=None, class_prior=None, prior_tau=1.0,
                 reweight_from_epoch=None, tile_shape=None, tile_overlap=0.5,
                 tile_blend="gaussian", random_state=None, device="auto", precision="32",
                 channels_last=False, data_device_fraction=0.5,
                 optimizer=torch.optim.AdamW, lr=3e-3, weight_decay=0.0, max_epochs=15,
                 batch_size=16, train_split=None, callbacks=None, verbose=0,
                 warm_start=False, compile=False, augment=None, distributed="auto",
                 **kwargs):
        # The parameters every estimator has are the base's to store.
        super().__init__(**shared_parameters(locals()))
        self.class_weight = class_weight
        self.ignore_index = ignore_index
        self.class_prior = class_prior
        self.prior_tau = prior_tau
        self.reweight_from_epoch = reweight_from_epoch
        self.tile_shape = tile_shape
        self.tile_overlap = tile_overlap
        self.tile_blend = tile_blend

    @fill_doc()
    def fit(self, X, y, sample_weight=None, class_weight=None, **fit_params):
        """Train the network from scratch (or further, with ``warm_start``).

        Parameters
        ----------
        %(X)s
        y : array-like of shape (N, H, W) or (N, n_structures, H, W)
            Integer label masks (any integer labels; ``ignore_index`` marks
            pixels to leave out), or overlapping 0/1 masks, one channel per
            structure (see the class description).
        sample_weight : None or array-like of shape (N,) or (N, H, W)
            Non-negative weights per image or per pixel, of any magnitude.
            Weight 0 leaves an image (or a pixel) out; integer weight k
            counts it k times.
        class_weight : None, "balanced" or dict
            Overrides the constructor's ``class_weight`` for this call.
        %(fit_params)s

        Returns
        -------
        self : CNNSegmenter
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, class_weight=class_weight,
                         fit_params=fit_params)

    def partial_fit(self, X, y, classes=None, sample_weight=None, class_weight=None,
                    **fit_params):
        """Continue training (or start, on the first call) for ``max_epochs``.

        Later calls may use other image sizes.

        Parameters
        ----------
        X : array-like, torch.Tensor or torch Dataset
            Images, as in :meth:`fit`.
        y : array-like of shape (N, H, W)
            Integer label masks, as in :meth:`fit`.
        classes : None or array-like
            All labels; needed on the first call if ``y`` lacks some of them.
        sample_weight : None or array-like of shape (N,) or (N, H, W)
            Non-negative weights per image or per pixel, as in :meth:`fit`.
        class_weight : None, "balanced" or dict
            Overrides the constructor's ``class_weight`` for this call.
        **fit_params
            Passed to the module's ``forward``, as in skorch.

        Returns
        -------
        self : CNNSegmenter
            The estimator, trained further.
        """
        return self._fit(X, y, sample_weight, class_weight=class_weight,
                         classes=classes, partial=True, fit_params=fit_params)

    def _check_params(self):
        super()._check_params()
        check_ignore_index(self.ignore_index)
        check_int(self.reweight_from_epoch, "reweight_from_epoch", low=1, allow_none=True)
        check_class_prior(self.class_prior)
        check_prior_tau_setting(self.prior_tau, self.class_prior)
        self._check_tiling()

    # -- the hooks of the fit template ----------------------------------------

    def _check_targets(self, y, n_samples, spatial):
        # The masks must match these images' H and W, which may differ from
        # fit's at partial_fit.
        return _check_masks(y, n_samples, spatial)

    def _learn_targets(self, y, sample_weight, classes):
        ignore = check_ignore_index(self.ignore_index)
        if y.dtype == np.int8 and y.ndim == len(self.input_shape_) + 1:
            if ignore is not None:
                raise ValueError(
                    f"ignore_index={ignore} marks pixels of label masks; overlapping "
                    f"0/1 masks leave pixels out with sample_weight 0 instead."
                )
            return MultiLabelTargets(y.shape[1], per_pixel=True)
        labels = y if ignore is None else y[y != ignore]
        if labels.size == 0:
            raise ValueError(
                f"Every pixel of y has the label ignore_index={ignore}; there is "
                f"nothing to learn from."
            )
        return LabelTargets.learn(labels, classes=classes, per_pixel=True,
                                  ignore_index=ignore)

    def _default_module(self, **kwargs):
        # A 3-D U-Net for volumes (C, D, H, W), a 2-D one for images.
        kwargs.setdefault("ndim", len(self.input_shape_) - 1)
        return UNet(in_channels=self.input_shape_[0], n_classes=len(self.classes_),
                    **kwargs)

    def _criterion_for(self, name):
        if isinstance(self.__dict__.get("targets_"), MultiLabelTargets):
            # Overlapping masks: every loss in its sigmoid form (the Dice
            # family gets sigmoid=True from the target object).
            return self._multilabel_criteria.get(name, self._named_criteria[name])
        if name == "bce":
            raise ValueError(
                f"criterion='bce' is for overlapping 0/1 masks (N, C, H, W); for label "
                f"masks use one of {sorted(set(self._named_criteria) - {'bce'})}."
            )
        return self._named_criteria[name]

    def _prepare_X(self, X, y):
        """Read 4-D ``X`` as one-channel volumes ``(N, D, H, W)`` when it holds them.

        It does with masks of its very shape (and ``D > 1``) in ``fit``, or for
        a model fitted on one-channel volumes at prediction. Otherwise 4-D
        ``X`` is ``(N, C, H, W)``.
        """
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 4 or isinstance(X, torch.utils.data.Dataset):
            return X
        if self.input_shape is not None and len(self.input_shape) == 3:
            return X  # (C, H, W) given: 4-D X is images, not volumes
        if y is None and len(getattr(self, "input_shape_", ())) != 4:
            return X
        if y is not None and shape[1] == 1:
            # (N, 1, H, W) with masks (N, 1, H, W): images whose masks kept
            # a channel axis, which the mask check reports.
            return X
        if y is not None:
            if tuple(np.shape(y)) != tuple(shape):
                return X
        elif tuple(self.input_shape_[:1]) != (1,):
            return X
        if hasattr(X, "to_numpy"):
            X = X.to_numpy()
        return X[:, None]

    # -- tiled prediction -----------------------------------------------------

    def _check_tiling(self, ndim=None):
        """Validate ``tile_shape``, ``tile_overlap`` and ``tile_blend``.

        Parameters
        ----------
        ndim : None or int, default=None
            The fitted images' number of spatial axes, at prediction: the
            tile is then checked against the fitted network. None (at
            ``fit``): against the U-Net the parameters will build.

        Returns
        -------
        tile, overlap, blend : tuple of int or None, float, str
            The checked values.
        """
        tile = check_tile_shape(self.tile_shape, ndim)
        overlap = check_tile_overlap(self.tile_overlap)
        blend = check_tile_blend(self.tile_blend)
        multiple = self._unet_multiple(fitted=ndim is not None)
        if tile is not None and multiple is not None:
            check_tile_multiple(tile, multiple)
        return tile, overlap, blend

    def _unet_multiple(self, fitted):
        """Return ``2 ** depth`` of the U-Net that predicts, or None for another network."""
        if fitted:
            module = self.module_
            module = getattr(module, "_orig_mod", module)  # under torch.compile
            return module.multiple if isinstance(module, UNet) else None
        if isinstance(self.module, UNet):
            return self.module.multiple
        if self.module is not None and self.module is not UNet:
            return None
        channels = self.get_params_for("module").get("channels", _UNET_CHANNELS)
        try:
            return 2 ** (len(channels) - 1)
        except TypeError:  # refused with a clear message when the U-Net is built
            return None

    def _outputs(self, X, transform=None):
        # The one path of predict, predict_proba, predict_log_proba and
        # score: with tile_shape the network sees tiles, whose blended
        # probabilities reach ``transform`` as the logits log(p), so that
        # class_prior (and argmax) apply after blending.
        if self.tile_shape is None:
            return super()._outputs(X, transform)
        self.check_is_fitted()
        tile, overlap, blend = self._check_tiling(ndim=len(self.input_shape_) - 1)
        images = self._validate_X(self._prepare_X(X, None), reset=False)
        if fits_one_tile(images.shape[2:], tile):
            # One tile covers the image: padding it would only add work.
            return super()._outputs(images, transform)
        targets = self.targets_

        def forward(batch):
            out = self.evaluation_step(batch, training=False)
            return targets.check_output(out, len(batch), tile)

        batch_size = self.get_params_for("iterator_valid").get("batch_size",
                                                               self.batch_size)
        with worker_threads():
            return predict_tiled(images, forward, transform, tile, overlap=overlap,
                                 blend=blend, batch_size=batch_size,
                                 sigmoid=isinstance(targets, MultiLabelTargets))

    # -- scoring ----------------------------------------------------------

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
        X : array-like, torch.Tensor or torch Dataset
            Images.
        y : array-like of shape (N, H, W) or (N, n_structures, H, W)
            True label masks; labels must be among ``classes_`` (or be
            ``ignore_index``). For overlapping masks, the mean Dice of the
            channels (:func:`skweight.metrics.dice_score` with
            ``multilabel=True``).
        sample_weight : None or array-like of shape (N,) or (N, H, W)
            Weights per image or per pixel.

        Returns
        -------
        score : float
            Greater is better, in [0, 1].
        """
        self.check_is_fitted()
        pred = self.predict(X)
        if isinstance(self.targets_, MultiLabelTargets):
            y = _check_masks(y, pred.shape[0], pred.shape[2:])
            if y.shape != pred.shape:
                raise ValueError(
                    f"y has shape {y.shape}, but the segmenter predicts overlapping "
                    f"masks of shape {pred.shape}."
                )
            return float(dice_score(y, pred, multilabel=True,
                                    sample_weight=sample_weight))
        y = _check_masks(y, pred.shape[0], pred.shape[1:])
        ignore = check_ignore_index(self.ignore_index)
        encode_labels(y, self.classes_, ignore=ignore)  # raises on labels unknown to fit
        return float(dice_score(
            y, pred, labels=self.classes_[1:], ignore_index=ignore,
            sample_weight=sample_weight,
        ))

    def __sklearn_tags__(self):
        """Return scikit-learn's tags: mask targets, neither classifier nor regressor."""
        tags = super().__sklearn_tags__()
        # Neither classifier nor regressor: cross-validation then splits
        # images with KFold, and model selection uses ``score``.
        tags.estimator_type = None
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.input_tags.three_d_array = True
        return tags
