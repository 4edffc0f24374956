"""The training loop: optimizer names, batch hooks and per-batch history."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, GradientNormClipping

from skweight import CNNClassifier
from skweight._fit.loop import OPTIMIZERS, resolve_optimizer


@pytest.fixture(scope="module")
def digits(digit_images):
    return digit_images(n=240)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("SGD", torch.optim.SGD),
                                       ("RMSprop", torch.optim.RMSprop)])
def test_optimizer_by_name(digits, name, cls, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(optimizer=name, max_epochs=1, **tiny_cnn).fit(X, y)
    assert type(clf.optimizer_) is cls
    assert clf.optimizer == name  # the parameter is kept as given
    by_class = CNNClassifier(optimizer=cls, max_epochs=1, **tiny_cnn).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), by_class.predict_proba(X))


def test_lbfgs_by_name_trains(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(optimizer="lbfgs", lr=0.5, batch_size=-1, max_epochs=3,
                        **tiny_cnn).fit(X, y)
    losses = clf.history[:, "train_loss"]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("bad, error, match", [
    ("adamm", ValueError, r"optimizer='adamm' is not a known optimizer name"),
    (3, TypeError, "optimizer must be a torch.optim.Optimizer class"),
])
def test_bad_optimizer_is_named(digits, bad, error, match, tiny_cnn):
    X, y = digits
    with pytest.raises(error, match=match):
        CNNClassifier(optimizer=bad, **tiny_cnn).fit(X, y)
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


def test_listening_callbacks_hear_every_batch_and_history_is_the_same(digits, tiny_cnn):
    X, y = digits
    common = dict(batch_size=50, max_epochs=2, train_split=0.25, **tiny_cnn)
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


def test_epoch_losses_are_what_skorchs_passthrough_scoring_records(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(batch_size=50, max_epochs=4, train_split=0.25, lr=0.05,
                        **tiny_cnn).fit(X, y)
    assert [name for name, _ in clf.callbacks_][:3] == [
        "epoch_timer", "train_loss", "valid_loss"]
    best = {"train_loss": np.inf, "valid_loss": np.inf}
    for row in clf.history:
        for key, size in (("train_loss", "train_batch_size"),
                          ("valid_loss", "valid_batch_size")):
            # skorch's PassthroughScoring.get_avg_score, by hand
            pairs = [(b[key], b[size]) for b in row["batches"] if key in b]
            expected = np.average([v for v, _ in pairs], weights=[n for _, n in pairs])
            assert row[key] == pytest.approx(expected, rel=1e-12)
            assert row[key + "_best"] == (expected < best[key])
            best[key] = min(best[key], expected)
    # without validation data there is no valid_loss, and no error
    alone = CNNClassifier(max_epochs=1, **tiny_cnn).fit(X, y)
    assert "valid_loss" not in alone.history[-1]
    assert alone.history[-1, "train_loss_best"]


def test_gradient_clipping_callback_acts(digits, tiny_cnn):
    X, y = digits
    plain = CNNClassifier(max_epochs=1, lr=0.1, **tiny_cnn).fit(X, y)
    clipped = CNNClassifier(max_epochs=1, lr=0.1, **tiny_cnn,
                            callbacks=[GradientNormClipping(1e-3)]).fit(X, y)
    assert np.abs(plain.predict_proba(X) - clipped.predict_proba(X)).max() > 1e-3


# -- augmentation of the training batches --------------------------------------


class Spy:
    """An augmentation that records what it is given and changes nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, X, y):
        self.calls.append((X.shape, None if y is None else y.clone()))
        return X, y


def test_identity_augmentation_trains_the_same_model(digits, tiny_cnn):
    from skweight.augment import RandomFlip

    X, y = digits
    w = np.random.default_rng(0).uniform(0.5, 2, len(y))
    plain = CNNClassifier(max_epochs=2, batch_size=32, **tiny_cnn).fit(X, y,
                                                                     sample_weight=w)
    same = CNNClassifier(max_epochs=2, batch_size=32, augment=RandomFlip(p=0.0),
                         **tiny_cnn).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(plain.predict_proba(X), same.predict_proba(X))
    flipped = CNNClassifier(max_epochs=2, batch_size=32, augment=RandomFlip(p=0.5),
                            **tiny_cnn).fit(X, y, sample_weight=w)
    assert np.abs(plain.predict_proba(X) - flipped.predict_proba(X)).max() > 1e-3


def test_augmentation_is_seeded_and_only_for_training_batches(digits, tiny_cnn):
    from skweight.augment import Compose, GaussianNoise, RandomFlip

    X, y = digits
    aug = Compose([RandomFlip(axes=(-1, -2)), GaussianNoise(0.1)])
    a = CNNClassifier(max_epochs=2, augment=aug, train_split=0.25, **tiny_cnn).fit(X, y)
    b = CNNClassifier(max_epochs=2, augment=aug, train_split=0.25, **tiny_cnn).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.history[:, "valid_loss"] == b.history[:, "valid_loss"]
    spy = Spy()
    clf = CNNClassifier(max_epochs=2, batch_size=60, augment=spy, train_split=0.25,
                        **tiny_cnn).fit(X, y)
    # 180 training rows in 3 batches per epoch; the 60 validation rows never
    assert len(spy.calls) == 2 * 3
    assert sum(shape[0] for shape, _ in spy.calls) == 2 * 180
    clf.predict_proba(X)
    assert len(spy.calls) == 6  # nor at prediction


def test_augmentation_moves_masks_and_ignores_pixels_from_outside():
    from skweight import CNNSegmenter
    from skweight.augment import RandomShift
    from skweight.datasets import make_disk_scenes

    X, masks = make_disk_scenes(24, image_size=16, square_size=(5, 7), n_disks=(1, 2),
                                noise=0.0, random_state=0)
    seen = []

    class Check:
        def __call__(self, X, y, *, sample_weight, generator):
            Xs, ys, ws = RandomShift(max_shift=3, fill_label=99)(
                X, y, sample_weight=sample_weight, generator=generator)
            seen.append((Xs, ys, ws))
            return Xs, ys, ws

    seg = CNNSegmenter(module__channels=(4, 8), max_epochs=1, random_state=0,
                       augment=Check()).fit(X, masks)
    assert seen
    for Xs, ys, ws in seen:
        inside = ws > 0
        # noise-free scenes: the image is the foreground mask, moved together
        assert torch.equal((Xs[:, 0] > 0.5)[inside], (ys > 0)[inside])
        assert not inside.all()  # some pixels came from outside, weight 0
    assert np.isfinite(seg.history[-1, "train_loss"])


def test_augment_parameters_are_nested_and_grid_searchable(digits, tiny_cnn):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from skweight.augment import RandomFlip

    X, y = digits
    clf = CNNClassifier(max_epochs=1, augment=RandomFlip(), **tiny_cnn)
    assert clf.get_params()["augment__p"] == 0.5
    clf.set_params(augment__p=0.2)
    assert clf.augment.p == 0.2 and clone(clf).augment.p == 0.2
    search = GridSearchCV(clf, {"augment__p": [0.0, 1.0]}, cv=2).fit(X, y)
    assert search.best_params_["augment__p"] in (0.0, 1.0)
    with pytest.raises(TypeError, match="augment must be None or a callable"):
        CNNClassifier(augment=3, **tiny_cnn).fit(X, y)


def test_prediction_calls_a_subclass_evaluation_step_for_every_batch(digits, tiny_cnn):
    X, y = digits

    class Counting(CNNClassifier):
        def evaluation_step(self, batch, training=False):
            self.__dict__["steps"] = self.__dict__.get("steps", 0) + 1
            return super().evaluation_step(batch, training) * 0  # uniform proba

    clf = Counting(max_epochs=1, batch_size=100, train_split=None, **tiny_cnn).fit(X, y)
    lean = CNNClassifier(max_epochs=1, batch_size=100, train_split=None,
                         **tiny_cnn).fit(X, y)
    clf.__dict__["steps"] = 0
    proba = clf.predict_proba(X)
    assert clf.__dict__["steps"] == 3  # 240 rows in batches of 100
    np.testing.assert_allclose(proba, 0.1, atol=1e-6)
    # without an override, prediction takes the lean path to the same outputs
    proba = lean.predict_proba(X)
    with torch.no_grad():
        expected = torch.softmax(lean.module_.eval()(torch.as_tensor(X)), 1).numpy()
    np.testing.assert_allclose(proba, expected, atol=1e-6)


def test_prediction_of_an_unfitted_estimator_is_refused_before_any_batch(digits, tiny_cnn):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CNNClassifier(**tiny_cnn).predict_proba(digits[0])
