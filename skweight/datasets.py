"""Data sets for examples, tests and benchmarks.

:func:`make_disk_scenes` draws noisy segmentation scenes with small and
large structures, the situation where the choice of segmentation loss
matters: a few tiny disks (class 1) cover about 4 % of the pixels, one
larger square (class 2) about 10 %, and the background the rest.

:func:`load_nuclei` returns a real fluorescence microscopy image of cell
nuclei with its hand-made instance labels (public domain, shipped inside
the package), and :func:`load_nuclei_tiles` cuts it into tiles with a
spatial train/test split.
"""

import functools
import numbers
from importlib import resources

import numpy as np
from sklearn.utils import Bunch, check_random_state

from ._validation import check_bool, check_real

__all__ = ["load_nuclei", "load_nuclei_tiles", "make_disk_scenes"]


def _check_range(value, name, low=0):
    """``value`` as an inclusive ``(min, max)`` pair of ints >= ``low``."""
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        lo, hi = pair
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be an int or a pair (min, max) of ints, got {value!r}."
        ) from None
    ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (lo, hi))
    if not ok or lo < low or hi < lo:
        raise ValueError(
            f"{name} must be an int >= {low} or a pair (min, max) of such ints with "
            f"min <= max, got {value!r}."
        )
    return int(lo), int(hi)


def _check_image_size(image_size):
    size = (image_size, image_size) if isinstance(image_size, numbers.Integral) \
        else tuple(image_size)
    if len(size) != 2 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(
            f"image_size must be a positive int or a pair (H, W) of them, got "
            f"{image_size!r}."
        )
    return int(size[0]), int(size[1])


def make_disk_scenes(n_samples=100, *, image_size=32, n_disks=(2, 4), disk_radius=2,
                     square_size=(8, 12), noise=0.8, random_state=None):
    """Noisy images of small disks and one larger square, with label masks.

    Each image holds one axis-aligned square (label 2) and a few disks
    (label 1) that neither overlap the square nor each other, on a
    background (label 0). Objects have intensity 1 and the background 0;
    Gaussian noise of standard deviation ``noise`` is added everywhere, so
    single pixels are ambiguous and the shape around them decides the
    label. Disks and square share the same intensity: telling them apart
    takes the size of the object, i.e. context.

    Parameters
    ----------
    n_samples : int, default=100
        Number of images.
    image_size : int or (int, int), default=32
        ``(H, W)`` of the images.
    n_disks : int or (int, int), default=(2, 4)
        Number of disks per image, or an inclusive range to draw it from.
        Fewer disks are drawn when an image has no room left for them.
    disk_radius : int, default=2
        Disk radius in pixels; a disk is the set of pixels whose centre lies
        within ``disk_radius`` of the disk's centre (13 pixels for radius 2).
    square_size : int or (int, int), default=(8, 12)
        Side of the square in pixels, or an inclusive range to draw it from.
    noise : float, default=0.8
        Standard deviation of the additive Gaussian noise (>= 0).
    random_state : None, int or RandomState, default=None
        Seed for reproducible scenes.

    Returns
    -------
    X : ndarray of shape (n_samples, 1, H, W), dtype float32
        The images.
    y : ndarray of shape (n_samples, H, W), dtype int64
        Label masks: 0 background, 1 disk, 2 square.

    Examples
    --------
    >>> from skweight.datasets import make_disk_scenes
    >>> X, y = make_disk_scenes(5, random_state=0)
    >>> X.shape, y.shape, sorted(set(y.ravel().tolist()))
    ((5, 1, 32, 32), (5, 32, 32), [0, 1, 2])
    """
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) \
            or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}.")
    h, w = _check_image_size(image_size)
    disks_lo, disks_hi = _check_range(n_disks, "n_disks")
    if not isinstance(disk_radius, numbers.Integral) or isinstance(disk_radius, bool) \
            or disk_radius < 1:
        raise ValueError(f"disk_radius must be an int >= 1, got {disk_radius!r}.")
    side_lo, side_hi = _check_range(square_size, "square_size", low=1)
    if side_hi > min(h, w):
        raise ValueError(
            f"square_size={square_size!r} does not fit in images of size {(h, w)}."
        )
    if not isinstance(noise, numbers.Real) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}.")
    rng = check_random_state(random_state)
    radius = int(disk_radius)
    rows, cols = np.mgrid[:h, :w]
    y = np.zeros((n_samples, h, w), dtype=np.int64)
    for i in range(n_samples):
        side = rng.randint(side_lo, side_hi + 1)
        top, left = rng.randint(0, h - side + 1), rng.randint(0, w - side + 1)
        y[i, top:top + side, left:left + side] = 2
        # A one-pixel gap keeps every object a separate component.
        taken = np.zeros((h, w), dtype=bool)
        taken[max(top - 1, 0):top + side + 1, max(left - 1, 0):left + side + 1] = True
        _place_disks(y[i], taken, rng.randint(disks_lo, disks_hi + 1), radius, rng,
                     rows, cols)
    X = (y > 0).astype(np.float32)[:, np.newaxis]
    X += rng.normal(0.0, noise, size=X.shape).astype(np.float32)
    return X, y


def _place_disks(mask, taken, n_disks, radius, rng, rows, cols, max_tries=50):
    """Draw up to ``n_disks`` disks into ``mask`` where ``taken`` is False."""
    h, w = mask.shape
    placed = 0
    for _ in range(max_tries):
        if placed == n_disks:
            break
        # Whole disks only: a cut disk at the border would be a smaller object.
        r0 = rng.randint(radius, h - radius) if h > 2 * radius else None
        c0 = rng.randint(radius, w - radius) if w > 2 * radius else None
        if r0 is None or c0 is None:
            return
        disk = (rows - r0) ** 2 + (cols - c0) ** 2 <= radius ** 2
        halo = (rows - r0) ** 2 + (cols - c0) ** 2 <= (radius + 1.5) ** 2
        if np.any(taken & halo):
            continue
        mask[disk] = 1
        taken |= halo
        placed += 1


# -- a real image: nuclei from the 2018 Data Science Bowl ----------------------

_NUCLEI_DESCR = """\
.. _nuclei_dataset:

Nuclei of the 2018 Data Science Bowl (BBBC038)
----------------------------------------------

**Data Set Characteristics:**

:Image: one 512 x 512 fluorescence microscopy image of cell nuclei, one
    channel, raw 8-bit intensities 0..235 stored as float32 ``raw / 255``
    (so in [0, 0.9216]).
:Labels: 125 hand-annotated nuclei, numbered 1..125 (0 is background).
    About 19.9 % of the pixels are nuclei (22.5 % in the left half, 17.4 %
    in the right half); nuclei cover 25 to 751 pixels (median 440), with
    mean raw intensities from 36 to 194 (median 61) against a background
    of 23 on average.
    Every nucleus is one 8-connected region; a few nuclei touch each
    other, and 13 are cut by the image border.
:Semantic mask: ``instances > 0``.
:Source: image and annotation from the data of the 2018 Data Science
    Bowl, published as BBBC038v1 of the Broad Bioimage Benchmark
    Collection [1]_, as shipped in the ``stardist`` 0.9.2 wheel
    (``stardist/data/images/img2d.tif`` and ``mask2d.tif``) [2]_.
:License: CC0 1.0 Universal (public domain dedication),
    https://creativecommons.org/publicdomain/zero/1.0/
:Changes: the two uint16 TIFF files are re-encoded losslessly as uint8
    arrays in ``skweight/data/nuclei.npz``. The original instance labels
    run from 1 to 183 with 58 unused numbers; :func:`load_nuclei`
    renumbers them 1..125 keeping their order (the smallest original
    label becomes 1). See ``skweight/data/LICENSE-nuclei.txt``.

The image shows the usual difficulty of nuclei segmentation on a small
scale: nuclei of varying brightness, some dim ones close to the
background, and touching neighbours. It is small enough for a CPU: a
U-Net trained on tiles of one half segments the other half.

.. topic:: References

  .. [1] J. C. Caicedo, A. Goodman, K. W. Karhohs, B. A. Cimini,
     J. Ackerman, M. Haghighi, C. Heng, T. Becker, M. Doan, C. McQuin,
     M. Rohban, S. Singh and A. E. Carpenter, "Nucleus segmentation across
     imaging experiments: the 2018 Data Science Bowl", Nature Methods 16,
     pp. 1247-1253, 2019. https://bbbc.broadinstitute.org/BBBC038
  .. [2] U. Schmidt, M. Weigert, C. Broaddus and G. Myers, "Cell detection
     with star-convex polygons", MICCAI 2018.
     https://github.com/stardist/stardist
"""

#: Raw values are 8-bit intensities; dividing by the 8-bit maximum (not by
#: the image's own maximum) keeps the scale a property of the sensor.
_NUCLEI_SCALE = 255

_TEST_REGIONS = ("left", "right", "top", "bottom")


@functools.lru_cache(maxsize=1)
def _read_nuclei():
    """Return the stored uint8 arrays ``(image, instances)``, read once, read-only."""
    ref = resources.files(__package__) / "data" / "nuclei.npz"
    with ref.open("rb") as fh, np.load(fh) as archive:
        image, instances = archive["image"], archive["instances"]
    # The cache hands the same arrays to every call: lock them so that no
    # caller can change what the next one gets.
    for array in (image, instances):
        array.setflags(write=False)
    return image, instances


def load_nuclei():
    """Load a fluorescence microscopy image of nuclei and its instance labels.

    One 512 x 512 image of cell nuclei from the 2018 Data Science Bowl
    (BBBC038 [1]_), with 125 hand-annotated nuclei. It ships inside the
    package (about 0.2 MB), so no download is needed.

    ================= ==========================================
    Image size        512 x 512, one channel
    Intensities       raw 0..235, returned as ``raw / 255``
    Nuclei            125, labelled 1..125 (0 is background)
    Foreground        19.9 % of the pixels
    License           CC0 1.0 (public domain)
    ================= ==========================================

    Read more in ``DESCR``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes; every call
        returns new arrays, free to modify.

        image : ndarray of shape (512, 512), dtype float32
            The raw 8-bit intensities divided by 255.
        instances : ndarray of shape (512, 512), dtype int64
            Instance labels: 0 for background, 1..125 for the nuclei. The
            original labels (1..183, with gaps) are renumbered
            consecutively in increasing order: the nucleus with the
            smallest original label becomes 1.
        mask : ndarray of shape (512, 512), dtype bool
            Semantic mask, ``instances > 0``.
        DESCR : str
            Description of the data: source, statistics, license.

    See Also
    --------
    load_nuclei_tiles : The image cut into tiles with a spatial split.

    Notes
    -----
    The image and its annotation are the ``img2d.tif`` and ``mask2d.tif``
    files shipped in the ``stardist`` 0.9.2 package [2]_, from the data of
    the 2018 Data Science Bowl, published as BBBC038v1 of the Broad
    Bioimage Benchmark Collection [1]_ under the CC0 1.0 public domain
    dedication (https://creativecommons.org/publicdomain/zero/1.0/).
    They are stored re-encoded losslessly as uint8; the loader scales the
    image and renumbers the nuclei, nothing else differs from the
    original files. Please cite
    [1]_ when you use the data in a publication.

    References
    ----------
    .. [1] J. C. Caicedo et al., "Nucleus segmentation across imaging
       experiments: the 2018 Data Science Bowl", Nature Methods 16,
       pp. 1247-1253, 2019. https://bbbc.broadinstitute.org/BBBC038
    .. [2] U. Schmidt, M. Weigert, C. Broaddus and G. Myers, "Cell detection
       with star-convex polygons", MICCAI 2018.
       https://github.com/stardist/stardist

    Examples
    --------
    >>> from skweight.datasets import load_nuclei
    >>> nuclei = load_nuclei()
    >>> nuclei.image.shape, nuclei.image.dtype
    ((512, 512), dtype('float32'))
    >>> int(nuclei.instances.max()), round(float(nuclei.mask.mean()), 3)
    (125, 0.199)
    """
    raw_image, raw_instances = _read_nuclei()
    image = raw_image.astype(np.float32) / np.float32(_NUCLEI_SCALE)
    # np.unique sorts, so the inverse numbers the labels in increasing order;
    # background 0 is the smallest label and stays 0.
    _, inverse = np.unique(raw_instances, return_inverse=True)
    instances = inverse.reshape(raw_instances.shape).astype(np.int64)
    return Bunch(image=image, instances=instances, mask=instances > 0,
                 DESCR=_NUCLEI_DESCR)


def load_nuclei_tiles(tile_size=64, *, stride=None, test_region="right", test_size=0.5,
                      return_instances=False):
    """Load the nuclei image cut into tiles, split into a training and a test region.

    The image of :func:`load_nuclei` is split by a straight cut into two
    regions, a training region and a test region, and each is cut into
    tiles that lie entirely inside it. No pixel is in both a training and
    a test tile. Splitting the image in space rather than drawing tiles at
    random keeps overlapping or adjacent tiles out of the test set, which
    would otherwise flatter the score.

    Parameters
    ----------
    tile_size : int or (int, int), default=64
        ``(height, width)`` of the tiles; an int gives square tiles.
    stride : None, int or (int, int), default=None
        Step between training tiles (``(rows, columns)``); ``None`` means
        ``tile_size``: adjacent tiles that do not overlap. A smaller stride
        gives more, overlapping training tiles (105 instead of 32 for
        64-pixel tiles with ``stride=32``), which helps a network trained
        for a few epochs. Test tiles never overlap, whatever the stride, so
        that every test pixel counts once in a score.
    test_region : {"right", "left", "top", "bottom"}, default="right"
        The side of the image that is held out for testing.
    test_size : float, default=0.5
        Fraction of the image's width (``"left"``, ``"right"``) or height
        (``"top"``, ``"bottom"``) given to the test region, rounded to the
        nearest pixel, in (0, 1).
    return_instances : bool, default=False
        Whether to also return the instance labels of the tiles.

    Returns
    -------
    X_train : ndarray of shape (n_train, 1, tile_height, tile_width), dtype float32
        Training tiles of the image (``raw / 255``).
    y_train : ndarray of shape (n_train, tile_height, tile_width), dtype int64
        Their semantic masks: 0 background, 1 nucleus.
    X_test : ndarray of shape (n_test, 1, tile_height, tile_width), dtype float32
        Test tiles.
    y_test : ndarray of shape (n_test, tile_height, tile_width), dtype int64
        Their semantic masks.
    instances_train : ndarray of shape (n_train, tile_height, tile_width), dtype int64
        Only with ``return_instances=True``: the instance labels of
        :func:`load_nuclei` (1..125, 0 background) in the training tiles. A
        nucleus cut by a tile boundary keeps its label in every tile.
    instances_test : ndarray of shape (n_test, tile_height, tile_width), dtype int64
        Only with ``return_instances=True``: the same for the test tiles.

    See Also
    --------
    load_nuclei : The whole image and its labels.

    Notes
    -----
    Within each region, tiles start at the region's top-left corner and
    are listed row by row (raster order). Where a region's height or width
    is not a multiple of the step, the pixels past the last whole tile at
    its bottom or right edge are left out. Test tiles therefore come in
    ``n_rows`` rows of ``n_cols`` tiles and can be put back together with
    ``y.reshape(n_rows, n_cols, th, tw).transpose(0, 2, 1, 3)
    .reshape(n_rows * th, n_cols * tw)``.

    A nucleus that crosses the cut between the regions has pixels in both;
    with the default split, 5 of the 125 nuclei do.

    Examples
    --------
    >>> from skweight.datasets import load_nuclei_tiles
    >>> X_train, y_train, X_test, y_test = load_nuclei_tiles(64)
    >>> X_train.shape, y_train.shape, X_test.shape
    ((32, 1, 64, 64), (32, 64, 64), (32, 1, 64, 64))

    Put the test masks back together: they are the right half of the image.

    >>> import numpy as np
    >>> from skweight.datasets import load_nuclei
    >>> right = y_test.reshape(8, 4, 64, 64).transpose(0, 2, 1, 3).reshape(512, 256)
    >>> bool(np.array_equal(right, load_nuclei().mask[:, 256:]))
    True
    """
    tile = _check_tile_shape(tile_size, "tile_size")
    step = tile if stride is None else _check_tile_shape(stride, "stride")
    if not isinstance(test_region, str) or test_region not in _TEST_REGIONS:
        raise ValueError(
            f"test_region must be one of {', '.join(map(repr, _TEST_REGIONS))}; got "
            f"{test_region!r}."
        )
    test_size = _check_test_size(test_size)
    return_instances = check_bool(return_instances, "return_instances")

    data = load_nuclei()
    train_box, test_box = _split_boxes(data.image.shape, test_region, test_size)
    for box, name in ((train_box, "training"), (test_box, "test")):
        _check_tile_fits(box, tile, name, test_region, test_size, data.image.shape)
    train = [_cut_tiles(a, train_box, tile, step) for a in (data.image, data.instances)]
    test = [_cut_tiles(a, test_box, tile, tile) for a in (data.image, data.instances)]
    out = (train[0][:, np.newaxis], (train[1] > 0).astype(np.int64),
           test[0][:, np.newaxis], (test[1] > 0).astype(np.int64))
    return (*out, train[1], test[1]) if return_instances else out


def _check_tile_shape(value, name):
    """``value`` as a ``(height, width)`` pair of positive ints."""
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        h, w = pair
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a positive int or a pair (height, width) of them; got "
            f"{value!r}."
        ) from None
    valid = all(
        isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) and v > 0
        for v in (h, w)
    )
    if not valid:
        raise ValueError(
            f"{name} must be a positive int or a pair (height, width) of them; got "
            f"{value!r}."
        )
    return int(h), int(w)


def _check_test_size(test_size):
    message = f"test_size must be a finite real number in (0, 1); got {test_size!r}."
    try:
        value = check_real(test_size, "test_size", low=0, high=1, low_open=True)
    except ValueError:
        raise ValueError(message) from None
    if value == 1:
        raise ValueError(message)
    return value


def _split_boxes(shape, test_region, test_size):
    """Training and test regions as ``(top, left, height, width)`` boxes."""
    height, width = shape
    axis_len = width if test_region in ("left", "right") else height
    n_test = int(round(axis_len * test_size))
    n_train = axis_len - n_test
    if test_region == "right":
        return (0, 0, height, n_train), (0, n_train, height, n_test)
    if test_region == "left":
        return (0, n_test, height, n_train), (0, 0, height, n_test)
    if test_region == "bottom":
        return (0, 0, n_train, width), (n_train, 0, n_test, width)
    return (n_test, 0, n_train, width), (0, 0, n_test, width)  # "top"


def _check_tile_fits(box, tile, name, test_region, test_size, image_shape):
    _, _, height, width = box
    if tile[0] > height or tile[1] > width:
        raise ValueError(
            f"tile_size={tile} does not fit in the {name} region of shape "
            f"{(height, width)} left by test_region={test_region!r}, "
            f"test_size={test_size!r} (the image is {image_shape[0]} x "
            f"{image_shape[1]}); use smaller tiles or another test_size."
        )


def _cut_tiles(array, box, tile, step):
    """Tiles of ``array`` inside ``box`` in raster order, as a new array."""
    top, left, height, width = box
    region = array[top:top + height, left:left + width]
    windows = np.lib.stride_tricks.sliding_window_view(region, tile)
    # np.array copies: the tiles own writable memory, whatever the strides.
    return np.array(windows[::step[0], ::step[1]]).reshape(-1, *tile)
