"""Seeded, batch-wise data augmentation that runs where the batch lives.

The transforms here act on a whole mini-batch at once, on its device (the
GPU when training there), and are meant for the estimators' ``augment``
parameter, which applies them to training batches only. Every transform is
a callable::

    X, y = transform(X, y=None, *, generator=None)

Conventions shared by all of them:

- ``X`` is a float tensor of images ``(N, C, H, W)`` or volumes
  ``(N, C, D, H, W)``.
- ``y`` is None, per-sample targets or label masks, told apart by shape
  (:func:`is_mask`): ``y`` is a mask when ``y.ndim >= 2`` and
  ``y.shape[1:] == X.shape[2:]``, i.e. ``(N, H, W)`` or ``(N, D, H, W)``.
  Masks must hold integers and move jointly with their images, by nearest
  neighbour: a label is never interpolated, so a mask only ever contains
  the labels it had, plus ``fill_label`` where pixels come from outside the
  image; pixels labelled ``ignore_index`` stay ignored. Per-sample targets
  ``(N,)`` or ``(N, T)`` (classification, regression) come back unchanged.
- Randomness comes only from ``generator``, a :class:`torch.Generator` on
  ``X``'s device (None draws from torch's global RNG for that device). Each
  sample gets its own decisions (flip or not, angle, shift, ...), and a
  transform draws the same number of random numbers for batches of the same
  shape, whatever its settings and the values in the batch: a seeded
  generator repeats exactly, and changing one transform's ``p`` does not
  reshuffle the draws of the next one. CPU and CUDA generators produce
  different streams: the same seed gives the same augmentation on the same
  kind of device.
- A transform never reorders, drops or adds samples and never modifies its
  inputs in place: it returns new tensors on ``X``'s device with the input
  dtypes (per-sample targets are returned as they are). The estimator relies
  on this to keep per-sample weights aligned.
- Per-pixel weight maps ``(N, H, W)`` / ``(N, D, H, W)`` must move with
  their pixels too. Every transform here therefore also accepts a
  ``sample_weight`` keyword and then returns ``(X, y, sample_weight)``: a
  weight map is moved like a mask, with weight 0 where pixels come from
  outside the image; per-sample weights ``(N,)`` come back unchanged. See
  :func:`apply_weighted`.

A user's own callable works too, in the plain form ``(X, y) -> (X, y)``:
:func:`apply` passes ``generator`` only to callables whose signature takes
it, and wraps ``torchvision.transforms.v2`` objects in
:class:`TorchvisionTransform` (torchvision is optional and imported only
there).

The transforms are plain picklable objects whose constructor arguments are
public attributes, with scikit-learn's ``get_params``/``set_params``, so
that estimators holding them can be cloned, pickled and grid-searched.
Parameters are checked at construction and again at every call (the checks
are a few microseconds of Python, without any device work).
"""

# Where the code lives. The modules are private: skweight.augment is the one
# public path, so the code can move between them without breaking imports.
#   _checks.py      checks of the batch, targets, weights and parameters (is_mask)
#   _kernels.py     device-side kernels: per-sample selection, gathers, shifts
#   _base.py        the Transform base class: calling convention and parameters
#   _apply.py       calling transforms and user callables (apply, apply_weighted)
#   _spatial.py     geometric transforms (RandomFlip, RandomRot90, RandomShift,
#                   RandomAffine) and their base _Geometric
#   _intensity.py   intensity transforms (BrightnessContrast, GaussianNoise)
#   _compose.py     Compose
#   _torchvision.py TorchvisionTransform, the adapter for torchvision.transforms.v2

from ._apply import apply, apply_weighted
from ._base import Transform
from ._checks import is_mask
from ._compose import Compose
from ._intensity import BrightnessContrast, GaussianNoise
from ._spatial import RandomAffine, RandomFlip, RandomRot90, RandomShift
from ._torchvision import TorchvisionTransform

__all__ = [
    "BrightnessContrast",
    "Compose",
    "GaussianNoise",
    "RandomAffine",
    "RandomFlip",
    "RandomRot90",
    "RandomShift",
    "TorchvisionTransform",
    "Transform",
    "apply",
    "apply_weighted",
    "is_mask",
]
