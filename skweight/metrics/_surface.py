"""Boundary metrics: Hausdorff, mean surface distance, normalized surface Dice.

All three compare the boundaries of the two masks of a class through the
same nearest-boundary distances (:func:`_surface_distances`); they differ in
how they reduce them to one number per image and class.
"""

import numbers

import numpy as np
from scipy import ndimage

from .._validation import check_bool, check_real
from ._docs import fill_distance_doc
from ._validation import aggregate, validate_batch

_DISTANCE_AVERAGES = ("macro", None)


def _boundary(mask, structure):
    # border_value=0 makes pixels on the image edge boundary pixels, so that
    # a mask filling the whole image still has a boundary.
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _surface_distances(a, b, structure, sampling):
    """Nearest-boundary distances between two non-empty masks.

    Returns
    -------
    a_to_b, b_to_a : ndarray of float64
        For every boundary pixel of ``a``, the distance to the nearest
        boundary pixel of ``b``; and the other way round.
    """
    # Cropping to the bounding box of both masks changes nothing: any mask
    # pixel on the crop edge is either on the image edge or next to a pixel
    # outside both masks, so boundaries are the same, and all boundary
    # pixels lie inside the crop. Every metric here only uses distances
    # between boundary pixels, which a crop does not change however the axes
    # are scaled (spacing) or the distances thresholded (tolerance). It keeps
    # the distance transforms small for small structures.
    (box,) = ndimage.find_objects((a | b).astype(np.int8))
    a, b = a[box], b[box]
    edge_a, edge_b = _boundary(a, structure), _boundary(b, structure)
    a_to_b = ndimage.distance_transform_edt(~edge_b, sampling=sampling)[edge_a]
    b_to_a = ndimage.distance_transform_edt(~edge_a, sampling=sampling)[edge_b]
    return a_to_b, b_to_a


def _distance_table(batch, pair_value, both_empty, one_empty, sampling):
    """Compute a boundary metric for every image and class, as an ``(N, K)`` array.

    ``pair_value(j, true_to_pred, pred_to_true)`` reduces the directed
    distances of class ``labels[j]`` to one number. ``both_empty`` and
    ``one_empty`` stand in where the class is absent from both masks of an
    image or from exactly one, and no boundary distance exists.
    """
    spatial_ndim = batch.y_true.ndim - 1
    structure = ndimage.generate_binary_structure(spatial_ndim, 1)
    n_images, n_labels = batch.y_true.shape[0], batch.labels.size
    values = np.empty((n_images, n_labels))
    for i in range(n_images):
        valid = True if batch.valid is None else batch.valid[i]
        for j, label in enumerate(batch.labels):
            a = (batch.y_true[i] == label) & valid
            b = (batch.y_pred[i] == label) & valid
            has_a, has_b = a.any(), b.any()
            if not (has_a or has_b):
                values[i, j] = both_empty
            elif has_a != has_b:
                values[i, j] = one_empty
            else:
                values[i, j] = pair_value(j, *_surface_distances(a, b, structure,
                                                                 sampling))
    return values


def _check_percentile(percentile):
    if percentile is None:
        return None
    if (
        isinstance(percentile, (bool, np.bool_))
        or not isinstance(percentile, numbers.Real)
        or not 0 < percentile <= 100
    ):
        raise ValueError(
            f"percentile must be None or a number in (0, 100]; got {percentile!r}."
        )
    return float(percentile)


def _check_spacing(spacing, spatial_shape):
    """Pixel size per spatial axis as a tuple of floats; None stays None."""
    if spacing is None:
        return None
    if isinstance(spacing, np.ndarray):
        spacing = spacing.tolist()
    n_axes = len(spatial_shape)
    if not isinstance(spacing, (list, tuple)):
        return (check_real(spacing, "spacing", low=0, low_open=True),) * n_axes
    if len(spacing) != n_axes:
        raise ValueError(
            f"spacing must be a number or a sequence of {n_axes} numbers, one per "
            f"spatial axis of masks with spatial shape {tuple(spatial_shape)}; got "
            f"{len(spacing)} values: {spacing!r}."
        )
    return tuple(
        check_real(value, f"spacing[{axis}]", low=0, low_open=True)
        for axis, value in enumerate(spacing)
    )


def _check_empty_value(empty_value, spatial_shape, sampling=None):
    if isinstance(empty_value, str):
        if empty_value != "diagonal":
            raise ValueError(
                'empty_value must be a number or "diagonal"; got '
                f"{empty_value!r}."
            )
        # The length of the image diagonal exceeds every distance between
        # two pixels of the image, so a missed or hallucinated structure
        # always scores worse than any detected one.
        extent = np.multiply(spatial_shape, 1.0 if sampling is None else sampling)
        return float(np.sqrt(np.sum(np.square(extent))))
    if isinstance(empty_value, (bool, np.bool_)) or not isinstance(
        empty_value, numbers.Real
    ):
        raise TypeError(
            f'empty_value must be a number or "diagonal"; got {empty_value!r}.'
        )
    return float(empty_value)


def _check_tolerance(tolerance, labels_given, n_labels):
    """One non-negative tolerance per scored class, as a float64 array."""
    if isinstance(tolerance, np.ndarray):
        tolerance = tolerance.tolist()
    if not isinstance(tolerance, (list, tuple)):
        return np.full(n_labels, check_real(tolerance, "tolerance", low=0))
    # The default labels depend on which classes occur in the masks (they
    # change from one cross-validation fold to the next), so a per-class
    # tolerance is only unambiguous next to explicit labels.
    if not labels_given:
        raise ValueError(
            f"tolerance={tolerance!r} gives one value per class, which needs "
            "explicit labels in the same order; got labels=None."
        )
    if len(tolerance) != n_labels:
        raise ValueError(
            f"tolerance must be a number or have one value per label ({n_labels}); "
            f"got {len(tolerance)} values: {tolerance!r}."
        )
    return np.array([
        check_real(value, f"tolerance[{j}]", low=0) for j, value in enumerate(tolerance)
    ])


def _validate_distance_metric(y_true, y_pred, *, labels, average, include_background,
                              background, ignore_index, sample_weight, spacing):
    batch = validate_batch(
        y_true, y_pred, labels=labels, average=average,
        allowed_averages=_DISTANCE_AVERAGES, include_background=include_background,
        background=background, ignore_index=ignore_index,
        sample_weight=sample_weight, allow_pixel_weights=False,
    )
    return batch, _check_spacing(spacing, batch.y_true.shape[1:])


@fill_distance_doc
def hausdorff_distance(y_true, y_pred, *, labels=None, average="macro",
                       include_background=False, background=0, ignore_index=None,
                       percentile=None, sample_weight=None, empty_value=np.nan,
                       spacing=None):
    """Symmetric Hausdorff distance between mask boundaries.

    For one class ``k`` the masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)`` are reduced to their boundaries: the mask pixels
    with at least one face-connected neighbour (4 in 2-D, 6 in 3-D) outside
    the mask, pixels on the image edge included. For each boundary pixel of
    ``A`` the Euclidean distance to the nearest boundary pixel of ``B`` is
    taken, and vice versa. The Hausdorff distance [1]_ is the largest of all
    these distances; with ``percentile=p`` it is instead the ``p``-th
    percentile of both sets of distances together (``p=95`` gives the
    common "HD95", which is robust to a few outlying pixels [2]_).

    Parameters
    ----------
    %(mask_parameters)s

    percentile : float in (0, 100], default=None
        If given, report this percentile of the pooled directed distances
        (linear interpolation, as :func:`numpy.percentile`) instead of their
        maximum. ``percentile=100`` is the same as ``None``.

    sample_weight : array-like of shape (N,), default=None
        Non-negative weight of each image in the mean over images. Per-pixel
        weights have no meaning for a maximum distance and are rejected.

    empty_value : float or "diagonal", default=np.nan
        Value used when a class is present in exactly one of the two masks of
        an image, where the distance is undefined. ``"diagonal"`` uses the
        length of the image diagonal, ``sqrt(sum((n * s) ** 2))`` over the
        spatial axes of size ``n`` and spacing ``s``, which is larger than
        any attainable distance.

    %(spacing)s

    Returns
    -------
    distance : float or ndarray of shape (n_labels,)
        Mean distance over classes, or one value per class if
        ``average=None``, in units of ``spacing`` (pixels by default).
        Lower is better.

    See Also
    --------
    mean_surface_distance : Mean instead of maximum of the same distances.
    normalized_surface_dice : Fraction of the distances within a tolerance.
    dice_score : Overlap-based score with the same conventions.

    Notes
    -----
    %(boundaries)s

    When a class is absent from both masks of an image the distance is 0.0.
    When it is absent from exactly one, ``empty_value`` is used. With the
    default NaN these entries are skipped: the mean over images and the mean
    over classes are NaN-ignoring (weighted) means, and the result is NaN
    only when every value it averages is NaN (e.g. the class is missed in
    every image). NaN breaks model selection, which is why
    :data:`neg_hausdorff_distance_scorer` uses ``empty_value="diagonal"``.

    With ``percentile=None`` the per-image, per-class values equal those of
    MONAI's ``compute_hausdorff_distance`` (same boundaries, same distances).
    With a percentile MONAI takes the percentile of each direction separately
    and reports the larger of the two, whereas here the distances of both
    directions are pooled first [2]_; the two can differ.

    %(distance_aggregation)s

    References
    ----------
    .. [1] D. P. Huttenlocher, G. A. Klanderman and W. J. Rucklidge,
       "Comparing images using the Hausdorff distance", IEEE Transactions on
       Pattern Analysis and Machine Intelligence 15(9), pp. 850-863, 1993.
    .. [2] A. A. Taha and A. Hanbury, "Metrics for evaluating 3D medical image
       segmentation: analysis, selection, and tool", BMC Medical Imaging 15,
       29, 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.metrics import hausdorff_distance
    >>> y_true = np.zeros((8, 8), dtype=int)
    >>> y_pred = np.zeros((8, 8), dtype=int)
    >>> y_true[0, 0] = 1
    >>> y_pred[3, 4] = 1
    >>> hausdorff_distance(y_true, y_pred)
    5.0
    >>> hausdorff_distance(y_true, y_pred, spacing=(2.0, 1.0))  # 2 mm rows
    7.211102550927978
    >>> hausdorff_distance(y_true, np.zeros_like(y_true))  # missed: undefined
    nan
    """
    percentile = _check_percentile(percentile)
    batch, sampling = _validate_distance_metric(
        y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight, spacing=spacing,
    )
    empty_value = _check_empty_value(empty_value, batch.y_true.shape[1:], sampling)

    def pair_value(j, true_to_pred, pred_to_true):
        if percentile is None:
            return max(true_to_pred.max(), pred_to_true.max())
        return np.percentile(np.concatenate([true_to_pred, pred_to_true]), percentile)

    distances = _distance_table(batch, pair_value, 0.0, empty_value, sampling)
    return aggregate(distances, batch.image_weights, average, 0.0)


@fill_distance_doc
def mean_surface_distance(y_true, y_pred, *, labels=None, average="macro",
                          include_background=False, background=0, ignore_index=None,
                          sample_weight=None, empty_value=np.nan, spacing=None,
                          symmetric=True):
    """Average symmetric surface distance between mask boundaries.

    For one class ``k`` the masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)`` are reduced to their boundaries ``S_A`` and
    ``S_B`` (see Notes). Every boundary pixel of either mask is matched with
    the nearest boundary pixel of the other mask, and the distances of both
    directions are averaged together [1]_::

        MSD = (sum(d(a, S_B) for a in S_A) + sum(d(b, S_A) for b in S_B))
              / (|S_A| + |S_B|)

    This is the "average symmetric surface distance" (ASSD). Where the
    Hausdorff distance reports the worst boundary error, this reports the
    typical one; see [2]_ on choosing between boundary metrics.

    Parameters
    ----------
    %(mask_parameters)s

    sample_weight : array-like of shape (N,), default=None
        Non-negative weight of each image in the mean over images. Per-pixel
        weights are rejected.

    empty_value : float or "diagonal", default=np.nan
        Value used when a class is present in exactly one of the two masks of
        an image, where the distance is undefined. ``"diagonal"`` uses the
        length of the image diagonal, ``sqrt(sum((n * s) ** 2))`` over the
        spatial axes of size ``n`` and spacing ``s``, which is larger than
        any attainable distance.

    %(spacing)s

    symmetric : bool, default=True
        If False, only the distances from the boundary of ``y_pred`` to the
        boundary of ``y_true`` are averaged (the directed distance that
        MONAI's ``compute_average_surface_distance`` reports with its default
        ``symmetric=False``).

    Returns
    -------
    distance : float or ndarray of shape (n_labels,)
        Mean distance over classes, or one value per class if
        ``average=None``, in units of ``spacing`` (pixels by default).
        Lower is better.

    See Also
    --------
    hausdorff_distance : Largest instead of mean boundary distance.
    normalized_surface_dice : Fraction of the boundary within a tolerance.

    Notes
    -----
    **Pooled mean.** With ``symmetric=True`` the directed distances of both
    boundaries are pooled before averaging, so the longer boundary weighs
    more. This is the definition of Heimann et al. [1]_ and of MONAI's
    ``compute_average_surface_distance(symmetric=True)``. Some tools report
    the two directed means separately (e.g. DeepMind's surface-distance
    package, which also weights boundary elements by their area), and their
    average ``(mean(d(a, S_B)) + mean(d(b, S_A))) / 2`` is sometimes quoted
    instead; it agrees with the pooled mean when both boundaries have the
    same number of pixels and differs otherwise.

    %(boundaries)s

    When a class is absent from both masks of an image the distance is 0.0;
    when it is absent from exactly one, ``empty_value`` is used. With the
    default NaN such entries are skipped by the (weighted) means, and the
    result is NaN only when every value it averages is NaN. NaN breaks model
    selection, which is why :data:`neg_mean_surface_distance_scorer` uses
    ``empty_value="diagonal"``.

    **Comparison with MONAI.** For two non-empty masks, the values per image
    and class equal those of MONAI's
    ``compute_average_surface_distance(..., symmetric=True)``, with the same
    ``spacing``: its boundaries are also ``mask XOR erosion(mask)`` with the
    face-connected structuring element and a zero border, and its distances
    also run from boundary pixel to nearest boundary pixel. The differences
    are conventions: MONAI takes one-hot masks and drops the first channel
    instead of a ``background`` label; it returns NaN for a class absent
    from both masks (here 0.0) and infinity for a class absent from one
    (here ``empty_value``); its ``ignore_index`` only silences warnings,
    whereas here ignored pixels are removed from both masks; and it computes
    in float32 (here float64).

    %(distance_aggregation)s

    References
    ----------
    .. [1] T. Heimann et al., "Comparison and evaluation of methods for liver
       segmentation from CT datasets", IEEE Transactions on Medical Imaging
       28(8), pp. 1251-1265, 2009.
    .. [2] L. Maier-Hein et al., "Metrics reloaded: recommendations for image
       analysis validation", Nature Methods 21, pp. 195-212, 2024.

    Examples
    --------
    A 7 x 7 square predicted 3 pixels too far to the right: the worst
    boundary error is 3 pixels, the average one 1.5 pixels.

    >>> import numpy as np
    >>> from skweight.metrics import hausdorff_distance, mean_surface_distance
    >>> y_true = np.zeros((16, 20), dtype=int)
    >>> y_true[5:12, 5:12] = 1
    >>> y_pred = np.roll(y_true, 3, axis=1)
    >>> hausdorff_distance(y_true, y_pred)
    3.0
    >>> mean_surface_distance(y_true, y_pred)
    1.5
    >>> mean_surface_distance(y_true, y_pred, spacing=(2.0, 0.5))
    0.875
    """
    symmetric = check_bool(symmetric, "symmetric")
    batch, sampling = _validate_distance_metric(
        y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight, spacing=spacing,
    )
    empty_value = _check_empty_value(empty_value, batch.y_true.shape[1:], sampling)

    def pair_value(j, true_to_pred, pred_to_true):
        if not symmetric:
            return pred_to_true.mean()
        total = true_to_pred.sum() + pred_to_true.sum()
        return total / (true_to_pred.size + pred_to_true.size)

    distances = _distance_table(batch, pair_value, 0.0, empty_value, sampling)
    return aggregate(distances, batch.image_weights, average, 0.0)


@fill_distance_doc
def normalized_surface_dice(y_true, y_pred, *, labels=None, average="macro",
                            include_background=False, background=0,
                            ignore_index=None, sample_weight=None, tolerance=1.0,
                            spacing=None):
    """Compute the normalized surface Dice: the boundaries' share within a tolerance.

    For one class ``k`` the masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)`` are reduced to their boundaries ``S_A`` and
    ``S_B`` (see Notes). A boundary pixel counts as correct when the nearest
    boundary pixel of the other mask is at most ``tolerance`` away [1]_::

        NSD = (|{a in S_A : d(a, S_B) <= tol}| + |{b in S_B : d(b, S_A) <= tol}|)
              / (|S_A| + |S_B|)

    It lies in [0, 1], greater is better, and unlike the Dice score it does
    not reward the interior of large structures: only their outline counts.
    The tolerance is the boundary error that is acceptable for the task
    (e.g. the inter-rater variation). NSD is one of the two metrics of the
    Medical Segmentation Decathlon [2]_ and recommended for boundary quality
    by Metrics Reloaded [3]_.

    Parameters
    ----------
    %(mask_parameters)s

    sample_weight : array-like of shape (N,), default=None
        Non-negative weight of each image in the mean over images. Per-pixel
        weights are rejected.

    tolerance : float or array-like of float, default=1.0
        Largest boundary distance still counted as correct, in units of
        ``spacing`` (pixels by default); inclusive. A sequence gives one
        tolerance per class, in the order of ``labels``, which must then be
        given.

    %(spacing)s

    Returns
    -------
    score : float or ndarray of shape (n_labels,)
        Mean NSD over classes, or one value per class if ``average=None``.

    See Also
    --------
    mean_surface_distance : Mean boundary distance.
    hausdorff_distance : Largest boundary distance.
    dice_score : Overlap of the masks rather than of their boundaries.

    Notes
    -----
    %(boundaries)s

    When a class is absent from both masks of an image its NSD is 1.0
    (nothing to find, nothing found); when it is absent from exactly one it
    is 0.0, since none of the existing boundary has a counterpart. NSD is
    therefore never NaN.

    **Boundary elements.** Nikolov et al. [1]_ count boundary elements by
    their area: their implementation places surface elements between pixel
    centres and weights each by its length (2-D) or area (3-D). Here, as in
    MONAI's ``compute_surface_dice`` with its default
    ``use_subvoxels=False``, every boundary pixel counts once. The two
    agree closely for smooth boundaries much longer than a pixel and can
    differ for small or jagged structures.

    **Comparison with MONAI.** For two non-empty masks, or a class absent
    from one mask, the values per image and class equal those of MONAI's
    ``compute_surface_dice(..., class_thresholds=[tolerance, ...])`` with
    the same ``spacing`` and ``use_subvoxels=False``: same boundaries
    (``mask XOR erosion(mask)``, face-connected, zero border), same
    boundary-to-boundary distances, same inclusive comparison. MONAI returns
    NaN for a class absent from both masks (here 1.0) and takes one-hot
    masks, dropping the first channel instead of a ``background`` label.
    Its ``ignore_index`` removes the ignored pixels from both masks, as
    here.

    **Ties.** A distance equal to the tolerance counts as within it, but
    with a non-integer ``spacing`` such ties are at the mercy of rounding:
    ``7 * 0.6 - 5 * 0.6`` is ``1.2000000000000002``, not ``1.2``, and MONAI
    compares in float32. Where it matters, choose a tolerance that is not
    an attainable distance on the grid (e.g. 1.3 rather than 1.2 for a
    spacing of 0.6).

    %(distance_aggregation)s

    References
    ----------
    .. [1] S. Nikolov et al., "Clinically applicable segmentation of head and
       neck anatomy for radiotherapy: deep learning algorithm development
       and validation study", Journal of Medical Internet Research 23(7),
       e26151, 2021.
    .. [2] M. Antonelli et al., "The Medical Segmentation Decathlon", Nature
       Communications 13, 4128, 2022.
    .. [3] L. Maier-Hein et al., "Metrics reloaded: recommendations for image
       analysis validation", Nature Methods 21, pp. 195-212, 2024.

    Examples
    --------
    The square of :func:`mean_surface_distance`'s example, 3 pixels off:
    half of each outline is within 1 pixel of the other, all of it within 3.

    >>> import numpy as np
    >>> from skweight.metrics import normalized_surface_dice
    >>> y_true = np.zeros((16, 20), dtype=int)
    >>> y_true[5:12, 5:12] = 1
    >>> y_pred = np.roll(y_true, 3, axis=1)
    >>> normalized_surface_dice(y_true, y_pred)
    0.5
    >>> normalized_surface_dice(y_true, y_pred, tolerance=3)
    1.0
    """
    batch, sampling = _validate_distance_metric(
        y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight, spacing=spacing,
    )
    tolerance = _check_tolerance(tolerance, labels is not None, batch.labels.size)

    def pair_value(j, true_to_pred, pred_to_true):
        within = np.count_nonzero(true_to_pred <= tolerance[j])
        within += np.count_nonzero(pred_to_true <= tolerance[j])
        return within / (true_to_pred.size + pred_to_true.size)

    scores = _distance_table(batch, pair_value, 1.0, 0.0, sampling)
    return aggregate(scores, batch.image_weights, average, 1.0)
