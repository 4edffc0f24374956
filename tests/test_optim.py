"""What the optimizer trains, and the decoupled weight decay (skweight._fit.optim)."""

import warnings

import pytest
import torch
from torch import nn

from skweight import CNNClassifier, CNNRegressor
from skweight._fit.optim import decayed_parameters
from skweight.exceptions import PredictionCollapseWarning


class Normed(nn.Module):
    """Conv, GroupNorm and Linear: weights, biases and a normalisation layer."""

    def __init__(self, n_outputs=3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4 * 64, n_outputs)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).flatten(1))


def test_decayed_parameters_are_the_weights_only():
    net = Normed()
    net.conv.bias.requires_grad_(False)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decayed_parameters(net)) == [
        "conv.weight", "fc.weight"]
    net.fc.weight.requires_grad_(False)  # frozen: never decayed
    assert [names[id(p)] for p in decayed_parameters(net)] == ["conv.weight"]


@pytest.fixture(scope="module")
def data(digit_images):
    X, y = digit_images(n_class=3, n=90)
    return X, y


def _fit(data, **params):
    X, y = data
    torch.manual_seed(0)
    start = Normed()
    net = CNNClassifier(start, optimizer=torch.optim.SGD, lr=0.1, batch_size=-1,
                        max_epochs=1, random_state=0, **params)
    before = {n: p.detach().clone() for n, p in start.named_parameters()}
    net.fit(X, y)
    after = {n: p.detach().clone() for n, p in net.module_.named_parameters()}
    return before, after


def test_decoupled_decay_shrinks_weights_before_the_step(data):
    wd = 0.3
    start, plain = _fit(data)
    _, decayed = _fit(data, weight_decay=wd)
    for name, value in plain.items():
        if name in ("conv.weight", "fc.weight"):
            # SGD: p - lr * grad, then minus lr * wd * p (decoupled, at the
            # weights before the step)
            expected = value - 0.1 * wd * start[name]
        else:  # biases and the normalisation layer are left alone
            expected = value
        torch.testing.assert_close(decayed[name], expected, rtol=1e-5, atol=1e-6)


def test_optimizer_weight_decay_keeps_torchs_meaning(data):
    X, y = data
    net = CNNClassifier(Normed, weight_decay=0.01, optimizer__weight_decay=0.05,
                        max_epochs=1, random_state=0).fit(X, y)
    assert {g["weight_decay"] for g in net.optimizer_.param_groups} == {0.05}


def test_the_losss_own_parameters_get_a_group_without_decay(digit_images):
    X, _ = digit_images(n=120)
    y = X.mean(axis=(1, 2, 3)) * 10
    with warnings.catch_warnings():  # one epoch: the predictions barely vary
        warnings.simplefilter("ignore", PredictionCollapseWarning)
        reg = CNNRegressor(criterion="balanced_mse", criterion__sigma_lr=0.05,
                           weight_decay=0.1, max_epochs=1, random_state=0).fit(X, y)
    sigma = reg.criterion_.log_sigma
    group = next(g for g in reg.optimizer_.param_groups
                 if any(p is sigma for p in g["params"]))
    assert group["weight_decay"] == 0.0 and group["lr"] == 0.05
    assert all(not any(p is sigma for p in ps) for _, ps in
               [(None, decayed_parameters(reg.module_))])


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), "0.1"])
def test_bad_weight_decay_is_named(data, bad):
    X, y = data
    with pytest.raises(ValueError, match="weight_decay"):
        CNNClassifier(weight_decay=bad, max_epochs=1).fit(X, y)
