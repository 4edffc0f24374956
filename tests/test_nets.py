"""Default networks: output shapes for awkward image sizes, parameters,
and per-image independence (what exact sample weighting relies on)."""

import pytest
import torch
from torch import nn

from skweight.nets import SmallCNN, UNet, conv_norm_act, count_parameters

SIZES = [(8, 8), (1, 16), (30, 30), (33, 47), (1, 1)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [(4,), (4, 8)])
def test_small_cnn_output_shape(size, channels):
    net = SmallCNN(in_channels=2, n_outputs=5, image_size=size, channels=channels)
    out = net(torch.randn(3, 2, *size))
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [(4,), (4, 8), (4, 8, 16)])
def test_unet_output_shape(size, channels):
    net = UNet(in_channels=2, n_classes=3, channels=channels)
    out = net(torch.randn(3, 2, *size))
    assert out.shape == (3, 3, *size)
    assert torch.isfinite(out).all()


def test_unet_is_fully_convolutional_and_trains():
    torch.manual_seed(0)
    net = UNet(1, 2, channels=(4, 8))
    assert net(torch.randn(1, 1, 17, 9)).shape == (1, 2, 17, 9)
    x = torch.randn(4, 1, 12, 12)
    target = (x[:, 0] > 0).long()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # every parameter takes part in the forward pass
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("make", [
    lambda: SmallCNN(1, 4, (16, 16), channels=(4, 8)),
    lambda: UNet(1, 4, channels=(4, 8)),
])
def test_images_do_not_interact_within_a_batch(make):
    # GroupNorm normalises each image on its own: an image's output must not
    # depend on its batch mates, or weight 0 would not equal leaving it out.
    torch.manual_seed(0)
    net = make().train()
    x = torch.randn(5, 1, 16, 16)
    alone = net(x[:1])
    together = net(x)[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def test_batch_norm_option_mixes_images():
    torch.manual_seed(0)
    net = UNet(1, 2, channels=(4, 8), norm="batch").train()
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    x = torch.randn(5, 1, 16, 16)
    assert not torch.allclose(net(x[:2])[:1], net(x)[:1], atol=1e-4)


def test_unet_widths_and_parameter_count():
    small, large = UNet(1, 3, channels=(4, 8)), UNet(1, 3, channels=(16, 32, 64))
    assert count_parameters(small) < count_parameters(large)
    assert [m.out_channels for m in large.up] == [32, 16]
    assert large.head.out_channels == 3
    assert large.multiple == 4
    norm = UNet(1, 3, channels=(8,), norm=None)
    assert not any(isinstance(m, nn.GroupNorm) for m in norm.modules())


def test_conv_norm_act_keeps_size():
    block = conv_norm_act(3, 6)
    assert block(torch.randn(2, 3, 5, 7)).shape == (2, 6, 5, 7)
    assert isinstance(block[1], nn.GroupNorm)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=()), "channels must be a non-empty sequence"),
    (dict(channels=(4, 0)), "channels must be a non-empty sequence"),
    (dict(channels=(4.5,)), "channels must be a non-empty sequence"),
    (dict(norm="layer"), "norm must be 'group', 'batch' or None"),
    (dict(in_channels=0), "in_channels must be a positive int"),
    (dict(n_classes=True), "n_classes must be a positive int"),
])
def test_unet_parameter_validation(kwargs, match):
    args = {"in_channels": 1, "n_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        UNet(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=[]), "channels must be a non-empty sequence"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(norm="instance"), "norm must be 'group', 'batch' or None"),
])
def test_small_cnn_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallCNN(1, 2, (8, 8), **kwargs)
