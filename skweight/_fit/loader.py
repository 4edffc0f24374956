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
    """Images, targets and weights held as tensors.

    It subclasses skorch's ``Dataset`` so that skorch utilities that read
    ``.X`` and ``.y`` (e.g. ``EpochScoring`` without caching) work: ``.y``
    gives the targets as the user passed them to ``fit`` (``decode`` maps
    the internal targets back), while the loss and the iterators use the
    internal ``target``.

    Parameters
    ----------
    X : torch.Tensor of shape (N, C, H, W) or (N, C, D, H, W)
    target : None or torch.Tensor of shape (N, ...)
        Targets as the loss sees them (encoded labels, standardised values).
    weight : None or torch.Tensor of shape (N,) or (N, ...)
        Per-sample or per-element weights: the validated sample weights
        (float64) until the estimator folds and normalises them.
    mask : None or torch.Tensor of bool, target's shape
        Elements that count (False: ``ignore_index``); folded into
        ``weight`` with the class weights, then dropped.
    decode : None or callable
        ``decode(target, weight)`` -> the targets in the user's terms.
    """

    # skorch's Dataset.__init__ re-validates and copies; everything here is
    # already checked, so it is deliberately not called.
    def __init__(self, X, target=None, weight=None, mask=None, decode=None):  # noqa: D107
        self.X = X
        self.target = target
        self.weight = weight
        self.mask = mask
        self.decode = decode
        self.length = len(X)

    @property
    def y(self):
        """The targets in the user's terms (the internal ones without ``decode``)."""
        if self.target is None or self.decode is None:
            return self.target
        return self.decode(self.target, self.weight)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        y = self.target[i] if self.target is not None else torch.zeros(())
        if self.weight is None:
            return self.X[i], y
        return self.X[i], (y, self.weight[i])

    def tensors(self):
        """Return the non-None tensors batches are made of (``X, target, weight``)."""
        return [t for t in (self.X, self.target, self.weight) if t is not None]

    def replace(self, **fields):
        """Return the same dataset with some fields replaced (no copy of the others)."""
        current = dict(X=self.X, target=self.target, weight=self.weight,
                       mask=self.mask, decode=self.decode)
        return ArrayDataset(**{**current, **fields})

    def take(self, indices):
        """Return a new dataset with the rows ``indices`` (a copy)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return self.apply(lambda t: t.index_select(0, idx.to(t.device)))

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
        return sum(t.element_size() * t.nelement() for t in self.tensors())


class BatchIterator:
    """Serve mini-batches of an :class:`ArrayDataset` by slicing.

    Each pass draws a fresh permutation from ``generator`` when shuffling, so
    a seeded generator makes the whole training run repeat itself. Batches
    are ``(X, y)`` or, with weights, ``(X, (y, w))``, on ``device``.

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
        Data-parallel training (see :mod:`skweight._distributed`): each
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
        tensors = ds.tensors()
        order = self._order()
        n = len(ds) if order is None else len(order)
        if order is not None and tensors[0].device.type != "cpu":
            # One copy of the permutation per pass, not one per batch and tensor.
            order = order.to(tensors[0].device)
        copy = self._needs_copy(tensors[0])
        # Decided once per pass, not per batch: where each tensor lives.
        gathers = [_gatherer(t) for t in tensors]
        bs = self.batch_size
        stop_at = (n // bs) * bs if self.drop_last else n
        has_target, has_weight = ds.target is not None, ds.weight is not None
        if self.shard is not None and order is None:
            order = torch.arange(n, device=tensors[0].device)
        for start in range(0, stop_at, bs):
            if order is None:
                parts = [t[start:start + bs] for t in tensors]
            else:
                idx = order[start:start + bs]
                if self.shard is not None:
                    idx = self.shard.share(idx)
                parts = [gather(idx) for gather in gathers]
            if copy:
                parts = [self._deliver(t) for t in parts]
            if not has_target:
                yield parts[0], None
            elif not has_weight:
                yield parts[0], parts[1]
            else:
                yield parts[0], (parts[1], parts[2])


def _gatherer(t):
    """``idx -> t[idx]`` for a tensor of this device and memory kind."""
    if t.device.type != "cpu":
        return lambda idx: t.index_select(0, idx)
    if t.is_pinned():
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
    """Return the image of one item of a user's Dataset, as a float32 ``(C, H, W)``.

    An item is an image or a tuple whose first element is the image (its
    other elements, e.g. a label, are ignored: skweight holds the targets).
    ``uint8`` images are scaled to [0, 1]; 2-D images get one channel.
    """
    x = item[0] if isinstance(item, (tuple, list)) else item
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to(torch.float32) / 255.0 if t.dtype == torch.uint8 else t.to(torch.float32)
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
