"""Default networks, sized from the data at ``fit``.

``SmallCNN`` serves the classifier and the regressor. It uses GroupNorm
rather than BatchNorm on purpose: BatchNorm mixes the samples of a
mini-batch, so a sample of weight 0 would still move the statistics of the
others, and the weight semantics (weight 0 == left out) would only hold
approximately. GroupNorm normalises each sample on its own.
"""

import math

import torch
from torch import nn

__all__ = ["SmallCNN", "conv_norm_act"]


def _norm(kind, channels):
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "group":
        groups = math.gcd(channels, 8)
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(
        f"norm must be 'group', 'batch' or None, got {kind!r}."
    )


def conv_norm_act(in_channels, out_channels, norm="group"):
    """3x3 convolution, normalisation and ReLU, keeping the spatial size.

    Parameters
    ----------
    in_channels, out_channels : int
    norm : {"group", "batch", None}

    Returns
    -------
    block : nn.Sequential
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm is None),
        _norm(norm, out_channels),
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
    dropout : float, default=0.0
        Dropout before the last layer.
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
        return self.head(self.pool(self.features(x)))


def count_parameters(module):
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


if __name__ == "__main__":  # pragma: no cover
    net = SmallCNN(1, 10, (8, 8))
    print(net, count_parameters(net), net(torch.zeros(2, 1, 8, 8)).shape)
