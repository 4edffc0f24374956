"""Starting from a pretrained network (skweight._fit.pretrained and its use in fit).

The network a user passes as ``module=`` is a starting point: never trained
itself, the start of every fit, clone and search fold. Its head is replaced
when the classes differ, its first convolution adapted to the images'
channels, parts of it frozen (BatchNorm statistics included) and released
later, at a rate of their own; the decoupled long-tail recipes act on its
head.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from skorch.callbacks import Callback
from torch import nn

from skweight import CNNClassifier, CNNRegressor, CNNSegmenter
from skweight._fit.pretrained import (
    adapt_input_channels,
    find_head,
    frozen_parameters,
    tau_normalize,
)


class Backbone(nn.Module):
    """Conv + BatchNorm features and a linear head: a small pretrained-style network."""

    def __init__(self, in_channels=1, n_outputs=5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, n_outputs)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def distance(a, b):
    return sum(float((a[k].double() - b[k].double()).norm()) for k in a
               if a[k].dtype.is_floating_point)


@pytest.fixture(scope="module")
def transfer(digit_images):
    """A backbone pretrained on digits 0-4; digits 5-9 to fine-tune on, 9 rare."""
    X, y = digit_images(shuffle_rng=np.random.default_rng(0))
    first = y < 5
    torch.manual_seed(0)
    pre = CNNClassifier(Backbone(), max_epochs=3, random_state=0).fit(X[first], y[first])
    rest = ~first & ((y != 9) | (np.arange(len(y)) % 8 == 0))
    return pre.module_, X[rest][:300], y[rest][:300]


def test_the_callers_module_is_a_starting_point_never_trained(transfer):
    backbone, X, y = transfer
    before = state(backbone)
    clf = CNNClassifier(module=backbone, max_epochs=2, random_state=0).fit(X, y)
    assert clf.module_ is not backbone
    assert distance(state(backbone), before) == 0
    assert distance(state(clf.module_), before) > 0
    # a second fit starts from the pretrained weights again: the same model
    again = clf.fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X),
                                  CNNClassifier(module=backbone, max_epochs=2,
                                                random_state=0).fit(X, y).predict_proba(X))


def test_clones_and_search_folds_start_from_the_pretrained_weights(transfer):
    backbone, X, y = transfer
    pretrained = state(backbone)
    distances = []

    class Spy(Callback):
        # (a closure, so that cloned callbacks report to the same list)
        def on_train_begin(self, net, **kwargs):
            distances.append(distance(state(net.module_), pretrained))

    clf = CNNClassifier(module=backbone, max_epochs=1, random_state=0,
                        callbacks=[Spy()]).fit(X, y)
    # a fitted estimator's clone, each fold of cross_validate and of a search,
    # and the search's refit: all from the pretrained weights, none from the
    # weights fitted on all the data
    cross_validate(clone(clf), X, y, cv=KFold(3))
    GridSearchCV(clf, {"lr": [1e-3, 3e-3]}, cv=KFold(2)).fit(X, y)
    assert len(distances) == 1 + 3 + 2 * 2 + 1
    assert max(distances) == 0.0
    assert distance(state(clf.module_), pretrained) > 0


def test_an_instance_with_module_settings_is_refused(transfer):
    backbone, X, y = transfer
    with pytest.raises(ValueError, match=r"module is an instance \(Backbone\) and "
                                         r"\['module__in_channels'\] are set"):
        CNNClassifier(module=backbone, module__in_channels=1, max_epochs=1).fit(X, y)


def test_head_is_replaced_when_the_classes_differ_seeded(transfer, digit_images):
    backbone, _, _ = transfer
    X, y = digit_images(n=200)
    y3 = y % 3  # three classes: the 5-output head must go
    a = CNNClassifier(module=backbone, max_epochs=1, random_state=0).fit(X, y3)
    b = CNNClassifier(module=backbone, max_epochs=1, random_state=0).fit(X, y3)
    assert a.head_ == "fc" and a.module_.fc.out_features == 3
    torch.testing.assert_close(a.module_.fc.weight, b.module_.fc.weight)
    # the rest of the network starts from the pretrained weights
    with pytest.raises(ValueError, match=r"output of shape \(64, 5\)"):
        CNNClassifier(module=backbone, head=None, max_epochs=1).fit(X, y3)


def test_head_finding_rules():
    class WithGetClassifier(Backbone):
        def get_classifier(self):
            return self.fc

    assert find_head(WithGetClassifier(), "auto")[0] == "fc"
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 8), nn.ReLU(),
                        nn.Linear(8, 2))
    assert find_head(seq, "auto")[0] == "4"
    convs = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1))
    assert find_head(convs, "auto", spatial=True)[0] == "1"
    # a classifier's head is never guessed among feature convolutions
    with pytest.raises(ValueError, match="found no nn.Linear in the network"):
        find_head(convs, "auto")

    class Headless(Backbone):
        def get_classifier(self):
            return nn.Identity()

    with pytest.raises(ValueError, match=r"get_classifier\(\) is a Identity"):
        find_head(Headless(), "auto")
    with pytest.raises(ValueError, match="head='classifier' is not a submodule"):
        find_head(seq, "classifier")
    with pytest.raises(ValueError, match="head='3' is a ReLU"):
        find_head(seq, "3")


class Snapshots(Callback):
    """The module's state at the end of every epoch, in ``seen``."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, net, **kwargs):
        self.seen.append(state(net.module_))


def test_freezing_keeps_weights_and_batchnorm_statistics_then_releases_them(transfer):
    backbone, X, y = transfer
    pretrained = state(backbone)
    snapshot = Snapshots()
    seen = snapshot.seen  # one entry per epoch

    clf = CNNClassifier(module=backbone, freeze="backbone", unfreeze_from_epoch=3,
                        max_epochs=4, random_state=0, callbacks=[snapshot])
    clf.fit(X, y)
    frozen = [k for k in pretrained if not k.startswith("fc.")]
    for epoch in (0, 1):  # epochs 1 and 2: the backbone (BN statistics included) kept
        for k in frozen:
            torch.testing.assert_close(seen[epoch][k], pretrained[k])
        assert not torch.equal(seen[epoch]["fc.weight"], pretrained["fc.weight"])
    for k in ("conv1.weight", "bn1.running_mean", "bn1.running_var"):
        assert not torch.equal(seen[3][k], pretrained[k])
    # after the fit nothing stays frozen in module_
    assert all(p.requires_grad for p in clf.module_.parameters())


def test_frozen_parameters_get_no_update_and_no_weight_decay(transfer):
    backbone, X, y = transfer
    clf = CNNClassifier(module=backbone, freeze=["conv1.*", "bn1.*"], weight_decay=0.5,
                        optimizer="sgd", optimizer__momentum=0.9, max_epochs=2,
                        random_state=0).fit(X, y)
    after = state(clf.module_)
    for k in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_mean"):
        torch.testing.assert_close(after[k], state(backbone)[k])
    assert not torch.equal(after["conv2.weight"], state(backbone)["conv2.weight"])


def test_backbone_learning_rate(transfer):
    backbone, X, y = transfer
    clf = CNNClassifier(module=backbone, backbone_lr=1e-5, lr=1e-2, max_epochs=1,
                        random_state=0).fit(X, y)
    rates = {}
    for group in clf.optimizer_.param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    named = dict(clf.module_.named_parameters())
    assert rates[id(named["fc.weight"])] == 1e-2
    assert rates[id(named["conv1.weight"])] == 1e-5


def test_one_channel_images_into_a_three_channel_network_equal_the_repeat(transfer):
    torch.manual_seed(0)
    rgb = Backbone(in_channels=3)
    grey = copy.deepcopy(rgb)
    note = adapt_input_channels(grey, 1)
    assert note.startswith("conv1: 3 -> 1 input channel(s)")
    x = torch.rand(4, 1, 8, 8)
    rgb.eval(), grey.eval()
    torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-6, rtol=1e-6)
    # and the reverse: RGB images into a grey network see the channels' mean
    back = copy.deepcopy(grey)
    adapt_input_channels(back, 3)
    x3 = torch.rand(4, 3, 8, 8)
    back.eval()
    torch.testing.assert_close(back(x3), grey(x3.mean(1, keepdim=True)), atol=1e-6,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="2 channel.*takes 1; only 1 <-> 3"):
        adapt_input_channels(copy.deepcopy(grey), 2)
    # through the estimator
    _, X, y = transfer
    clf = CNNClassifier(module=rgb, max_epochs=1, random_state=0).fit(X, y)
    assert clf.input_adapted_.startswith("conv1: 3 -> 1")
    assert rgb.conv1.in_channels == 3


def test_input_mean_and_std_are_used_at_fit_and_prediction_alike(transfer):
    _, X, y = transfer
    m, s = 0.3, 0.2
    a = CNNClassifier(input_mean=[m], input_std=[s], max_epochs=2, random_state=0,
                      module__channels=(4,)).fit(X, y)
    b = CNNClassifier(max_epochs=2, random_state=0, module__channels=(4,)).fit(
        (X - m) / s, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba((X - m) / s),
                               atol=1e-5)
    X8 = np.round(X * 255).astype(np.uint8)  # after the integer scaling
    c = CNNClassifier(input_mean=[m], input_std=[s], max_epochs=1, random_state=0,
                      module__channels=(4,)).fit(X8, y)
    d = CNNClassifier(max_epochs=1, random_state=0, module__channels=(4,)).fit(
        (X8.astype(np.float32) / 255 - m) / s, y)
    np.testing.assert_allclose(c.predict_proba(X8),
                               d.predict_proba((X8.astype(np.float32) / 255 - m) / s),
                               atol=1e-5)


@pytest.mark.parametrize("params, exc, match", [
    ({"head": "classifier"}, ValueError, "head='classifier' is not a submodule"),
    ({"head": 3}, TypeError, "head must be 'auto', None or the name"),
    ({"freeze": ["layer9.*"]}, ValueError, "freeze pattern 'layer9.*' matches no"),
    ({"freeze": "everything"}, ValueError, "freeze must be None, 'backbone'"),
    ({"unfreeze_from_epoch": 2}, ValueError, "unfreezes what freeze keeps"),
    ({"freeze": "backbone", "unfreeze_from_epoch": 0}, ValueError,
     "unfreeze_from_epoch must be None or an int >= 1"),
    ({"backbone_lr": -1e-3}, ValueError, "backbone_lr must be None or a positive"),
    ({"backbone_lr": 1e-3, "head": None}, ValueError, "no head to tell apart"),
    ({"input_mean": [0.1, 0.2]}, ValueError, "input_mean has 2 value.*1 channel"),
    ({"input_std": [0.0]}, ValueError, "input_std must hold finite numbers other than 0"),
    ({"decoupled": "crt"}, ValueError, "set reweight_from_epoch"),
    ({"decoupled": "tau_norm"}, ValueError, "set train_split"),
    ({"decoupled": "cRT"}, ValueError, "decoupled must be None or one of"),
])
def test_bad_pretrained_settings_are_named(transfer, params, exc, match):
    backbone, X, y = transfer
    with pytest.raises(exc, match=match):
        CNNClassifier(module=backbone, max_epochs=1, **params).fit(X, y)


def test_decoupled_stage_without_balance_warns(transfer):
    backbone, X, y = transfer
    with pytest.warns(UserWarning, match="with neither, that stage trains on the same"):
        CNNClassifier(module=backbone, decoupled="crt", reweight_from_epoch=2,
                      max_epochs=2).fit(X, y)


def test_unfreezing_beyond_max_epochs_warns(transfer):
    backbone, X, y = transfer
    with pytest.warns(UserWarning, match="beyond max_epochs=1"):
        CNNClassifier(module=backbone, freeze="backbone", unfreeze_from_epoch=5,
                      max_epochs=1).fit(X, y)


def test_frozen_parameter_names():
    net = Backbone()
    assert frozen_parameters(net, None, "fc") == []
    assert frozen_parameters(net, "backbone", "fc") == [
        "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight",
        "conv2.bias"]
    assert frozen_parameters(net, ["*.bias"], "fc") == [
        "conv1.bias", "bn1.bias", "conv2.bias", "fc.bias"]


# -- decoupled training for the long tail ---------------------------------------------


def test_crt_retrains_a_fresh_head_alone_with_balanced_sampling(transfer):
    backbone, X, y = transfer
    snapshot = Snapshots()
    seen = snapshot.seen  # one entry per epoch

    clf = CNNClassifier(module=backbone, decoupled="crt", reweight_from_epoch=3,
                        sampler="balanced", max_epochs=4, random_state=0,
                        callbacks=[snapshot]).fit(X, y)
    # stage 1 (epochs 1-2) trains everything; stage 2 only the head
    assert not torch.equal(seen[1]["conv1.weight"], state(backbone)["conv1.weight"])
    for k in seen[1]:
        if not k.startswith("fc."):
            torch.testing.assert_close(seen[3][k], seen[1][k])
    assert not torch.equal(seen[3]["fc.weight"], seen[1]["fc.weight"])
    assert all(p.requires_grad for p in clf.module_.parameters())


def test_lws_learns_one_scale_per_class_and_folds_it_into_the_head(transfer):
    backbone, X, y = transfer
    snapshot = Snapshots()
    seen = snapshot.seen  # one entry per epoch

    clf = CNNClassifier(module=backbone, decoupled="lws", reweight_from_epoch=2,
                        class_weight="balanced", max_epochs=3, random_state=0,
                        callbacks=[snapshot]).fit(X, y)
    before, after = seen[0], state(clf.module_)
    for k in before:
        if not k.startswith("fc."):
            torch.testing.assert_close(after[k], before[k])
    # each class's row is its stage-1 row times one factor (bias alike)
    ratio = after["fc.weight"] / before["fc.weight"]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(after["fc.bias"], before["fc.bias"] * ratio[:, 0],
                               rtol=1e-4, atol=1e-6)
    assert not hasattr(clf.module_.fc, "lws")
    assert len(clf.optimizer_.param_groups) == 1


@pytest.mark.parametrize("decoupled, extra", [
    ("crt", {"reweight_from_epoch": 2, "sampler": "balanced"}),
    ("lws", {"reweight_from_epoch": 2, "class_weight": "balanced"}),
    ("tau_norm", {"train_split": 0.25}),
])
def test_decoupled_recipes_with_the_default_network(transfer, decoupled, extra):
    _, X, y = transfer
    clf = CNNClassifier(decoupled=decoupled, max_epochs=3, random_state=0,
                        module__channels=(4,), **extra).fit(X, y)
    assert clf.head_ == "head.4" and clf.score(X, y) > 0.2


def test_tau_norm_is_tuned_on_the_validation_split(transfer):
    backbone, X, y = transfer
    plain = CNNClassifier(module=backbone, train_split=0.25, max_epochs=2,
                          random_state=0).fit(X, y)
    clf = CNNClassifier(module=backbone, decoupled="tau_norm", train_split=0.25,
                        max_epochs=2, random_state=0).fit(X, y)
    assert 0 <= clf.tau_ <= 2
    torch.testing.assert_close(clf.module_.fc.weight,
                               tau_normalize(plain.module_.fc.weight, clf.tau_))
    norms = tau_normalize(torch.tensor([[3.0, 4.0], [0.0, 2.0]]), 1.0).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(2))


# -- the regressor and the segmenter on the same code -------------------------------------


def test_regressor_replaces_a_classification_head(transfer):
    backbone, X, y = transfer
    target = X.mean(axis=(1, 2, 3))
    reg = CNNRegressor(module=backbone, freeze="backbone", max_epochs=2,
                       random_state=0).fit(X, target)
    assert reg.module_.fc.out_features == 1
    torch.testing.assert_close(reg.module_.conv1.weight, backbone.conv1.weight)


def test_segmenter_with_a_pretrained_unet_encoder_frozen(tiny_unet):
    from skweight.datasets import make_disk_scenes

    X, y = make_disk_scenes(40, image_size=16, square_size=6, random_state=0)
    pre = CNNSegmenter(**tiny_unet).fit(X, y)
    binary = (y > 0).astype(int)  # another task: 2 classes instead of 3
    seg = CNNSegmenter(module=pre.module_, freeze="backbone", backbone_lr=1e-4,
                       max_epochs=2, random_state=0).fit(X, binary)
    assert seg.head_ == "head" and seg.module_.head.out_channels == 2
    for name, param in seg.module_.named_parameters():
        original = dict(pre.module_.named_parameters())[name]
        if name.startswith("down."):
            torch.testing.assert_close(param, original)
        elif name.startswith("up."):
            assert not torch.equal(param, original)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert seg.predict(X).shape == binary.shape
