"""In-memory datasets and the slicing batch iterator.

skorch's default path feeds a ``DataLoader`` that calls ``__getitem__`` once
per sample and collates the results; on small images that bookkeeping costs
more than the network. When the data are already tensors in memory, a
mini-batch is just ``X[idx]``: :class:`BatchIterator` serves it by slicing,
with targets and weights sliced alongside.
"""

import math

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset

__all__ = [
    "ArrayDataset",
    "BatchIterator",
    "LazyImageDataset",
    "ShardedBatchSampler",
    "ShuffleSampler",
    "item_image",
]


class ArrayDataset(SkorchDataset):
    """Images, targets and weights held as tensors; the images never gathered.

    ``X`` is the caller's images as stored (an integer or float tensor that
    may share memory with the caller's array, a read-only memmap included);
    a split of them is a list of ``rows``, not a copy. Targets, weights and
    masks are small and are held per row of this dataset.

    It subclasses skorch's ``Dataset`` so that skorch utilities that read
    ``.X`` and ``.y`` (e.g. ``EpochScoring`` without caching) work: ``.y``
    gives the targets as the user passed them to ``fit`` (``decode`` maps
    the internal targets back), while the loss and the iterators use the
    internal ``target``.

    Parameters
    ----------
    X : torch.Tensor of shape (M, C, H, W) or (M, C, D, H, W)
        The images as stored (M >= the rows held).
    target : None or torch.Tensor of shape (N, ...)
        Targets as the loss sees them (encoded labels, standardised values),
        one per row held.
    weight : None or torch.Tensor of shape (N,) or (N, ...)
        Per-sample or per-element weights: the validated sample weights
        (float64) until the estimator folds and normalises them.
    mask : None or torch.Tensor of bool, target's shape
        Elements that count (False: ``ignore_index``); folded into
        ``weight`` with the class weights, then dropped.
    decode : None or callable
        ``decode(target, weight)`` -> the targets in the user's terms.
    rows : None or torch.Tensor of int64 and shape (N,)
        The rows of ``X`` this dataset holds, in order (None: all of them).
    """

    # skorch's Dataset.__init__ re-validates and copies; everything here is
    # already checked, so it is deliberately not called.
    def __init__(self, X, target=None, weight=None, mask=None, decode=None,  # noqa: D107
                 rows=None):
        self.X = X
        self.target = target
        self.weight = weight
        self.mask = mask
        self.decode = decode
        self.rows = rows
        self.length = len(X) if rows is None else len(rows)

    @property
    def y(self):
        """The targets in the user's terms (the internal ones without ``decode``)."""
        if self.target is None or self.decode is None:
            return self.target
        return self.decode(self.target, self.weight)

    @property
    def shape(self):
        """``(N, C, *spatial)``: the rows held, with the images' shape."""
        return (self.length, *self.X.shape[1:])

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        x = self.X[i if self.rows is None else int(self.rows[i])]
        y = self.target[i] if self.target is not None else torch.zeros(())
        if self.weight is None:
            return x, y
        return x, (y, self.weight[i])

    def images(self):
        """Return the images of the rows held (a view when they are all of ``X``)."""
        if self.rows is None:
            return self.X
        return self.X.index_select(0, self.rows.to(self.X.device))

    def replace(self, **fields):
        """Return the same dataset with some fields replaced (no copy of the others)."""
        current = dict(X=self.X, target=self.target, weight=self.weight,
                       mask=self.mask, decode=self.decode, rows=self.rows)
        return ArrayDataset(**{**current, **fields})

    def take(self, indices):
        """Return the rows ``indices`` of this dataset.

        The images are not copied (the new dataset holds their row numbers);
        the small per-row tensors are.
        """
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        rows = idx if self.rows is None else self.rows[idx]

        def pick(t):
            return None if t is None else t.index_select(0, idx.to(t.device))

        return self.replace(target=pick(self.target), weight=pick(self.weight),
                            mask=pick(self.mask), rows=rows)

    def with_weight(self, weight):
        """Return the same data with other weights (no copy of ``X`` or the targets)."""
        return self.replace(weight=weight, mask=None)

    def apply(self, fn):
        """Return a dataset whose tensors are ``fn(tensor)`` (e.g. a device move)."""
        return self.replace(**{
            name: None if t is None else fn(t)
            for name, t in (("X", self.X), ("target", self.target),
                            ("weight", self.weight), ("mask", self.mask))
        })

    @property
    def nbytes(self):
        """Bytes of the tensors a device move copies (all of ``X``, as stored)."""
        return sum(t.element_size() * t.nelement()
                   for t in (self.X, self.target, self.weight) if t is not None)


class BatchIterator:
    """Serve mini-batches of an :class:`ArrayDataset` by slicing.

    Each pass draws a fresh permutation from ``generator`` when shuffling, so
    a seeded generator makes the whole training run repeat itself. Batches
    are ``(X, y)`` or, with weights, ``(X, (y, w))``, on ``device``; ``X``
    comes as stored (integer images stay integers: the training step scales
    them on the device).

    Parameters
    ----------
    dataset : ArrayDataset
    batch_size : int
    shuffle : bool
    generator : None or torch.Generator
    device : torch.device
        Where batches are delivered; tensors already there are not copied.
    drop_last : bool
    epoch_indices : None or callable with ``len``
        ``epoch_indices(generator)`` returns the rows (a 1-D int64 tensor,
        repeats allowed) that make up each epoch, e.g. a fresh under- or
        over-sample; they are then shuffled if ``shuffle``. ``len`` gives
        the number of rows per epoch.
    shard : None or object with ``share(rows)``
        Data-parallel training (see :mod:`skweight._fit.distributed`): each
        global batch of the pass is drawn as without it, and only this
        process's share of its rows is served.
    """

    def __init__(self, dataset, batch_size, *, shuffle=False, generator=None,
                 device="cpu", drop_last=False, epoch_indices=None, shard=None):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.epoch_indices = epoch_indices
        self.shard = shard

    def __len__(self):
        n = len(self.dataset)
        if self.epoch_indices is not None:
            n = len(self.epoch_indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _needs_copy(self, t):
        # torch.device("cuda") has no index while tensors report "cuda:0".
        target = self.device
        return t.device.type != target.type or (
            target.index is not None and t.device.index != target.index
        )

    def _deliver(self, t):
        # Pinned host memory makes the copy asynchronous.
        return t.to(self.device, non_blocking=t.is_pinned())

    def _order(self):
        """Rows of this pass in serving order, or None for ``0..n-1``."""
        if self.epoch_indices is not None:
            order = torch.as_tensor(self.epoch_indices(self.generator), dtype=torch.long)
            if self.shuffle:
                order = order[torch.randperm(len(order), generator=self.generator)]
            return order
        if self.shuffle:
            return torch.randperm(len(self.dataset), generator=self.generator)
        return None

    def __iter__(self):
        ds = self.dataset
        per_row = [t for t in (ds.target, ds.weight) if t is not None]
        order = self._order()
        n = len(ds) if order is None else len(order)
        if self.shard is not None and order is None:
            order = torch.arange(n)
        # Positions in the pass -> rows of this dataset (order) -> rows of the
        # stored images (image_order), worked out once per pass.
        image_order = order
        if ds.rows is not None:
            image_order = ds.rows if order is None else ds.rows[order]
        if image_order is not None and ds.X.device.type != "cpu":
            image_order = image_order.to(ds.X.device)
        if order is not None and per_row and per_row[0].device.type != "cpu":
            order = order.to(per_row[0].device)
        copy = self._needs_copy(ds.X)
        pinned = copy and self.device.type == "cuda"
        gather_x = _gatherer(ds.X, pinned)
        gathers = [_gatherer(t, pinned) for t in per_row]
        bs = self.batch_size
        stop_at = (n // bs) * bs if self.drop_last else n
        for start in range(0, stop_at, bs):
            stop = min(start + bs, n)
            if order is None and image_order is None:
                # Every row, in order: slices are views, nothing is gathered.
                x = ds.X[start:stop]
                parts = [t[start:stop] for t in per_row]
            else:
                pos = slice(start, stop)
                if self.shard is not None:
                    pos = self.shard.share(torch.arange(start, stop))
                x = gather_x(image_order[pos])
                if order is None:
                    parts = [t[start:stop] for t in per_row]
                else:
                    idx = order[pos]
                    parts = [gather(idx) for gather in gathers]
            if copy:
                x = self._deliver(x)
                parts = [self._deliver(t) for t in parts]
            if ds.target is None:
                yield x, None
            elif ds.weight is None:
                yield x, parts[0]
            else:
                yield x, (parts[0], parts[1])


def _gatherer(t, pinned=False):
    """``idx -> t[idx]`` for a tensor of this device and memory kind."""
    if t.device.type != "cpu":
        return lambda idx: t.index_select(0, idx.to(t.device))
    if pinned:
        def gather_pinned(idx):
            # Gather straight into pinned memory so the host-to-device copy
            # that follows stays asynchronous (the host allocator reuses it).
            out = torch.empty((len(idx), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
            return torch.index_select(t, 0, idx, out=out)

        return gather_pinned
    return lambda idx: t.index_select(0, idx)


class ShuffleSampler(torch.utils.data.Sampler):
    """Row order of a shuffled pass, drawn as :class:`BatchIterator` draws it.

    ``DataLoader(shuffle=True, generator=g)`` spends ``g`` on more than the
    permutation (a seed for its workers, a second permutation at the end of
    each pass), so with the same seed it serves other batches than the
    slicing iterator. With this sampler both paths serve the same batches
    and train the same model.

    Parameters
    ----------
    n : int
        Number of rows.
    generator : torch.Generator
    """

    def __init__(self, n, generator):
        self.n = int(n)
        self.generator = generator

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self):
        return self.n


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Sampler of this process's share of each global batch, for a DataLoader.

    The global batches are those the single-process run serves (the rows of
    ``order``, in batches of ``batch_size``); see
    :class:`BatchIterator`'s ``shard``.

    Parameters
    ----------
    order : iterable of int
        The row order of a pass (e.g. a :class:`ShuffleSampler`).
    batch_size : int
    drop_last : bool
    shard : object with ``share(rows)``
    """

    def __init__(self, order, batch_size, drop_last, shard):
        self.order = order
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.shard = shard

    def __iter__(self):
        rows = torch.as_tensor(list(iter(self.order)), dtype=torch.long)
        n, bs = len(rows), self.batch_size
        stop_at = (n // bs) * bs if self.drop_last else n
        for start in range(0, stop_at, bs):
            yield self.shard.share(rows[start:start + bs]).tolist()

    def __len__(self):
        n = len(self.order)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def item_image(item):
    """Return the image of one item of a user's Dataset as a ``(C, H, W)`` tensor.

    An item is an image or a tuple whose first element is the image (its
    other elements, e.g. a label, are ignored: skweight holds the targets).
    Floating images become float32; integer images keep their dtype (the
    training step scales them on the device, see ``input_scale``); 2-D
    images get one channel.
    """
    x = item[0] if isinstance(item, (tuple, list)) else item
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.is_floating_point():
        t = t.to(torch.float32)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(
            f"The items of a Dataset passed as X must be images of shape (C, H, W) "
            f"or (H, W), got shape {tuple(t.shape)}."
        )
    return t


class LazyImageDataset(torch.utils.data.Dataset):
    """A user's Dataset of images, with targets and weights held by skweight.

    Images are read from ``source`` one item at a time, so data that do not
    fit in memory can be trained on through a ``DataLoader`` (workers,
    prefetching); targets and weights are small and stay in memory, aligned
    with the rows of this (possibly subset) dataset. The fields are those of
    :class:`ArrayDataset`.

    Parameters
    ----------
    source : torch.utils.data.Dataset
    target, weight, mask, decode
        As in :class:`ArrayDataset`.
    indices : None or ndarray of int
        Rows of ``source`` this dataset holds (None: all).
    """

    def __init__(self, source, target=None, weight=None, mask=None, decode=None,
                 indices=None):
        self.source = source
        self.target = target
        self.weight = weight
        self.mask = mask
        self.decode = decode
        self.indices = indices

    y = ArrayDataset.y

    def __len__(self):
        return len(self.source) if self.indices is None else len(self.indices)

    def image(self, i):
        j = i if self.indices is None else int(self.indices[i])
        return item_image(self.source[j])

    @property
    def shape(self):
        return (len(self), *self.image(0).shape)

    def __getitem__(self, i):
        x = self.image(i)
        if self.target is None:
            return x, torch.zeros(())
        if self.weight is None:
            return x, self.target[i]
        return x, (self.target[i], self.weight[i])

    def replace(self, **fields):
        """Return the same rows with some fields replaced."""
        current = dict(target=self.target, weight=self.weight, mask=self.mask,
                       decode=self.decode, indices=self.indices)
        return LazyImageDataset(self.source, **{**current, **fields})

    def take(self, indices):
        """Return the rows ``indices`` (targets and weights copied, images not)."""
        idx = np.asarray(indices, dtype=np.int64)
        base = idx if self.indices is None else np.asarray(self.indices)[idx]
        rows = torch.as_tensor(idx)
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return self.replace(target=pick(self.target), weight=pick(self.weight),
                            mask=pick(self.mask), indices=base)

    def with_weight(self, weight):
        """Return the same rows with other weights."""
        return self.replace(weight=weight, mask=None)
