"""Documentation shared by the metrics, written once.

Most parameters and notes are common to several metrics; writing them once
keeps the docstrings from drifting apart. A docstring names an entry as
``%(name)s`` on a line of its own, and one of the decorators below puts the
entry in its place, indented like the placeholder (see
:func:`skweight._docstrings.fill_doc`).
"""

from .._docstrings import fill_doc

_ENTRIES = {
    "mask_parameters": """\
    y_true : array-like of int of shape (N, \\*spatial) or (H, W)
        Ground-truth label masks: a batch of ``N`` masks with one to three
        spatial dimensions, or a single 2-D mask (a 1-D array is a single 1-D
        profile). A single 3-D volume must be given as ``(1, D, H, W)``.
        Floating point arrays are accepted if they hold whole numbers.

    y_pred : array-like of int of the same shape as y_true
        Predicted label masks, e.g. the output of a segmenter's ``predict``.

    labels : array-like of int, default=None
        Classes to score, in the order used for ``average=None``. By default,
        all labels that occur in ``y_true`` or ``y_pred`` on scored pixels
        (not ignored, non-zero weight), sorted, except ``background`` (unless
        ``include_background=True``) and ``ignore_index``. When given,
        ``include_background`` has no effect.

    average : %(average_options)s, default="macro"
        How per-image, per-class values are reduced; see Notes.

    include_background : bool, default=False
        Whether the default ``labels`` include ``background``.

    background : int, default=0
        Label of the background class.

    ignore_index : int, default=None
        Pixels where ``y_true == ignore_index`` (e.g. unlabelled or "void"
        regions) are excluded from both masks and from every class.""",
    "overlap_weights": """\
    sample_weight : array-like of shape (N,) or of y_true's shape, default=None
        Non-negative weights, either one per image (weighted mean over
        images) or one per pixel (weighted sums inside each image).

    zero_division : float or np.nan, default=1.0
        Score of a class that is absent from both masks of an image.""",
    "multilabel": """\
    multilabel : bool, default=False
        Whether the masks are overlapping 0/1 channels ``(N, C, *spatial)``
        (one per structure, as a multi-label segmenter predicts) rather than
        label masks. Each channel is then scored as a binary mask; ``labels``
        selects channels (default: all), ``average`` runs over them, and
        ``sample_weight`` may also be given per channel, with the masks'
        shape. ``include_background``, ``background`` and ``ignore_index``
        do not apply.""",
    "spacing": """\
    spacing : float or sequence of float, default=None
        Pixel (voxel) size along each spatial axis, in the order of the array
        axes, e.g. ``(3.0, 0.8, 0.8)`` for ``(N, D, H, W)`` volumes of 3 mm
        slices with 0.8 mm pixels; a single number applies to every axis.
        Distances are measured in these units, exactly, however anisotropic
        the grid. ``None`` means 1 along every axis (pixel units).""",
    "overlap_aggregation": """\
    **Aggregation.** Scores are computed for every image and every class
    separately. With ``average="macro"`` (default) or ``average=None`` the
    per-image values of each class are then averaged over the images, as a
    weighted mean when ``sample_weight`` has shape ``(N,)``; ``average=None``
    returns these per-class means in the order of ``labels`` and ``"macro"``
    their unweighted mean over classes, so that every class counts the same
    however large it is. Averaging per image is the convention of medical
    image segmentation challenges [3]_: every case counts once, so a small
    structure in one image is not swamped by a large one in another, and the
    result does not depend on how images are grouped into batches.

    ``average="micro"`` instead pools the (weighted) intersection and mask
    sizes of each class over all images of the batch and forms one ratio per
    class from the pooled sums, then averages those over classes. Unlike
    ``average="micro"`` in :func:`sklearn.metrics.f1_score`, classes are not
    pooled, so each class still counts equally; but within a class, large
    images and large objects weigh more. The pooled score depends
    on which images are scored together (e.g. the cross-validation fold).

    A per-pixel ``sample_weight`` (same shape as ``y_true``) enters the sums:
    with ``a = (y_true == k)``, ``b = (y_pred == k)`` and weights ``w``, the
    intersection is ``sum(w * a * b)`` and the mask sizes ``sum(w * a)`` and
    ``sum(w * b)``. Images are then averaged with equal weight. A pixel weight
    of 0 is equivalent to ignoring the pixel.

    When a class is absent from both masks of an image (or all of its pixels
    have weight 0) the ratio is 0/0; ``zero_division`` is used instead. The
    default 1.0 credits the prediction for correctly finding nothing. With
    ``zero_division=np.nan`` such entries are skipped by the averages (NaN
    only if nothing is left).

    If no class is left to score (e.g. both masks contain only background and
    ``labels`` is not given), ``average=None`` returns an empty array and
    the averaged scores return ``zero_division``.""",
    "boundaries": """\
    **Boundaries and distances.** The boundary of a mask is the set of its
    pixels with at least one face-connected neighbour (4 in 2-D, 6 in 3-D)
    outside the mask; pixels on the image edge are boundary pixels, and a
    single pixel is its own boundary. Distances are Euclidean, between pixel
    centres scaled by ``spacing``, from a boundary pixel of one mask to the
    nearest boundary pixel of the other, not to the other mask: a boundary
    pixel of ``A`` lying inside ``B`` is still as far from ``B`` as the
    nearest boundary pixel of ``B``. Pixels excluded by ``ignore_index``
    count as outside both masks, so mask pixels next to them are boundary
    pixels.""",
    "distance_aggregation": """\
    **Aggregation** is the same as for :func:`dice_score`: values are
    computed per image and class, averaged over images (weighted by
    ``sample_weight``), and for ``average="macro"`` then over classes, each
    class counting the same. ``average="micro"`` is not available because
    boundary distances of different images are not measured against the
    same boundary and do not pool. If no class is left to score,
    ``"macro"`` returns the value of a class absent from both masks.""",
    "calibration_parameters": """\
    y_true : array-like of shape (n_samples,)
        True labels. Other shapes are flattened, e.g. the label masks whose
        pixels are the rows of ``y_prob``.

    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, e.g. the output of ``predict_proba``; every
        row sums to 1 (within 1e-3). A 1-D array is the probability of the
        second class (``classes[1]``) of a binary problem.

    n_bins : int, default=10
        Number of confidence bins.

    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"`` splits [0, 1] into ``n_bins`` bins of equal width;
        ``"quantile"`` puts the edges at weighted quantiles of the
        confidences, so that the bins hold about the same weight (the same
        number of predictions when unweighted). See Notes.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights of the predictions, not all 0.

    classes : array-like of shape (n_classes,), default=None
        The label of each column of ``y_prob`` (an estimator's
        ``classes_``); ``None`` means ``0, 1, ..., n_classes - 1``.""",
    "calibration_bins": """\
    **Top-label confidence.** The confidence ``c_i`` of prediction ``i`` is
    the largest probability in its row of ``y_prob``, and the prediction is
    right (``r_i = 1``, else 0) when ``y_true[i]`` is the label of that
    column (the first one on ties). For a 1-D ``y_prob`` of a binary problem
    the confidence is ``max(p, 1 - p)``, never below 0.5: this is not the
    reliability of the positive class that
    :func:`sklearn.calibration.calibration_curve` shows.

    **Bins.** Bin ``b`` holds the predictions with
    ``bin_edges[b] < c_i <= bin_edges[b + 1]``, the first bin also
    ``c_i = 0`` [1]_. With ``strategy="quantile"`` the inner edge
    ``bin_edges[b]`` is the smallest confidence ``c`` such that the
    predictions with confidence at most ``c`` carry at least ``b / n_bins``
    of the total weight (the weighted inverted empirical CDF, as
    ``numpy.quantile(..., weights=..., method="inverted_cdf")``), and the
    outer edges are 0 and 1. Tied confidences (many predictions of
    confidence 1.0, say) can leave bins empty.

    **Weights.** Bin ``b`` has weight ``W_b = sum(w_i)`` over its
    predictions, accuracy ``acc_b = sum(w_i * r_i) / W_b`` and mean
    confidence ``conf_b = sum(w_i * c_i) / W_b``, where ``w_i`` is
    ``sample_weight[i]`` (1 by default). An integer weight ``k`` is the same
    as repeating the prediction ``k`` times, a weight of 0 the same as
    leaving it out, and multiplying all weights by a constant changes
    nothing, the quantile edges included.""",
}

#: Decorator for :func:`dice_score` and :func:`iou_score`.
fill_overlap_doc = fill_doc(_ENTRIES, average_options='{"macro", "micro"} or None')

#: Decorator for the boundary metrics, which have no ``average="micro"``.
fill_distance_doc = fill_doc(_ENTRIES, average_options='"macro" or None')

#: Decorator for :func:`reliability_curve` and :func:`expected_calibration_error`.
fill_calibration_doc = fill_doc(_ENTRIES)
