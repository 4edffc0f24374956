"""Per-pixel weight maps that separate touching objects (the U-Net border weights).

A segmenter trained on semantic masks learns to paint touching nuclei as one
blob: the thin background gaps between them are few pixels among many.
:func:`border_weights` weighs those gaps up, as Ronneberger et al. did for
the U-Net, and returns a map for the segmenter's per-pixel ``sample_weight``.
"""

import math
import numbers

import numpy as np
from scipy import ndimage

from ._validation import check_real

__all__ = ["border_weights"]

#: The border term is dropped where it is below this fraction of ``w0``:
#: 1e-17 is under float64's resolution of any weight of order ``w0``.
_NEGLIGIBLE = 1e-17


def border_weights(instances, w0=10.0, sigma=5.0, class_weight=None):
    """U-Net weight map: class weights plus a term on gaps between objects.

    Each pixel ``x`` gets ``w_c(x) + w0 * exp(-(d1(x) + d2(x)) ** 2 /
    (2 * sigma ** 2))``, where ``d1`` and ``d2`` are the distances from ``x``
    to the nearest and the second-nearest object. The second term is added
    on background pixels only, and only where an image holds at least two
    objects; it is largest in narrow gaps between objects.

    Parameters
    ----------
    instances : array-like of int, shape (H, W) or (N, H, W)
        Instance label images: 0 is background, and all pixels with the same
        positive label form one object (which need not be connected).
    w0 : float, default=10.0
        Height of the border term, ``>= 0``; 0 gives the class weights alone.
    sigma : float, default=5.0
        Width of the border term in pixels, ``> 0``.
    class_weight : None, "balanced" or dict, default=None
        ``w_c``, the weight of background (key 0) and object (key 1) pixels.
        None gives 1 to both. A dict may omit a key, whose weight is then 1.
        ``"balanced"`` gives class ``k`` the weight
        ``n_pixels / (n_classes * n_pixels_k)`` (scikit-learn's formula),
        counted over all the images in ``instances``; ``n_classes`` counts the
        classes present, so images without objects get weight 1.

    Returns
    -------
    weights : ndarray of float64, same shape as ``instances``
        Finite, non-negative weights; positive where the class weights are.
        Use them as the per-pixel ``sample_weight`` of
        :class:`~skweight.CNNSegmenter` (shape ``(N, H, W)``).

    Notes
    -----
    Distances are Euclidean, in pixels, between pixel centres: ``d_k(x)`` is
    the distance from ``x`` to the closest pixel of object ``k``, and ``d1``,
    ``d2`` are the two smallest of them over the objects. Ronneberger et al.
    [1]_ used ``w0=10`` and ``sigma`` of about 5 pixels, with ``w_c``
    balancing the class frequencies.

    Each object's distance map is computed (with
    :func:`scipy.ndimage.distance_transform_edt`) only in a window reaching
    ``D = sigma * sqrt(2 * ln(1e17))`` (about ``8.85 * sigma``) pixels
    beyond the object's bounding box. A pixel outside the window of its
    second-nearest object has ``d1 + d2 > D``, so its border term is below
    ``1e-17 * w0`` and is set to 0: the result differs from the exact map by
    less than ``1e-17 * w0``, and the time grows with the number of objects
    times ``(object size + 2 * D) ** 2`` rather than with the number of
    objects times the image size.

    When the segmenter's ``class_weight`` is also set, the class weights
    multiply these maps: pass ``class_weight`` here or there, not both.

    References
    ----------
    .. [1] O. Ronneberger, P. Fischer and T. Brox, "U-Net: Convolutional
       Networks for Biomedical Image Segmentation", MICCAI 2015, LNCS 9351,
       pp. 234-241, equation (2).

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.weighting import border_weights
    >>> instances = np.array([[1, 1, 0, 0, 2, 2]])
    >>> np.round(border_weights(instances, w0=10, sigma=2), 3)
    array([[1.   , 1.   , 4.247, 4.247, 1.   , 1.   ]])
    """
    labels = _check_instances(instances)
    w0 = check_real(w0, "w0", low=0)
    sigma = check_real(sigma, "sigma", low=0, low_open=True)
    background, foreground = _class_weights(class_weight, labels)

    images = labels.reshape((-1, *labels.shape[-2:]))
    weights = np.where(images > 0, foreground, background)
    if w0 > 0:
        for image, weight in zip(images, weights, strict=True):
            weight += np.where(image == 0, w0 * _border_term(image, sigma), 0.0)
    return weights.reshape(labels.shape)


def _check_instances(instances):
    """Return the instance labels as a new int64 array of 2 or 3 dimensions."""
    if hasattr(instances, "detach"):  # torch tensor
        instances = instances.detach().cpu().numpy()
    array = np.asarray(instances)
    if not np.issubdtype(array.dtype, np.integer):
        hint = (
            " A binary mask is one object per image; label its connected "
            "components first (scipy.ndimage.label)." if array.dtype == bool else ""
        )
        raise TypeError(
            f"instances must be an integer array of instance labels (0 for "
            f"background, one positive label per object), got dtype {array.dtype}.{hint}"
        )
    if array.ndim not in (2, 3):
        raise ValueError(
            f"instances must have shape (H, W) or (N, H, W), got shape {array.shape}."
        )
    if array.size and array.min() < 0:
        raise ValueError(
            f"instances must hold non-negative labels (0 for background), got a "
            f"minimum of {array.min()}."
        )
    return np.array(array, dtype=np.int64)


def _class_weights(class_weight, labels):
    """Return the (background, object) weights ``w_c``."""
    if class_weight is None:
        return 1.0, 1.0
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict {{0: background, "
                f"1: object}}, got the string {class_weight!r}."
            )
        n_objects = np.count_nonzero(labels)
        counts = np.array([labels.size - n_objects, n_objects], dtype=np.float64)
        present = counts > 0
        weights = np.ones(2)
        weights[present] = labels.size / (np.count_nonzero(present) * counts[present])
        return float(weights[0]), float(weights[1])
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"class_weight must be None, 'balanced' or a dict {{0: background, "
            f"1: object}}, got {type(class_weight).__name__}: {class_weight!r}."
        )
    weights = [1.0, 1.0]
    for key, value in class_weight.items():
        valid = isinstance(key, numbers.Integral) and not isinstance(key, bool)
        if not valid or key not in (0, 1):
            raise ValueError(
                f"class_weight keys must be 0 (background) or 1 (object), got {key!r}."
            )
        weights[int(key)] = check_real(value, f"class_weight[{key}]", low=0)
    return weights[0], weights[1]


def _border_term(image, sigma):
    """``exp(-(d1 + d2) ** 2 / (2 sigma ** 2))`` per pixel of one label image.

    0 where the image has fewer than two objects, and where the term is
    below ``_NEGLIGIBLE``.
    """
    reach = sigma * math.sqrt(2.0 * math.log(1.0 / _NEGLIGIBLE))
    nearest, second = _two_nearest_distances(image, reach)
    total = nearest + second  # inf where an object is out of reach: the term is 0
    return np.exp(-(total * total) / (2.0 * sigma * sigma))


def _two_nearest_distances(image, reach):
    """Distances to the nearest and second-nearest object, within ``reach``.

    Returns
    -------
    nearest, second : ndarray of shape image.shape
        ``inf`` where fewer than one (two) objects lie within ``reach``
        pixels; exact elsewhere.
    """
    nearest = np.full(image.shape, np.inf)
    second = np.full(image.shape, np.inf)
    # Consecutive labels 1..K keep find_objects' list short, whatever the
    # label values; 0 stays background.
    values, compact = np.unique(image, return_inverse=True)
    objects = compact.reshape(image.shape) + (0 if values[0] == 0 else 1)
    boxes = ndimage.find_objects(objects)
    if len(boxes) < 2:
        return nearest, second
    pad = int(math.ceil(reach))
    for label, box in enumerate(boxes, start=1):
        window = tuple(
            slice(max(part.start - pad, 0), min(part.stop + pad, size))
            for part, size in zip(box, image.shape, strict=True)
        )
        # Every pixel of the object is in its window, so the distance to it
        # computed in the window is the distance in the whole image.
        distance = ndimage.distance_transform_edt(objects[window] != label)
        near, sec = nearest[window], second[window]
        np.minimum(sec, np.maximum(near, distance), out=sec)
        np.minimum(near, distance, out=near)
    return nearest, second
