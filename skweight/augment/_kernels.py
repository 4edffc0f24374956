"""Device-side kernels of the transforms (no host synchronisation anywhere)."""

import torch


def _per_sample(values, t):
    """Per-sample values ``(N,)`` shaped to broadcast against ``t``."""
    return values.view(values.shape[0], *([1] * (t.ndim - 1)))


def _choose(flags, new, old):
    """Take ``new`` for the flagged samples, ``old`` for the others, exactly."""
    return torch.where(_per_sample(flags, new), new, old)


def _uniform(generator, device, n, low, high, shape=()):
    u = torch.rand((n, *shape), generator=generator, device=device)
    return low + (high - low) * u


def _fill_outside(t, inside, value):
    """``t`` with ``value`` wherever ``inside`` (broadcastable) is False."""
    return torch.where(inside, t, t.new_full((), value))


def _take(t, sources, fill):
    """Copy pixels of each sample of ``t`` from integer source positions.

    ``t`` is ``(N, ..., *spatial)`` (images with channels, masks, weight
    maps); ``sources`` holds one integer tensor per spatial axis, in order,
    each broadcastable to ``(N, *spatial)``: output pixel ``i`` of a sample is
    its input pixel ``(sources[0][i], sources[1][i], ...)``, or ``fill`` when
    that lies outside. One gather over the flattened pixels, so values are
    copied exactly whatever their dtype.
    """
    n, n_spatial = t.shape[0], len(sources)
    spatial = t.shape[t.ndim - n_spatial:]
    lead = t.shape[1:t.ndim - n_spatial]  # channels, if any
    inside, flat = True, 0
    for index, size in zip(sources, spatial, strict=True):
        inside = inside & (index >= 0) & (index < size)
        flat = flat * size + index.clamp(0, size - 1)
    flat = flat.expand(n, *spatial).reshape(n, *([1] * len(lead)), -1)
    moved = t.reshape(n, *lead, -1).gather(-1, flat.expand(n, *lead, -1)).view(t.shape)
    inside = inside.expand(n, *spatial).reshape(n, *([1] * len(lead)), *spatial)
    return _fill_outside(moved, inside, fill)


def _shift(t, shifts, fill):
    """Shift each sample of ``t`` by whole pixels.

    ``shifts`` is ``(N, n_axes)`` for the last ``n_axes`` axes; a pixel comes
    from ``i - shift`` along each axis, and ``fill`` where that is outside.
    """
    n_axes = shifts.shape[1]
    sources = []
    for j in range(n_axes):
        # source index along axis j, shaped (N, 1, ..., L, ..., 1)
        view = [-1 if k == j else 1 for k in range(n_axes)]
        positions = torch.arange(t.shape[j - n_axes], device=t.device).view(view)
        sources.append(positions[None] - shifts[:, j].view(-1, *([1] * n_axes)))
    return _take(t, sources, fill)


def _nearest(t, grid, fill):
    """Resample maps ``t`` (N, *spatial) at ``grid`` by nearest neighbour.

    ``grid`` is :func:`torch.nn.functional.affine_grid`'s output (coordinates
    in ``[-1, 1]``, x first, ``align_corners=False``). Indices are computed
    here rather than by ``grid_sample`` so that labels of any integer dtype
    (and weights) are copied exactly and the outside gets ``fill``.
    """
    n_spatial = grid.shape[-1]
    spatial = t.shape[t.ndim - n_spatial:]
    # grid[..., 0] indexes the last axis (x), grid[..., 1] the one before, ...
    sources = [
        torch.round(((grid[..., j] + 1) * spatial[-1 - j] - 1) / 2).long()
        for j in reversed(range(n_spatial))
    ]
    return _take(t, sources, fill)
