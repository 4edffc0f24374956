"""The pretrained path on real architectures (``make test-vision``).

torchvision's resnet18 and efficientnet_b0 and timm's resnet18, with their
random initial weights (nothing is downloaded): the head each one has
(``fc``, ``classifier.1``, timm's ``get_classifier()``) is found and replaced
when the classes differ, the caller's network is never trained, ``freeze``
keeps the backbone and its BatchNorm statistics, ``unfreeze_from_epoch``
releases them, ``backbone_lr`` gives the backbone a rate of its own, grey
images into the RGB stem equal the grey image repeated (and timm's own
``in_chans=1`` network), ImageNet's statistics are applied at fit and
prediction alike, and every clone and fold starts from the given weights.

These need torchvision and timm, which the main environment (a CPU torch)
does not have: ``make test-vision`` runs them in ``.venv-vision``, and
elsewhere the module is skipped. The networks are small enough on 32x32
images for fits of about a second on one CPU thread.
"""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_validate
from skorch.callbacks import Callback
from torch import nn

from skweight import CNNClassifier, CNNRegressor

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.vision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: name -> (builder(num_classes, in_chans), the head's name, the stem convolution's name)
ARCHITECTURES = {
    "tv_resnet18": (
        lambda n, c: _rgb_only(torchvision.models.resnet18(weights=None, num_classes=n), c),
        "fc", "conv1"),
    "tv_efficientnet_b0": (
        lambda n, c: _rgb_only(
            torchvision.models.efficientnet_b0(weights=None, num_classes=n), c),
        "classifier.1", "features.0.0"),
    "timm_resnet18": (
        lambda n, c: timm.create_model("resnet18", pretrained=False, num_classes=n,
                                       in_chans=c),
        "fc", "conv1"),
}
ARCHS = list(ARCHITECTURES)


def _rgb_only(net, in_chans):
    assert in_chans == 3, "torchvision's networks are made for RGB images"
    return net


def _pretend_pretrained(net, seed):
    """Random BatchNorm scales, and running statistics those of the network's
    activations on images (its initial ones, 0 and 1, would let the signal fade
    out through the eval-mode BatchNorms of a deep network): what the tests see
    through it then depends on the input, and "unchanged" and "equal" say
    something."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [layer.momentum for layer in norms]
    with torch.no_grad():
        for layer in norms:
            layer.weight.uniform_(0.5, 1.5, generator=gen)
            layer.bias.copy_(0.1 * torch.randn(layer.num_features, generator=gen))
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the batches below
        net.train()
        in_chans = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
        for _ in range(2):  # colour images, and grey ones (the same in each channel)
            rgb = torch.rand(8, in_chans, 32, 32, generator=gen)
            grey = torch.rand(8, 1, 32, 32, generator=gen).expand(-1, in_chans, -1, -1)
            net(torch.cat([rgb, grey]))
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return net.eval()


_NETS = {}


def pretrained(arch, n_classes=1000, in_chans=3):
    """The (shared, never mutated) "pretrained" network: seeded random weights."""
    key = (arch, n_classes, in_chans)
    if key not in _NETS:
        torch.manual_seed(0)
        _NETS[key] = _pretend_pretrained(ARCHITECTURES[arch][0](n_classes, in_chans),
                                         seed=1)
    return _NETS[key]


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def distance(a, b):
    assert a.keys() == b.keys()
    return sum(float((a[k].double() - b[k].double()).norm()) for k in a
               if a[k].dtype.is_floating_point)


def images(n=16, channels=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, channels, size, size), dtype=np.float32)
    y = np.arange(n) % 3
    return X, y


class AtTrainBegin(Callback):
    """Keeps a copy of the network as the fit starts, after its adaptation."""

    def __init__(self, seen):
        self.seen = seen

    def on_train_begin(self, net, **kwargs):
        self.seen.append(copy.deepcopy(net.module_).eval())


class AtEpochEnd(Callback):
    def __init__(self, seen):
        self.seen = seen

    def on_epoch_end(self, net, **kwargs):
        self.seen.append(state(net.module_))


def fit_settings(**params):
    """One epoch of one batch of plain SGD: the optimizer's step on 11M parameters
    is most of a fit's time."""
    return {"max_epochs": 1, "batch_size": 16, "optimizer": "sgd", "lr": 1e-2,
            "random_state": 0, **params}


@pytest.mark.parametrize("arch", ARCHS)
def test_head_is_found_and_replaced_and_the_callers_network_is_kept(arch):
    net, head, _ = pretrained(arch), *ARCHITECTURES[arch][1:]
    before = state(net)
    X, y = images()
    clf = CNNClassifier(module=net, **fit_settings()).fit(X, y)
    assert clf.head_ == head
    assert net.get_submodule(head).out_features == 1000  # the caller's: untouched
    new = clf.module_.get_submodule(head)
    assert isinstance(new, nn.Linear) and new.out_features == 3
    assert new.in_features == net.get_submodule(head).in_features
    assert clf.input_adapted_ is None
    # the caller's network is a starting point, never trained itself
    after = state(net)
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert distance({k: v for k, v in state(clf.module_).items()
                     if not k.startswith(head + ".")},
                    {k: v for k, v in before.items() if not k.startswith(head + ".")}) > 0
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert clf.predict(X).shape == (16,)
    if arch.startswith("timm"):  # found through get_classifier(), still it after
        assert clf.module_.get_classifier() is new


@pytest.mark.parametrize("arch", ARCHS)
def test_a_head_of_the_right_size_is_kept(arch):
    net, head = pretrained(arch, n_classes=3), ARCHITECTURES[arch][1]
    seen = []
    X, y = images()
    clf = CNNClassifier(module=net, callbacks=[AtTrainBegin(seen)],
                        **fit_settings()).fit(X, y)
    assert clf.head_ == head
    assert distance(state(seen[0]), state(net)) == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_freezing_the_backbone_keeps_it_and_its_batchnorm_statistics(arch):
    net, head = pretrained(arch), ARCHITECTURES[arch][1]
    before, start = state(net), []
    X, y = images()
    clf = CNNClassifier(module=net, freeze="backbone",
                        callbacks=[AtTrainBegin(start)],
                        **fit_settings(max_epochs=2)).fit(X, y)
    after = state(clf.module_)
    backbone = [k for k in before if not k.startswith(head + ".")]
    assert any(k.endswith("running_mean") for k in backbone)
    for k in backbone:  # weights, BatchNorm statistics and batch counts alike
        assert torch.equal(after[k], before[k]), k
    # the (new) head learns
    assert not torch.equal(after[head + ".weight"], state(start[0])[head + ".weight"])
    # after the fit nothing stays frozen in module_
    assert all(p.requires_grad for p in clf.module_.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_unfreeze_from_epoch_releases_the_backbone(arch):
    net, head, stem = pretrained(arch), *ARCHITECTURES[arch][1:]
    before = state(net)
    seen, start = [], []
    X, y = images()
    CNNClassifier(module=net, freeze="backbone", unfreeze_from_epoch=2,
                  callbacks=[AtEpochEnd(seen), AtTrainBegin(start)],
                  **fit_settings(max_epochs=2)).fit(X, y)
    backbone = [k for k in before if not k.startswith(head + ".")]
    first_bn = next(k for k in backbone if k.endswith("running_mean"))
    for k in backbone:  # epoch 1: kept
        assert torch.equal(seen[0][k], before[k]), k
    head_at_start = state(start[0])[head + ".weight"]
    assert not torch.equal(seen[0][head + ".weight"], head_at_start)
    # epoch 2: released, the statistics move again
    for k in (stem + ".weight", first_bn, first_bn.replace("mean", "var")):
        assert not torch.equal(seen[1][k], before[k]), k


@pytest.mark.parametrize("arch", ARCHS)
def test_backbone_lr_puts_the_backbone_in_a_group_of_its_own(arch):
    net, head = pretrained(arch), ARCHITECTURES[arch][1]
    X, y = images()
    clf = CNNClassifier(module=net, backbone_lr=1e-5, **fit_settings(lr=1e-3)).fit(X, y)
    rates = {}
    for group in clf.optimizer_.param_groups:
        for p in group["params"]:
            assert id(p) not in rates
            rates[id(p)] = group["lr"]
    named = dict(clf.module_.named_parameters())
    assert rates.keys() == {id(p) for p in named.values()}
    for name, p in named.items():
        expected = 1e-3 if name.startswith(head + ".") else 1e-5
        assert rates[id(p)] == expected, name
    assert {g["lr"] for g in clf.optimizer_.param_groups} == {1e-3, 1e-5}


@pytest.mark.parametrize("arch", ARCHS)
def test_grey_images_into_the_rgb_stem_equal_the_grey_image_repeated(arch):
    net, _, stem = pretrained(arch, n_classes=3), *ARCHITECTURES[arch][1:]
    X, y = images(channels=1)
    seen = []
    clf = CNNClassifier(module=net, callbacks=[AtTrainBegin(seen)],
                        **fit_settings()).fit(X, y)
    assert clf.input_adapted_.startswith(f"{stem}: 3 -> 1 input channel(s)")
    assert net.get_submodule(stem).in_channels == 3  # the caller's: untouched
    adapted = seen[0]
    assert adapted.get_submodule(stem).weight.shape[1] == 1
    assert clf.module_.get_submodule(stem).in_channels == 1
    x = torch.from_numpy(X[:8])
    with torch.no_grad():
        # the stem's outputs, in float32
        torch.testing.assert_close(adapted.get_submodule(stem)(x),
                                   net.get_submodule(stem)(x.repeat(1, 3, 1, 1)),
                                   atol=1e-5, rtol=1e-5)
        # the network's, in float64: float32 alone moves efficientnet_b0's logits
        # by 1e-5 of their scale (float32 against float64 on the same images)
        ours = copy.deepcopy(adapted).double()(x.double())
        repeat = copy.deepcopy(net).double()(x.double().repeat(1, 3, 1, 1))
    torch.testing.assert_close(ours, repeat, atol=1e-5 * float(repeat.abs().max()),
                               rtol=1e-5)
    assert clf.predict_proba(X).shape == (16, 3)


def test_grey_adaptation_equals_timms_in_chans_1():
    from timm.models import adapt_input_conv

    rgb = pretrained("timm_resnet18", n_classes=3)
    # timm's own grey network, with the same weights: its stem adapted by timm
    grey = timm.create_model("resnet18", pretrained=False, num_classes=3, in_chans=1)
    weights = state(rgb)
    weights["conv1.weight"] = adapt_input_conv(1, weights["conv1.weight"])
    grey.load_state_dict(weights)
    grey.eval()
    X, y = images(channels=1)
    seen = []
    CNNClassifier(module=rgb, callbacks=[AtTrainBegin(seen)], **fit_settings()).fit(X, y)
    ours = seen[0]
    torch.testing.assert_close(ours.conv1.weight, grey.conv1.weight, atol=1e-6,
                               rtol=1e-6)
    x = torch.from_numpy(X)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), grey(x), atol=1e-5, rtol=1e-5)
    # and the reverse: RGB images into timm's grey network see the channels' mean
    X3, y3 = images(channels=3)
    seen = []
    clf = CNNClassifier(module=grey, callbacks=[AtTrainBegin(seen)],
                        **fit_settings()).fit(X3, y3)
    assert clf.input_adapted_.startswith("conv1: 1 -> 3 input channel(s)")
    x3 = torch.from_numpy(X3)
    with torch.no_grad():
        torch.testing.assert_close(seen[0](x3), grey(x3.mean(1, keepdim=True)),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_imagenet_statistics_apply_at_fit_and_prediction_alike(arch):
    net = pretrained(arch)
    X, y = images()
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    a = CNNClassifier(module=net, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD,
                      **fit_settings()).fit(X, y)
    b = CNNClassifier(module=net, **fit_settings()).fit((X - mean) / std, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba((X - mean) / std),
                               atol=1e-5)
    # uint8 images: scaled to [0, 1] first, then normalised
    X8 = np.round(X * 255).astype(np.uint8)
    c = CNNClassifier(module=net, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD,
                      **fit_settings()).fit(X8, y)
    Xn = (X8.astype(np.float32) / 255 - mean) / std
    d = CNNClassifier(module=net, **fit_settings()).fit(Xn, y)
    np.testing.assert_allclose(c.predict_proba(X8), d.predict_proba(Xn), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_clones_and_folds_start_from_the_pretrained_weights(arch):
    net = pretrained(arch, n_classes=3)  # the head kept: the whole state compared
    weights = state(net)
    distances = []

    class Spy(Callback):
        # (a closure, so that cloned callbacks report to the same list)
        def on_train_begin(self, net, **kwargs):
            distances.append(distance(state(net.module_), weights))

    X, y = images()
    clf = CNNClassifier(module=net, callbacks=[Spy()], **fit_settings()).fit(X, y)
    assert distance(state(clf.module_), weights) > 0
    clone(clf).fit(X, y)
    cross_validate(clf, X, y, cv=KFold(2, shuffle=True, random_state=0))
    assert len(distances) == 1 + 1 + 2
    assert max(distances) == 0.0
    assert distance(state(net), weights) == 0


# (one epoch of a frozen backbone: predictions about the mean, as the warning says)
@pytest.mark.filterwarnings("ignore::skweight.exceptions.PredictionCollapseWarning")
@pytest.mark.parametrize("arch", ARCHS)
def test_regressor_replaces_the_head_by_one_output(arch):
    net, head = pretrained(arch), ARCHITECTURES[arch][1]
    X, _ = images()
    target = X.mean(axis=(1, 2, 3))
    reg = CNNRegressor(module=net, freeze="backbone", **fit_settings()).fit(X, target)
    assert reg.head_ == head
    assert reg.module_.get_submodule(head).out_features == 1
    assert net.get_submodule(head).out_features == 1000
    assert reg.predict(X).shape == (16,)
    stem = ARCHITECTURES[arch][2]
    torch.testing.assert_close(reg.module_.get_submodule(stem).weight,
                               net.get_submodule(stem).weight)
