"""Default networks, sized from the data at ``fit``.

``SmallCNN`` serves the classifier and the regressor, ``UNet`` the
segmenter. Both use GroupNorm rather than BatchNorm on purpose: BatchNorm
mixes the samples of a mini-batch, so a sample of weight 0 would still move
the statistics of the others, and the weight semantics (weight 0 == left
out) would only hold approximately. GroupNorm normalises each sample on its
own.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SmallCNN", "UNet", "conv_norm_act"]


# The layers of a 2-D and a 3-D network.
_LAYERS = {
    2: (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.BatchNorm2d),
    3: (nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.BatchNorm3d),
}


def _norm(kind, channels, ndim=2):
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "group":
        groups = math.gcd(channels, 8)
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return _LAYERS[ndim][3](channels)
    raise ValueError(
        f"norm must be 'group', 'batch' or None, got {kind!r}."
    )


def conv_norm_act(in_channels, out_channels, norm="group", ndim=2):
    """3x3 (or 3x3x3) convolution, normalisation and ReLU, keeping the size.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    out_channels : int
        Channels of the output (the convolution's filters).
    norm : {"group", "batch", None}, default="group"
        GroupNorm (``gcd(out_channels, 8)`` groups), BatchNorm or no
        normalisation; only without one does the convolution have a bias.
    ndim : {2, 3}, default=2
        Images or volumes.

    Returns
    -------
    block : torch.nn.Sequential
        The convolution, the normalisation and the ReLU, in that order.

    Examples
    --------
    >>> import torch
    >>> from skweight.nets import conv_norm_act
    >>> conv_norm_act(1, 8)(torch.zeros(2, 1, 5, 7)).shape
    torch.Size([2, 8, 5, 7])
    """
    conv = _LAYERS[ndim][0]
    return nn.Sequential(
        conv(in_channels, out_channels, 3, padding=1, bias=norm is None),
        _norm(norm, out_channels, ndim),
        nn.ReLU(inplace=True),
    )


def _check_channels(channels, name="channels"):
    if isinstance(channels, int):
        channels = (channels,)
    channels = tuple(channels)
    if not channels or not all(isinstance(c, int) and c > 0 for c in channels):
        raise ValueError(
            f"{name} must be a non-empty sequence of positive ints, got "
            f"{channels!r}."
        )
    return channels


class SmallCNN(nn.Module):
    """A small convolutional network for image classification or regression.

    Each stage is two 3x3 convolutions with normalisation and ReLU, followed
    by 2x2 max pooling along every axis that is at least 4 pixels long (so
    8x8 digits and 1xF tabular rows work as well as 64x64 images). The
    feature map is then average-pooled to at most ``head_size x head_size``
    cells (keeping coarse positions, which regression of locations needs),
    flattened and passed to a two-layer head.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_outputs : int
        Logits (classes) or regression targets.
    image_size : tuple of int
        ``(H, W)`` of the input images.
    channels : sequence of int, default=(16, 32)
        Width of each stage; its length is the depth.
    hidden_units : int, default=64
        Width of the hidden layer of the head.
    head_size : int, default=4
        Spatial size the features are pooled to before the head.
    norm : {"group", "batch", None}, default="group"
        Normalisation after each convolution (see :func:`conv_norm_act`).
    dropout : float, default=0.0
        Dropout before the last layer.

    Examples
    --------
    >>> import torch
    >>> from skweight.nets import SmallCNN
    >>> SmallCNN(1, 3, image_size=(8, 8))(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_channels, n_outputs, image_size, channels=(16, 32),
                 hidden_units=64, head_size=4, norm="group", dropout=0.0):
        super().__init__()
        channels = _check_channels(channels)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        h, w = image_size
        layers = []
        c_in = in_channels
        for c_out in channels:
            layers += [conv_norm_act(c_in, c_out, norm), conv_norm_act(c_out, c_out, norm)]
            kernel = (2 if h >= 4 else 1, 2 if w >= 4 else 1)
            if kernel != (1, 1):
                layers.append(nn.MaxPool2d(kernel))
                h, w = h // kernel[0], w // kernel[1]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        cells = (min(h, head_size), min(w, head_size))
        self.pool = nn.AdaptiveAvgPool2d(cells)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * cells[0] * cells[1], hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, n_outputs),
        )

    def forward(self, x):
        """Map images ``(N, C, H, W)`` to raw outputs ``(N, n_outputs)``.

        Parameters
        ----------
        x : torch.Tensor of shape (N, C, H, W)
            The images, with ``in_channels`` channels.

        Returns
        -------
        torch.Tensor of shape (N, n_outputs)
            The raw outputs: logits (classes) or regression targets.
        """
        return self.head(self.pool(self.features(x)))


def _check_positive_int(value, name):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


class UNet(nn.Module):
    """A small U-Net for semantic segmentation, for images or volumes of any size.

    The encoder has one stage per entry of ``channels``: two 3x3
    convolutions with normalisation and ReLU, followed (except at the
    bottom) by 2x2 max pooling. The decoder mirrors it: a 2x2 transposed
    convolution doubles the resolution, the encoder's feature map of that
    resolution is concatenated (the skip connection that keeps fine
    detail) and two 3x3 convolutions follow. A 1x1 convolution gives one
    logit per class and pixel.

    Images whose height or width is not a multiple of ``2**(len(channels) -
    1)`` are zero-padded at the bottom and right to the next multiple and
    the logits are cropped back, so the output always has the input's
    ``H x W`` (e.g. 33x47 or 1x16 images). With ``ndim=3`` the same network
    is built from 3-D layers for volumes ``(N, C, D, H, W)`` (Cicek et al.,
    2016), padded and cropped alike along depth.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_classes : int
        Number of classes (logits per pixel).
    channels : sequence of int, default=(12, 24, 48)
        Width of each encoder stage, from full resolution down; the number
        of poolings is ``len(channels) - 1``.
    norm : {"group", "batch", None}, default="group"
        GroupNorm keeps images independent of each other within a batch,
        which exact sample weighting needs (see the module notes).
    ndim : {2, 3}, default=2
        Images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``.

    References
    ----------
    O. Ronneberger, P. Fischer and T. Brox, "U-Net: Convolutional Networks
    for Biomedical Image Segmentation", MICCAI 2015. O. Cicek et al., "3D
    U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation",
    MICCAI 2016.

    Examples
    --------
    >>> import torch
    >>> from skweight.nets import UNet
    >>> UNet(1, 3)(torch.zeros(2, 1, 33, 47)).shape
    torch.Size([2, 3, 33, 47])
    >>> UNet(1, 2, channels=(4, 8), ndim=3)(torch.zeros(1, 1, 5, 8, 9)).shape
    torch.Size([1, 2, 5, 8, 9])
    """

    #: What ``freeze="backbone"`` keeps: the encoder (its parameter names).
    backbone_patterns = ("down.*",)

    def __init__(self, in_channels, n_classes, channels=(12, 24, 48), norm="group",
                 ndim=2):
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(n_classes, "n_classes")
        channels = _check_channels(channels)
        if ndim not in _LAYERS:
            raise ValueError(f"ndim must be 2 (images) or 3 (volumes), got {ndim!r}.")
        conv, up_conv, pool, _ = _LAYERS[ndim]
        _norm(norm, channels[0], ndim)  # validates ``norm`` before any layer is built
        self.ndim = ndim
        self.multiple = 2 ** (len(channels) - 1)
        self.down = nn.ModuleList()
        c_in = in_channels
        for c_out in channels:
            self.down.append(
                nn.Sequential(conv_norm_act(c_in, c_out, norm, ndim),
                              conv_norm_act(c_out, c_out, norm, ndim))
            )
            c_in = c_out
        self.pool = pool(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c_skip in reversed(channels[:-1]):
            self.up.append(up_conv(c_in, c_skip, 2, stride=2))
            self.merge.append(
                nn.Sequential(conv_norm_act(2 * c_skip, c_skip, norm, ndim),
                              conv_norm_act(c_skip, c_skip, norm, ndim))
            )
            c_in = c_skip
        self.head = conv(c_in, n_classes, 1)

    def forward(self, x):
        """Map images or volumes ``x`` to logits of shape ``(N, n_classes, ...)``.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(N, C, H, W)`` or, for a 3-D U-Net, volumes
            ``(N, C, D, H, W)``, of any size.

        Returns
        -------
        torch.Tensor
            The logits, ``(N, n_classes, H, W)`` or ``(N, n_classes, D, H,
            W)``: the spatial size of ``x``.
        """
        size = tuple(x.shape[2:])
        if len(size) != self.ndim:
            takes = "images (N, C, H, W)" if self.ndim == 2 else "volumes (N, C, D, H, W)"
            raise ValueError(
                f"This U-Net takes {takes}, got input of shape {tuple(x.shape)}."
            )
        pads = [-s % self.multiple for s in size]
        if any(pads):
            # F.pad lists the last axis first: (left, right) per axis.
            x = F.pad(x, [v for p in reversed(pads) for v in (0, p)])
        skips = []
        for i, stage in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottom stage feeds the decoder directly
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[(..., *(slice(0, s) for s in size))]


def count_parameters(module):
    """Count the trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
