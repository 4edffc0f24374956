"""The training loop: optimizer names, batch hooks and per-batch history."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch.callbacks import Callback, GradientNormClipping

from skweight import CNNClassifier
from skweight._training import OPTIMIZERS, resolve_optimizer

TINY = dict(module__channels=(4,), module__hidden_units=16, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).reshape(-1, 1, 8, 8).astype(np.float32)[:240], y[:240]


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("SGD", torch.optim.SGD),
                                       ("RMSprop", torch.optim.RMSprop)])
def test_optimizer_by_name(digits, name, cls):
    X, y = digits
    clf = CNNClassifier(optimizer=name, max_epochs=1, **TINY).fit(X, y)
    assert type(clf.optimizer_) is cls
    assert clf.optimizer == name  # the parameter is kept as given
    by_class = CNNClassifier(optimizer=cls, max_epochs=1, **TINY).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), by_class.predict_proba(X))


def test_lbfgs_by_name_trains(digits):
    X, y = digits
    clf = CNNClassifier(optimizer="lbfgs", lr=0.5, batch_size=-1, max_epochs=3,
                        **TINY).fit(X, y)
    losses = clf.history[:, "train_loss"]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("bad, error, match", [
    ("adamm", ValueError, r"optimizer='adamm' is not a known optimizer name"),
    (3, TypeError, "optimizer must be a torch.optim.Optimizer class"),
])
def test_bad_optimizer_is_named(digits, bad, error, match):
    X, y = digits
    with pytest.raises(error, match=match):
        CNNClassifier(optimizer=bad, **TINY).fit(X, y)
    with pytest.raises(error, match=match):
        resolve_optimizer(bad)
    assert all(issubclass(c, torch.optim.Optimizer) for c in OPTIMIZERS.values())


class Counter(Callback):
    def initialize(self):
        self.begin = self.end = self.grads = 0
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        self.begin += 1
        # the batch record of this step exists while the hook runs
        assert net.history[-1, "batches", -1] == {}

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        self.end += 1
        X, y = batch
        assert X.ndim == 4 and y.ndim == 1

    def on_grad_computed(self, net, named_parameters, **kwargs):
        self.grads += 1
        assert all(p.grad is not None for _, p in named_parameters)


def test_listening_callbacks_hear_every_batch_and_history_is_the_same(digits):
    X, y = digits
    common = dict(batch_size=50, max_epochs=2, train_split=0.25, **TINY)
    quiet = CNNClassifier(**common).fit(X, y)
    counter = Counter()
    loud = CNNClassifier(callbacks=[counter], **common).fit(X, y)
    # 180 training rows in batches of 50 (4) and 60 validation rows (2)
    assert counter.begin == counter.end == 2 * (4 + 2)
    assert counter.grads == 2 * 4
    for key in ("batches", "train_loss", "valid_loss", "train_batch_count",
                "valid_batch_count"):
        assert quiet.history[:, key] == loud.history[:, key]
    sizes = [b.get("train_batch_size") for b in quiet.history[-1, "batches"]]
    assert sizes == [50, 50, 50, 30, None, None]
    np.testing.assert_array_equal(quiet.predict_proba(X), loud.predict_proba(X))


def test_gradient_clipping_callback_acts(digits):
    X, y = digits
    plain = CNNClassifier(max_epochs=1, lr=0.1, **TINY).fit(X, y)
    clipped = CNNClassifier(max_epochs=1, lr=0.1, **TINY,
                            callbacks=[GradientNormClipping(1e-3)]).fit(X, y)
    assert np.abs(plain.predict_proba(X) - clipped.predict_proba(X)).max() > 1e-3
