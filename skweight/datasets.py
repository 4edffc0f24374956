"""Small synthetic data sets for examples, tests and benchmarks.

:func:`make_disk_scenes` draws noisy segmentation scenes with small and
large structures, the situation where the choice of segmentation loss
matters: a few tiny disks (class 1) cover about 4 % of the pixels, one
larger square (class 2) about 10 %, and the background the rest.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_disk_scenes"]


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
