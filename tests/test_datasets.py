"""make_disk_scenes, load_nuclei, load_nuclei_tiles: shapes, contents, validation."""

import numpy as np
import pytest
from scipy import ndimage

from skweight.datasets import load_nuclei, load_nuclei_tiles, make_disk_scenes


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


# -- load_nuclei / load_nuclei_tiles --------------------------------------------


def test_load_nuclei_arrays():
    data = load_nuclei()
    assert set(data) == {"image", "instances", "mask", "DESCR"}
    assert data.image.shape == (512, 512) and data.image.dtype == np.float32
    assert data.instances.shape == (512, 512) and data.instances.dtype == np.int64
    assert data.mask.shape == (512, 512) and data.mask.dtype == bool
    # raw 8-bit values 0..235 divided by 255
    assert data.image.min() == 0.0
    assert data.image.max() == np.float32(235) / np.float32(255)
    raw = data.image * 255
    np.testing.assert_allclose(raw, np.round(raw), atol=1e-4)
    # 125 nuclei numbered 1..125 without gaps, plus background
    np.testing.assert_array_equal(np.unique(data.instances), np.arange(126))
    np.testing.assert_array_equal(data.mask, data.instances > 0)
    assert data.mask.sum() == 52226  # 19.9 % of 512 * 512
    assert "CC0" in data.DESCR and "BBBC038" in data.DESCR


def test_load_nuclei_instances_are_the_nuclei():
    data = load_nuclei()
    sizes = np.bincount(data.instances.ravel())[1:]
    assert sizes.min() == 25 and sizes.max() == 751 and np.median(sizes) == 440
    # each nucleus is one 8-connected region
    for label, region in enumerate(ndimage.find_objects(data.instances), start=1):
        _, n = ndimage.label(data.instances[region] == label, np.ones((3, 3)))
        assert n == 1
    # nuclei are brighter than the background
    assert data.image[data.mask].mean() > 2.5 * data.image[~data.mask].mean()


def test_load_nuclei_relabels_in_increasing_order():
    # The smallest original label becomes 1, the next 2, ...: the first pixel
    # of each nucleus in raster order is not what decides the number.
    data = load_nuclei()
    from skweight.datasets import _read_nuclei

    _, raw = _read_nuclei()
    assert raw.max() == 183 and len(np.unique(raw)) == 126
    originals = np.unique(raw)[1:]
    for new, old in [(1, originals[0]), (60, originals[59]), (125, 183)]:
        np.testing.assert_array_equal(data.instances == new, raw == old)


def test_load_nuclei_returns_fresh_arrays():
    a = load_nuclei()
    expected = a.image.copy(), a.instances.copy(), a.mask.copy()
    a.image[:] = -1
    a.instances[:] = -1
    a.mask[:] = False
    b = load_nuclei()
    assert not np.shares_memory(a.image, b.image)
    np.testing.assert_array_equal(b.image, expected[0])
    np.testing.assert_array_equal(b.instances, expected[1])
    np.testing.assert_array_equal(b.mask, expected[2])


def _stitch(tiles, n_rows, n_cols):
    th, tw = tiles.shape[-2:]
    return tiles.reshape(n_rows, n_cols, th, tw).transpose(0, 2, 1, 3).reshape(
        n_rows * th, n_cols * tw
    )


def test_nuclei_tiles_default_split_is_left_right_halves():
    X_train, y_train, X_test, y_test = load_nuclei_tiles()
    assert X_train.shape == (32, 1, 64, 64) and X_train.dtype == np.float32
    assert X_test.shape == (32, 1, 64, 64) and X_test.dtype == np.float32
    assert y_train.shape == y_test.shape == (32, 64, 64)
    assert y_train.dtype == y_test.dtype == np.int64
    data = load_nuclei()
    np.testing.assert_array_equal(_stitch(X_train[:, 0], 8, 4), data.image[:, :256])
    np.testing.assert_array_equal(_stitch(X_test[:, 0], 8, 4), data.image[:, 256:])
    np.testing.assert_array_equal(_stitch(y_train, 8, 4), data.mask[:, :256])
    np.testing.assert_array_equal(_stitch(y_test, 8, 4), data.mask[:, 256:])
    assert set(np.unique(y_train)) == {0, 1}
    assert y_train.mean() == pytest.approx(0.2247, abs=1e-4)
    assert y_test.mean() == pytest.approx(0.1737, abs=1e-4)


def _tile_origins(X, image):
    """(row, col) of each tile in ``image``, found by exact matching."""
    th, tw = X.shape[-2:]
    origins = []
    for tile in X[:, 0]:
        # Candidates share the tile's first row; only those get a full check.
        rows, cols = np.nonzero(image[:1 + 512 - th, :1 + 512 - tw] == tile[0, 0])
        first_row = image[rows[:, None], cols[:, None] + np.arange(tw)]
        keep = np.all(first_row == tile[0], axis=1)
        hits = [(r, c) for r, c in zip(rows[keep], cols[keep], strict=True)
                if np.array_equal(image[r:r + th, c:c + tw], tile)]
        assert len(hits) == 1
        origins.append(hits[0])
    return origins


@pytest.mark.parametrize("test_region, test_size, in_test", [
    ("right", 0.25, lambda r, c: c >= 384),
    ("left", 0.3, lambda r, c: c < 154),
    ("top", 0.5, lambda r, c: r < 256),
    ("bottom", 0.4, lambda r, c: r >= 307),
])
def test_nuclei_tiles_regions_do_not_overlap(test_region, test_size, in_test):
    tile, stride = (48, 40), 24
    X_train, y_train, X_test, y_test, inst_train, inst_test = load_nuclei_tiles(
        tile, stride=stride, test_region=test_region, test_size=test_size,
        return_instances=True,
    )
    data = load_nuclei()
    rows, cols = np.mgrid[:512, :512]
    test_zone = in_test(rows, cols)
    covered = {}
    for name, X in (("train", X_train), ("test", X_test)):
        cover = np.zeros((512, 512), dtype=int)
        for r, c in _tile_origins(X, data.image):
            cover[r:r + tile[0], c:c + tile[1]] += 1
        covered[name] = cover
    # every tile lies inside its own region, so no pixel is in both
    assert not np.any(covered["train"][test_zone])
    assert not np.any(covered["test"][~test_zone])
    # test tiles do not overlap; training tiles overlap with stride < tile
    assert covered["test"].max() == 1 and covered["train"].max() > 1
    # tiles reach to within one step of the region's far edges
    for name, zone, step in (("train", ~test_zone, (stride, stride)),
                             ("test", test_zone, tile)):
        r, c = np.nonzero(zone)
        rc, cc = np.nonzero(covered[name])
        assert rc.min() == r.min() and cc.min() == c.min()
        assert r.max() - rc.max() < step[0] and c.max() - cc.max() < step[1]
    np.testing.assert_array_equal(y_train, inst_train > 0)
    np.testing.assert_array_equal(y_test, inst_test > 0)
    assert inst_train.dtype == inst_test.dtype == np.int64


def test_nuclei_tiles_counts_and_instances():
    X_train, _, X_test, _ = load_nuclei_tiles(32, stride=(16, 32))
    assert len(X_train) == 31 * 8 and len(X_test) == 16 * 8
    # 48 does not divide 256: 5 tiles per row, the last 16 columns left out
    X_train, _, X_test, _ = load_nuclei_tiles(48)
    assert len(X_train) == 10 * 5 and len(X_test) == 10 * 5
    *_, inst_train, inst_test = load_nuclei_tiles(return_instances=True)
    train_ids = set(np.unique(inst_train)) - {0}
    test_ids = set(np.unique(inst_test)) - {0}
    # five nuclei straddle the cut between the halves
    assert len(train_ids | test_ids) == 125 and len(train_ids & test_ids) == 5
    inst_test[:] = 0  # returned arrays are the caller's to modify
    assert load_nuclei().instances.max() == 125


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(tile_size=0), ValueError, r"tile_size must be a positive int .* got 0"),
    (dict(tile_size=(64, 0)), ValueError, "tile_size must be a positive int"),
    (dict(tile_size=64.0), TypeError, "tile_size must be a positive int"),
    (dict(tile_size=True), ValueError, "tile_size must be a positive int"),
    (dict(tile_size=(8, 8, 8)), TypeError, r"pair \(height, width\)"),
    (dict(stride=-2), ValueError, "stride must be a positive int"),
    (dict(test_region="middle"), ValueError, "test_region must be one of 'left'"),
    (dict(test_size=0), ValueError, r"test_size must be .* in \(0, 1\); got 0"),
    (dict(test_size=1.0), ValueError, r"test_size must be .* in \(0, 1\); got 1.0"),
    (dict(test_size="half"), ValueError, "test_size must be"),
    (dict(return_instances=1), TypeError, "return_instances must be a bool"),
    (dict(tile_size=300), ValueError,
     r"tile_size=\(300, 300\) does not fit in the training region of shape \(512, 256\)"),
    (dict(tile_size=64, test_size=0.1), ValueError,
     r"does not fit in the test region of shape \(512, 51\)"),
])
def test_nuclei_tiles_parameter_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_nuclei_tiles(**kwargs)
