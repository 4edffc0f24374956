"""make_disk_scenes: shapes, object geometry, reproducibility, validation."""

import numpy as np
import pytest
from scipy import ndimage

from skweight.datasets import make_disk_scenes


def test_shapes_dtypes_and_labels():
    X, y = make_disk_scenes(7, image_size=(20, 24), random_state=0)
    assert X.shape == (7, 1, 20, 24) and X.dtype == np.float32
    assert y.shape == (7, 20, 24) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1, 2}


def test_objects_have_the_requested_geometry():
    X, y = make_disk_scenes(30, n_disks=(2, 4), disk_radius=2, square_size=(8, 12),
                            noise=0.0, random_state=1)
    # Without noise the image is the foreground mask.
    np.testing.assert_array_equal(X[:, 0], (y > 0).astype(np.float32))
    for mask in y:
        disks, n_disks = ndimage.label(mask == 1)
        assert 2 <= n_disks <= 4
        # radius 2: the 13 pixels within distance 2 of the centre
        assert np.all(np.bincount(disks.ravel())[1:] == 13)
        squares, n_squares = ndimage.label(mask == 2)
        assert n_squares == 1
        rows, cols = np.nonzero(squares)
        side = rows.max() - rows.min() + 1
        assert side == cols.max() - cols.min() + 1 and 8 <= side <= 12
        assert np.sum(mask == 2) == side * side
        # disks do not touch the square (a one-pixel gap at least)
        grown = ndimage.binary_dilation(mask == 2, np.ones((3, 3)))
        assert not np.any(grown & (mask == 1))


def test_reproducible_and_noisy():
    a = make_disk_scenes(5, random_state=3)
    b = make_disk_scenes(5, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    X, y = make_disk_scenes(200, noise=0.5, random_state=4)
    residual = X[:, 0] - (y > 0)
    assert residual.std() == pytest.approx(0.5, rel=0.02)
    assert abs(residual.mean()) < 0.01


def test_fixed_counts_and_crowded_images():
    _, y = make_disk_scenes(10, n_disks=3, square_size=6, random_state=0)
    assert all(ndimage.label(m == 1)[1] == 3 for m in y)
    # no room for 50 disks in 16x16: as many as fit, never overlapping
    _, y = make_disk_scenes(3, image_size=16, n_disks=50, square_size=4, random_state=0)
    for m in y:
        labels, n = ndimage.label(m == 1)
        assert 1 <= n < 50 and np.all(np.bincount(labels.ravel())[1:] == 13)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples must be a positive int"),
    (dict(image_size=(0, 5)), "image_size must be a positive int"),
    (dict(n_disks=(3, 2)), "n_disks must be an int >= 0"),
    (dict(disk_radius=0), "disk_radius must be an int >= 1"),
    (dict(square_size=40), "does not fit"),
    (dict(noise=-1.0), "noise must be a number >= 0"),
])
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_disk_scenes(**{"n_samples": 2, **kwargs})
    with pytest.raises(TypeError, match="pair"):
        make_disk_scenes(2, n_disks="many")
