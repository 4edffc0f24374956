"""Label targets: prior-corrected probabilities and deferred re-weighting."""

import numpy as np
import pytest
import torch
from scipy.special import expit

from skweight import CNNClassifier, CNNSegmenter
from skweight.datasets import make_disk_scenes


@pytest.fixture(scope="module")
def digits(digit_images):
    return digit_images(n=300)


def gaussian_classes(n, p1, seed):
    """Two unit-variance Gaussian classes in 2-D, means (+-1, 0): the true
    posterior is logistic, p(1|x) = expit(2 x0 + log(p1 / (1 - p1)))."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < p1).astype(int)
    X = rng.normal(size=(n, 2))
    X[:, 0] += np.where(y == 1, 1.0, -1.0)
    return X.astype(np.float32), y


def true_posterior(X, p1):
    return expit(2 * X[:, 0] + np.log(p1 / (1 - p1)))


@pytest.fixture
def fit_logistic(linear_module):
    """``fit_logistic(X, y, **params)``: a logistic regression on 2 features."""

    def fit(X, y, **params):
        return CNNClassifier(linear_module, module__n_features=2, module__n_outputs=2,
                             batch_size=-1, max_epochs=300, lr=0.05, random_state=0,
                             **params).fit(X, y)

    return fit


def test_prior_correction_recovers_a_known_posterior(fit_logistic):
    # A logistic model is exact for these classes, so what is left after
    # training is the estimation error of two coefficients from 4000
    # samples (~0.01 on the probabilities) plus optimisation error.
    X, y = gaussian_classes(4000, 0.1, seed=0)
    Xt, _ = gaussian_classes(2000, 0.5, seed=1)
    truth_train = true_posterior(Xt, 0.1)
    truth_balanced = true_posterior(Xt, 0.5)
    plain = fit_logistic(X, y)
    balanced = fit_logistic(X, y, class_weight="balanced")
    err = lambda p, q: np.abs(p - q).mean()  # noqa: E731
    assert err(plain.predict_proba(Xt)[:, 1], truth_train) < 0.015
    # Class weights move the probabilities to the balanced population ...
    assert err(balanced.predict_proba(Xt)[:, 1], truth_balanced) < 0.015
    assert err(balanced.predict_proba(Xt)[:, 1], truth_train) > 0.1
    # ... and class_prior maps them to any population, exactly by Bayes.
    balanced.set_params(class_prior="train")
    np.testing.assert_allclose(balanced.train_prior_, np.bincount(y) / len(y))
    assert err(balanced.predict_proba(Xt)[:, 1], truth_train) < 0.015
    balanced.set_params(class_prior=[3, 1])  # counts work
    assert err(balanced.predict_proba(Xt)[:, 1], true_posterior(Xt, 0.25)) < 0.015
    assert np.array_equal(balanced.predict(Xt),
                          balanced.classes_[balanced.predict_proba(Xt).argmax(1)])


def test_prior_correction_is_the_bayes_formula_for_known_class_weights(digits, tiny_cnn):
    X, y = digits
    cw = {k: float(1 + k) for k in range(10)}
    w = np.random.default_rng(0).uniform(0.5, 2, len(y))
    clf = CNNClassifier(class_weight=cw, max_epochs=2, **tiny_cnn).fit(X, y,
                                                                     sample_weight=w)
    seen = np.bincount(y, weights=w * np.array([cw[k] for k in y]), minlength=10)
    # (the loss sees the weights in float32: rounding at 1e-7)
    np.testing.assert_allclose(clf.effective_prior_, seen / seen.sum(), rtol=1e-6)
    q = clf.predict_proba(X)
    clf.set_params(class_prior="train")
    train = np.bincount(y, minlength=10) / len(y)
    expected = q * train / clf.effective_prior_
    expected /= expected.sum(1, keepdims=True)
    # the Bayes formula in float64, to the float32 of predict_proba
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X),
                               rtol=1e-6)


@pytest.mark.parametrize("prior, match", [
    ([1.0, -1.0], "non-negative"), ([np.nan, 1.0], "finite"), ([0.0, 0.0], "not all 0"),
    ("balanced", "None, 'train' or an array"), (0.5, "None, 'train' or an array"),
])
def test_bad_class_prior_is_named(digits, prior, match, tiny_cnn):
    X, y = digits
    with pytest.raises(ValueError, match=f"class_prior.*{match}|{match}"):
        CNNClassifier(class_prior=prior, max_epochs=1, **tiny_cnn).fit(X, y)
    clf = CNNClassifier(max_epochs=1, **tiny_cnn).fit(X, y)
    with pytest.raises(ValueError, match=r"class_prior has shape \(3,\), but there are 10"):
        clf.set_params(class_prior=[1, 2, 3]).predict_proba(X)


class Recording(CNNClassifier):
    """Keeps the labels and weights of every training batch, per epoch."""

    def on_epoch_begin(self, net, **kwargs):
        super().on_epoch_begin(net, **kwargs)
        self.__dict__.setdefault("seen_", []).append([])

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if training:
            y, w = y_true if isinstance(y_true, (tuple, list)) else (y_true, None)
            self.seen_[-1].append((y.clone(), None if w is None else w.clone()))
        return super().get_loss(y_pred, y_true, X=X, training=training)


def test_deferred_reweighting_switches_class_weights_on(digits, tiny_cnn):
    X, y = digits
    keep = (y >= 5) | (np.arange(len(y)) % 4 == 0)  # classes 0-4 rare
    X, y = X[keep], y[keep]
    clf = Recording(class_weight="balanced", reweight_from_epoch=3, max_epochs=4,
                    **tiny_cnn).fit(X, y)
    for epoch, batches in enumerate(clf.seen_, start=1):
        labels = torch.cat([b[0] for b in batches]).numpy()
        weights = None if batches[0][1] is None else torch.cat([b[1] for b in batches])
        if epoch < 3:
            assert weights is None  # no class weights yet
        else:
            per_class = [float(weights[labels == k].mean()) for k in range(10)]
            assert min(per_class[:5]) > 2 * max(per_class[5:])
    # the same switch with a sampler: every row once, then balanced draws
    clf = Recording(sampler="balanced", reweight_from_epoch=2, max_epochs=2,
                    **tiny_cnn).fit(X, y)
    first = np.bincount(torch.cat([b[0] for b in clf.seen_[0]]).numpy(), minlength=10)
    second = np.bincount(torch.cat([b[0] for b in clf.seen_[1]]).numpy(), minlength=10)
    np.testing.assert_array_equal(first, np.bincount(y, minlength=10))
    assert second.max() - second.min() <= 1
    # the probabilities are calibrated for the prior of the last phase
    np.testing.assert_allclose(clf.effective_prior_, np.full(10, 0.1), atol=0.01)


def test_reweight_from_epoch_beyond_the_fit_and_validation(digits, tiny_cnn):
    X, y = digits
    a = CNNClassifier(class_weight="balanced", reweight_from_epoch=10, max_epochs=2,
                      **tiny_cnn).fit(X, y)
    b = CNNClassifier(max_epochs=2, **tiny_cnn).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="reweight_from_epoch must be None or an int >= 1"):
        CNNClassifier(reweight_from_epoch=0, **tiny_cnn).fit(X, y)


def test_segmenter_prior_and_deferred_reweighting_per_pixel():
    X, masks = make_disk_scenes(16, image_size=16, square_size=(5, 7), n_disks=(1, 2),
                                noise=0.3, random_state=0)
    seg = CNNSegmenter(module__channels=(4, 8), max_epochs=2, class_weight="balanced",
                       reweight_from_epoch=2, random_state=0).fit(X, masks)
    freq = np.bincount(masks.ravel(), minlength=3) / masks.size
    np.testing.assert_allclose(seg.train_prior_, freq)
    np.testing.assert_allclose(seg.effective_prior_, np.full(3, 1 / 3), rtol=1e-6)
    q = seg.predict_proba(X)
    seg.set_params(class_prior="train")
    p = seg.predict_proba(X)
    expected = q * (freq / seg.effective_prior_)[None, :, None, None]
    np.testing.assert_allclose(p, expected / expected.sum(1, keepdims=True), rtol=1e-6)


# -- logit adjustment ---------------------------------------------------------


def test_logit_adjustment_learns_the_prior_the_loss_sees(digits, tiny_cnn):
    X, y = digits
    w = np.random.default_rng(1).uniform(0.5, 2, len(y))
    clf = CNNClassifier(criterion="logit_adjusted", max_epochs=1, **tiny_cnn)
    clf.fit(X, y, sample_weight=w)
    seen = np.bincount(y, weights=w, minlength=10)
    np.testing.assert_allclose(clf.criterion_.class_prior.numpy(), seen / seen.sum(),
                               rtol=1e-6)
    # tau = 1: the unadjusted outputs are calibrated for a uniform prior
    np.testing.assert_allclose(clf.effective_prior_, np.full(10, 0.1), rtol=1e-6)
    given = CNNClassifier(criterion="logit_adjusted", criterion__class_prior=np.ones(10),
                          max_epochs=1, **tiny_cnn).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(given.criterion_.class_prior.numpy(), np.full(10, 0.1))


def test_logit_adjustment_with_tau_0_is_cross_entropy(digits, tiny_cnn):
    X, y = digits
    kw = dict(max_epochs=3, batch_size=32, **tiny_cnn)
    a = CNNClassifier(criterion="logit_adjusted", criterion__tau=0.0, **kw).fit(X, y)
    b = CNNClassifier(criterion="cross_entropy", **kw).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("balancing", [{"class_weight": "balanced"},
                                       {"sampler": "balanced"}])
def test_logit_adjustment_after_balancing_is_plain_cross_entropy(digits, balancing,
                                                                  tiny_cnn):
    # A uniform prior shifts every logit alike: no double correction.
    X, y = digits
    keep = (y >= 5) | (np.arange(len(y)) % 3 == 0)
    X, y = X[keep], y[keep]
    kw = dict(max_epochs=3, batch_size=32, **tiny_cnn, **balancing)
    a = CNNClassifier(criterion="logit_adjusted", **kw).fit(X, y)
    b = CNNClassifier(criterion="cross_entropy", **kw).fit(X, y)
    assert np.ptp(a.criterion_.class_prior.numpy()) < 0.02
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=2e-3)


def test_deferred_reweighting_updates_the_logit_adjustment_prior(digits, tiny_cnn):
    X, y = digits
    keep = (y >= 5) | (np.arange(len(y)) % 3 == 0)
    X, y = X[keep], y[keep]
    clf = CNNClassifier(criterion="logit_adjusted", class_weight="balanced",
                        reweight_from_epoch=2, max_epochs=1, **tiny_cnn).fit(X, y)
    freq = np.bincount(y, minlength=10) / len(y)
    np.testing.assert_allclose(clf.criterion_.class_prior.numpy(), freq, rtol=1e-6)
    clf.set_params(max_epochs=2).fit(X, y)
    np.testing.assert_allclose(clf.criterion_.class_prior.numpy(), np.full(10, 0.1),
                               rtol=1e-5)


def test_segmenter_logit_adjustment_per_pixel():
    X, masks = make_disk_scenes(16, image_size=16, square_size=(5, 7), n_disks=(1, 2),
                                noise=0.3, random_state=0)
    seg = CNNSegmenter(criterion="logit_adjusted", module__channels=(4, 8), max_epochs=2,
                       random_state=0).fit(X, masks)
    freq = np.bincount(masks.ravel(), minlength=3) / masks.size
    np.testing.assert_allclose(seg.criterion_.class_prior.numpy(), freq, rtol=1e-6)
    assert np.isfinite(seg.history[-1, "train_loss"])


# -- prior_tau: the strength of the class_prior correction ------------------------


def test_prior_tau_scales_the_bayes_shift(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(class_weight="balanced", max_epochs=2, **tiny_cnn).fit(X, y)
    q = clf.predict_proba(X).astype(np.float64)
    uniform = np.full(10, 0.1)
    for tau in (0.0, 0.5, 1.0, 2.0):
        clf.set_params(class_prior=uniform, prior_tau=tau)
        expected = q * (uniform / clf.effective_prior_) ** tau
        expected /= expected.sum(1, keepdims=True)
        np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-5, atol=1e-7)
    clf.set_params(prior_tau=0.0)
    np.testing.assert_array_equal(clf.predict_proba(X), q.astype(np.float32))


def test_prior_tau_per_label_for_multilabel_y(digits, tiny_cnn):
    X, y = digits
    Y = np.stack([y == 1, y == 2], axis=1).astype(int)
    clf = CNNClassifier(max_epochs=2, **tiny_cnn).fit(X, Y)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    q = clf.predict_proba(X).astype(np.float64)
    target = np.array([0.3, 0.05])
    clf.set_params(class_prior=target, prior_tau=0.5)
    z = logit(q) + 0.5 * (logit(target) - logit(clf.effective_prior_))
    np.testing.assert_allclose(clf.predict_proba(X), 1 / (1 + np.exp(-z)), rtol=1e-4)


@pytest.mark.parametrize("tau", [-0.5, float("inf"), float("nan"), "1", True])
def test_bad_prior_tau_is_named(digits, tau, tiny_cnn):
    X, y = digits
    with pytest.raises(ValueError, match="prior_tau must be a finite number >= 0"):
        CNNClassifier(class_prior="train", prior_tau=tau, max_epochs=1,
                      **tiny_cnn).fit(X, y)


def test_prior_tau_without_class_prior_warns_that_it_does_nothing(digits, tiny_cnn):
    X, y = digits
    with pytest.warns(UserWarning, match="prior_tau=0.5 does nothing without class_prior"):
        CNNClassifier(prior_tau=0.5, max_epochs=1, **tiny_cnn).fit(X, y)
