"""Tiled prediction: a sliding window over images too large to predict whole.

A segmenter with ``tile_shape`` set predicts each image tile by tile and
blends the tiles' probabilities, so that the memory of the network's
activations is that of ``batch_size`` tiles, whatever the image size.

Placement (nnU-Net's rule)
    Along an axis of length ``I`` and a tile of length ``T <= I``, the
    target step is ``T * (1 - overlap)``; ``n = ceil((I - T) / step) + 1``
    tiles start at ``round(k * (I - T) / (n - 1))``, ``k = 0 .. n-1``: evenly
    spread over ``[0, I - T]``, the first at 0 and the last flush with the
    end, so every pixel is covered and none by a tile that hangs over. An
    axis shorter than the tile has one tile, padded (below).
Blending
    Each tile's logits become probabilities (softmax), weighted by the blend
    map ``w`` and summed; the sum is divided by the summed ``w`` of the
    tiles covering each pixel. The blended probabilities ``p`` are then
    handed on as the logits ``log p``: the estimator's own transform (the
    class_prior correction, argmax, ...) applies after blending.
Blend maps
    ``"constant"``: 1 everywhere (a plain mean of the overlapping tiles).
    ``"gaussian"``: ``prod_a exp(-(x_a - c_a)^2 / (2 sigma_a^2))`` with
    ``c_a = (T_a - 1) / 2`` (the tile's centre, symmetric for even sizes)
    and ``sigma_a = 0.125 T_a`` (nnU-Net's and MONAI's default), scaled to a
    maximum of 1 and clamped below at its smallest positive value, so that
    no pixel of a tile has weight 0.
Padding
    An axis shorter than the tile is padded to the tile's length by
    reflection (NumPy's ``"reflect"``: mirrored about the edge pixels,
    repeatedly if need be), half before and half after the image, and the
    padding is cropped off the outputs.
Memory
    Tiles are cut from the images as stored (integers stay integers) and
    forwarded ``batch_size`` at a time. The blended sums live on the CPU in
    a band one tile thick along the first spatial axis (``(K + 1, T_0,
    *rest)`` float32): the rows above the next row of tiles are final when
    it starts, so they are written to the output and the band moves on.
    The peak is the output, plus that band, plus one batch of tiles.
"""

import itertools
import math
import numbers

import numpy as np
import torch

__all__ = [
    "BLENDS",
    "SIGMA_SCALE",
    "blend_map",
    "check_tile_blend",
    "check_tile_multiple",
    "check_tile_overlap",
    "check_tile_shape",
    "fits_one_tile",
    "predict_tiled",
    "reflect_indices",
    "tile_starts",
]

#: The values ``tile_blend`` takes.
BLENDS = ("gaussian", "constant")
#: The Gaussian blend map's sigma, as a fraction of the tile size.
SIGMA_SCALE = 0.125
# Pixels per call of the output transform when a band is written out: its
# float64 temporaries (several of K values per pixel) stay a few MiB.
_FINALIZE_PIXELS = 2**18


# -- parameters -----------------------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_tile_shape(tile_shape, ndim=None):
    """Validate ``tile_shape``: None, a positive int or 2 or 3 positive ints.

    Parameters
    ----------
    tile_shape : object
        The parameter.
    ndim : None or int, default=None
        The number of spatial axes of the fitted images; an int is then
        repeated for each, and a tuple must have that many entries. None:
        the tuple is checked on its own (before the data are seen).

    Returns
    -------
    tile_shape : None or tuple of int
        One size per spatial axis (a 1-tuple for an int when ``ndim`` is None).

    Raises
    ------
    ValueError
        On anything else, naming ``tile_shape`` and the value.
    """
    if tile_shape is None:
        return None
    if _is_int(tile_shape):
        sizes = (int(tile_shape),) * (ndim or 1)
    elif isinstance(tile_shape, (tuple, list, np.ndarray)) and len(tile_shape) in (2, 3) \
            and all(_is_int(t) for t in tile_shape):
        sizes = tuple(int(t) for t in tile_shape)
    else:
        sizes = None
    if sizes is None or min(sizes) < 1:
        raise ValueError(
            f"tile_shape must be None, a positive int (the same size on every "
            f"spatial axis) or a tuple of 2 or 3 positive ints (one per spatial "
            f"axis), got {tile_shape!r}."
        )
    if ndim is not None and len(sizes) != ndim:
        layout = "(H, W)" if ndim == 2 else "(D, H, W)"
        raise ValueError(
            f"tile_shape={tile_shape!r} has {len(sizes)} axes, but the model was "
            f"fitted on {ndim}-D images: give {ndim} sizes {layout}, or one int."
        )
    return sizes


def check_tile_overlap(tile_overlap):
    """Validate ``tile_overlap``, a fraction of the tile in [0, 1).

    Parameters
    ----------
    tile_overlap : object
        The parameter.

    Returns
    -------
    tile_overlap : float

    Raises
    ------
    ValueError
        Unless it is a real number with ``0 <= tile_overlap < 1``.
    """
    valid = isinstance(tile_overlap, numbers.Real) and not isinstance(
        tile_overlap, (bool, np.bool_)
    )
    if not (valid and 0 <= tile_overlap < 1):
        raise ValueError(
            f"tile_overlap must be a fraction of the tile in [0, 1) (0: tiles "
            f"only touch, 0.5: each pixel is in about 2 tiles per axis), got "
            f"{tile_overlap!r}."
        )
    return float(tile_overlap)


def check_tile_blend(tile_blend):
    """Validate ``tile_blend``: ``"gaussian"`` or ``"constant"``.

    Parameters
    ----------
    tile_blend : object
        The parameter.

    Returns
    -------
    tile_blend : str

    Raises
    ------
    ValueError
        On any other value.
    """
    if not (isinstance(tile_blend, str) and tile_blend in BLENDS):
        raise ValueError(
            f"tile_blend must be one of {list(BLENDS)}, got {tile_blend!r}."
        )
    return tile_blend


def check_tile_multiple(tile, multiple, network="the default U-Net"):
    """Refuse tile sizes that are not multiples of what the network pools by.

    Parameters
    ----------
    tile : tuple of int
        The checked tile shape.
    multiple : int
        ``2 ** depth`` of the U-Net.
    network : str, default="the default U-Net"
        How to name the network in the message.

    Raises
    ------
    ValueError
        Naming ``tile_shape``, the multiple and the nearest valid shape.
    """
    if all(t % multiple == 0 for t in tile):
        return
    # U-Net would pad such a tile inside (zeros at its bottom and right) and
    # crop back: every tile would carry that artificial border.
    suggestion = tuple(max(multiple, multiple * round(t / multiple)) for t in tile)
    depth = int(math.log2(multiple))
    raise ValueError(
        f"tile_shape={tile if len(set(tile)) > 1 else tile[0]!r} does not suit "
        f"{network}: its {depth} poolings need tile sizes that are multiples of "
        f"{multiple}, e.g. tile_shape={suggestion!r}."
    )


# -- geometry -------------------------------------------------------------------


def tile_starts(size, tile, overlap):
    """Start positions of the tiles along one axis, by nnU-Net's rule.

    Parameters
    ----------
    size : int
        Length of the axis.
    tile : int
        Length of the tile.
    overlap : float
        The fraction of the tile that neighbours share, in [0, 1).

    Returns
    -------
    starts : ndarray of int64
        ``n = ceil((size - tile) / (tile * (1 - overlap))) + 1`` positions,
        ``round(k * (size - tile) / (n - 1))`` (round half to even), from 0
        to ``size - tile``; ``[0]`` when the tile is not shorter than the
        axis. ``n`` is capped at ``size - tile + 1`` so that the positions
        stay distinct when the step would be under a pixel.
    """
    span = size - tile
    if span <= 0:
        return np.zeros(1, dtype=np.int64)
    steps = span / (tile * (1.0 - overlap))
    # A ratio that is a whole number up to round-off (e.g. 448 / 32.000000001)
    # must not cost one more tile.
    n = math.ceil(steps - 1e-9) + 1
    n = min(n, span + 1)
    return np.round(np.arange(n) * (span / (n - 1))).astype(np.int64)


def blend_map(tile, blend="gaussian"):
    """Return the weight of each pixel of a tile when overlapping tiles are blended.

    Parameters
    ----------
    tile : tuple of int
        The tile shape.
    blend : {"gaussian", "constant"}, default="gaussian"
        ``"constant"``: ones. ``"gaussian"``: the product over axes of
        ``exp(-(x - (T - 1) / 2)^2 / (2 sigma^2))`` with ``sigma = 0.125 T``,
        scaled to a maximum of 1, values clamped below at its smallest
        positive value.

    Returns
    -------
    weights : torch.Tensor of shape ``tile``, float32
        Positive everywhere.
    """
    if blend == "constant":
        return torch.ones(tile, dtype=torch.float32)
    w = np.ones((), dtype=np.float64)
    for length in tile:
        x = np.arange(length) - (length - 1) / 2
        g = np.exp(-(x**2) / (2 * (SIGMA_SCALE * length) ** 2))
        w = np.multiply.outer(w, g / g.max())
    w = w.astype(np.float32)
    # With sigma = T / 8 the corner weight is exp(-8 ndim), which float32
    # holds: the clamp only guards against underflow (nnU-Net's float16 map
    # has zeros there), so that every pixel of every tile counts.
    positive = w[w > 0]
    return torch.from_numpy(np.maximum(w, positive.min()))


def reflect_indices(start, stop, size):
    """Return indices into an axis of ``size`` for ``start .. stop-1``, mirrored.

    Parameters
    ----------
    start, stop : int
        Coordinates, possibly outside ``[0, size)``.
    size : int
        Length of the axis (at least 1).

    Returns
    -------
    indices : ndarray of int64
        NumPy's ``"reflect"`` padding: mirrored about the first and last
        pixels without repeating them, as often as needed; all 0 when
        ``size == 1``.
    """
    coords = np.arange(start, stop, dtype=np.int64)
    if size == 1:
        return np.zeros_like(coords)
    period = 2 * (size - 1)
    coords = np.mod(coords, period)
    return np.where(coords < size, coords, period - coords)


def fits_one_tile(spatial, tile):
    """Whether one tile covers an image of shape ``spatial`` without tiling."""
    return all(s <= t for s, t in zip(spatial, tile, strict=True))


class _Layout:
    """Where the tiles of an image of shape ``spatial`` go, and what they cover.

    Axis ``a`` is tiled when the image is at least a tile long there;
    otherwise it is padded to the tile length by reflection and has one
    tile, whose middle ``spatial[a]`` pixels are kept.
    """

    def __init__(self, spatial, tile, overlap):
        self.spatial = tuple(spatial)
        self.tile = tuple(tile)
        self.padded = tuple(s < t for s, t in zip(spatial, tile, strict=True))
        self.starts = [tile_starts(s, t, overlap)
                       for s, t in zip(spatial, tile, strict=True)]
        # Image coordinates each padded axis's tile reads, mirrored.
        self.sources = {
            a: torch.from_numpy(reflect_indices(-((t - s) // 2), t - (t - s) // 2, s))
            for a, (s, t) in enumerate(zip(spatial, tile, strict=True)) if self.padded[a]
        }

    def positions(self):
        """Return the tiles' start positions, in raster order (first axis slowest)."""
        return itertools.product(*(s.tolist() for s in self.starts))

    def __len__(self):
        return int(np.prod([len(s) for s in self.starts]))

    def cut(self, image, position):
        """Return the tile at ``position`` of ``image`` (as stored), padded."""
        index = [slice(None)]
        for a, start in enumerate(position):
            whole = self.padded[a]
            index.append(slice(None) if whole else slice(start, start + self.tile[a]))
        x = image[tuple(index)]
        for a, source in self.sources.items():
            x = x.index_select(a + 1, source.to(x.device))
        return x

    def regions(self, position):
        """Return the slices (in the tile, in the image) a tile at ``position`` covers."""
        in_tile, in_image = [], []
        for a, start in enumerate(position):
            size, length = self.spatial[a], self.tile[a]
            if self.padded[a]:
                before = (length - size) // 2
                in_tile.append(slice(before, before + size))
                in_image.append(slice(0, size))
            else:
                in_tile.append(slice(0, length))
                in_image.append(slice(start, start + length))
        return tuple(in_tile), tuple(in_image)


# -- prediction -----------------------------------------------------------------


class _Blender:
    """The blended sums of the current row of tiles, written out as rows complete.

    ``band[:K]`` holds ``sum_t w_t p_t`` and ``band[K]`` ``sum_t w_t`` for
    the image rows ``[base, base + band_length)`` of image ``image``.
    """

    def __init__(self, layout, weights, transform, n_images, sigmoid=False):
        self.sigmoid = sigmoid
        self.layout = layout
        self.weights = weights
        self.transform = transform
        self.n_images = n_images
        self.band_length = min(layout.tile[0], layout.spatial[0])
        self.band = None
        self.image = None
        self.base = 0
        self.result = None

    def add(self, i, position, proba):
        """Add one tile's weighted probabilities ``proba`` ``(K, *tile)`` (CPU)."""
        in_tile, in_image = self.layout.regions(position)
        row = in_image[0].start
        if self.band is None:
            rest = self.layout.spatial[1:]
            self.band = torch.zeros((len(proba) + 1, self.band_length, *rest),
                                    dtype=torch.float32)
        if i != self.image:
            if self.image is not None:
                self.finish()
            self.image, self.base = i, row
            self.band.zero_()
        elif row != self.base:
            self._advance(row)
        band_index = (slice(0, self.band_length), *in_image[1:])
        k = len(proba)
        self.band[(slice(0, k), *band_index)] += proba[(slice(None), *in_tile)]
        self.band[(k, *band_index)] += self.weights[in_tile]

    def _advance(self, row):
        # Tiles come in raster order, so the rows above the new row of tiles
        # have all their tiles: they are final.
        done = row - self.base
        self._write(done)
        keep = self.band_length - done
        self.band[:, :keep] = self.band[:, done:].clone()
        self.band[:, keep:] = 0
        self.base = row

    def finish(self):
        """Write out the last rows of the current image."""
        self._write(self.layout.spatial[0] - self.base)

    def _write(self, n_rows):
        """Transform the first ``n_rows`` rows of the band into the output."""
        k = len(self.band) - 1
        rest = self.layout.spatial[1:]
        chunk = max(1, _FINALIZE_PIXELS // max(1, math.prod(rest)))
        trailing = (slice(None),) * len(rest)
        for lo in range(0, n_rows, chunk):
            hi = min(n_rows, lo + chunk)
            sums = self.band[:, lo:hi].double()
            p = sums[:k] / sums[k:]
            # Blended probabilities back to logits: log p for a softmax (its
            # log_softmax is log p again), the log-odds for sigmoids.
            logits = torch.log(p) - torch.log1p(-p) if self.sigmoid else torch.log(p)
            out = self.transform(logits[None])
            if self.result is None:
                head = tuple(out.shape[1:out.ndim - len(self.layout.spatial)])
                self.result = torch.empty((self.n_images, *head, *self.layout.spatial),
                                          dtype=out.dtype)
            rows = slice(self.base + lo, self.base + hi)
            self.result[self.image][(..., rows, *trailing)] = out[0].to("cpu")


def _read_images(images):
    """``image(i)``: the images of a dataset as stored, checked to share one shape."""
    shape = tuple(images.shape[1:])

    def image(i):
        x = images[i][0]
        if tuple(x.shape) != shape:
            raise ValueError(
                f"Tiled prediction needs images of one shape; image {i} has shape "
                f"{tuple(x.shape)}, the first {shape}."
            )
        return x

    return image


def predict_tiled(images, forward, transform, tile, *, overlap=0.5, blend="gaussian",
                  batch_size=16, sigmoid=False):
    """Predict images tile by tile and blend the tiles' probabilities.

    Parameters
    ----------
    images : ArrayDataset or LazyImageDataset
        The checked images, as stored; item ``i`` is ``(image, ...)`` with
        ``image`` of shape ``(C, *spatial)``, the same for every image.
    forward : callable
        ``forward(batch)``: a batch of tiles as stored ``(B, C, *tile)`` to
        their float logits ``(B, K, *tile)`` (on any device).
    transform : None or callable
        Maps blended log-probabilities ``(1, K, *region)`` (float64, CPU) to
        what is kept, e.g. probabilities with a class prior, or labels
        ``(1, *region)``. None keeps the log-probabilities, in float32.
    tile : tuple of int
        The checked tile shape, one size per spatial axis.
    overlap : float, default=0.5
        The checked ``tile_overlap``.
    blend : {"gaussian", "constant"}, default="gaussian"
        The checked ``tile_blend``.
    batch_size : int, default=16
        Tiles per forward pass (they may come from several images); -1: the
        tiles of one image.
    sigmoid : bool, default=False
        Whether the channels are independent sigmoids (overlapping masks)
        rather than a softmax over classes: then each channel's probability
        is blended, and ``transform`` receives the blended log-odds.

    Returns
    -------
    outputs : torch.Tensor of shape (N, ..., *spatial)
        ``transform``'s outputs, one row per image, on the CPU.
    """
    spatial = tuple(images.shape[2:])
    layout = _Layout(spatial, tile, overlap)
    weights = blend_map(tile, blend)
    if transform is None:
        def transform(log_p):
            return log_p.float()
    blender = _Blender(layout, weights, transform, len(images), sigmoid)
    if batch_size == -1:
        batch_size = len(layout)
    read = _read_images(images)
    stream = ((i, position) for i in range(len(images)) for position in layout.positions())
    cached, device_weights = {}, None
    while batch := list(itertools.islice(stream, batch_size)):
        # Keep only the images this batch cuts tiles from (a Dataset is read
        # once per image).
        needed = dict.fromkeys(i for i, _ in batch)
        cached = {i: cached[i] if i in cached else read(i) for i in needed}
        tiles = torch.stack([layout.cut(cached[i], position) for i, position in batch])
        logits = forward(tiles)
        if device_weights is None or device_weights.device != logits.device:
            device_weights = weights.to(logits.device)
        proba = (torch.sigmoid(logits.float()) if sigmoid
                 else torch.softmax(logits.float(), dim=1))
        proba = (proba * device_weights).to("cpu")
        for (i, position), p in zip(batch, proba, strict=True):
            blender.add(i, position, p)
    blender.finish()
    return blender.result
