"""The adapter that runs torchvision.transforms.v2 objects as batch transforms."""

import contextlib
import importlib

import torch

from ._base import Transform


def _tv_tensors():
    try:
        return importlib.import_module("torchvision.tv_tensors")
    except ImportError as exc:
        raise ImportError(
            "TorchvisionTransform needs torchvision (with transforms.v2 and "
            "tv_tensors, version 0.16 or later); it is an optional dependency of "
            "skweight and could not be imported."
        ) from exc


class TorchvisionTransform(Transform):
    """Use a ``torchvision.transforms.v2`` transform as a batch transform.

    Images go to torchvision as ``tv_tensors.Image`` (volumes as
    ``tv_tensors.Video`` whose frames are the depth slices, so spatial
    transforms act in the height-width plane, equally on every slice) and
    masks as ``tv_tensors.Mask``, which torchvision moves with their image by
    nearest neighbour. Per-sample targets are not shown to torchvision and
    come back unchanged. :func:`apply` and :class:`Compose` wrap
    torchvision v2 objects in this class by themselves.

    Parameters
    ----------
    transform : torchvision.transforms.v2.Transform
        Any v2 transform or v2 ``Compose``. Its fill values (e.g.
        ``fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}``) decide what
        comes from outside the image.
    per_sample : bool, default=True
        True calls the transform once per sample, so each image gets its own
        random parameters as with the other transforms of this module (a
        Python loop over the batch). False calls it once on the whole batch,
        which torchvision transforms with a single draw: every sample is
        transformed alike. Faster, but less varied.

    Notes
    -----
    torchvision draws from torch's global RNG. With a ``generator``, this
    class draws one seed from it and runs the transform with the global
    RNG (CPU, and CUDA on a GPU) seeded by that seed and restored afterwards,
    holding skweight's lock on the global RNG: the result repeats with the
    generator and the caller's random numbers are untouched. Drawing the seed
    is one host synchronisation per batch on a GPU. Without a generator the
    global RNG is used as it is. Per-pixel weight maps cannot be passed
    through torchvision (its fill for them would be the masks' fill).

    Examples
    --------
    With torchvision installed (an optional dependency)::

        from torchvision.transforms import v2

        from skweight import CNNSegmenter
        from skweight.augment import TorchvisionTransform

        flip = TorchvisionTransform(v2.RandomHorizontalFlip())
        segmenter = CNNSegmenter(augment=flip)
    """

    def __init__(self, transform, per_sample=True):
        self.transform = transform
        self.per_sample = per_sample
        self._check_params()

    def _check_params(self):
        if not callable(self.transform):
            raise TypeError(
                f"transform must be a torchvision.transforms.v2 transform; got "
                f"{type(self.transform).__name__}: {self.transform!r}."
            )
        if not isinstance(self.per_sample, bool):
            raise TypeError(
                f"per_sample must be a bool (True or False); got {self.per_sample!r}."
            )
        return {}

    def _run(self, params, X, mask, weight_map, generator):
        tv = _tv_tensors()
        if weight_map is not None:  # apply_weighted refuses this earlier
            raise TypeError("TorchvisionTransform cannot move per-pixel sample weights.")
        volumes = X.ndim == 5
        with self._seeded(generator, X.device):
            if self.per_sample:
                # Sliced before wrapping: indexing a tv_tensor gives a plain tensor.
                pairs = [self._call_tv(tv, X[i], None if mask is None else mask[i], volumes)
                         for i in range(X.shape[0])]
                X = torch.stack([x for x, _ in pairs])
                mask = None if mask is None else torch.stack([m for _, m in pairs])
            else:
                X, mask = self._call_tv(tv, X, mask, volumes)
        return X, mask, None

    @staticmethod
    def _seeded(generator, device):
        if generator is None:
            return contextlib.nullcontext()
        # Imported here: only this adapter touches torch's global RNG.
        from .._seeding import seeded_section

        seed = torch.randint(0, 2**62, (1,), generator=generator, device=device)
        return seeded_section(int(seed.item()), device)

    def _call_tv(self, tv, X, mask, volumes):
        """One torchvision call, on one sample or on the whole batch."""
        # Volumes (..., C, D, H, W) become videos (..., D, C, H, W): their
        # depth slices are the frames.
        images = tv.Video(X.transpose(-4, -3)) if volumes else tv.Image(X)
        if mask is None:
            out_images, out_mask = self.transform(images), None
        else:
            out_images, out_mask = self.transform(images, tv.Mask(mask))
            out_mask = out_mask.as_subclass(torch.Tensor)
        out_images = out_images.as_subclass(torch.Tensor)
        if volumes:
            out_images = out_images.transpose(-4, -3)
        return out_images, out_mask
