"""The weighted-training core: weight semantics, seeding, splits, devices.

The exact equivalences of design.md hold for full-batch deterministic
training on a module without batch norm (the default SmallCNN uses
GroupNorm); they are checked here to float32 round-off.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from skweight import CNNClassifier, CNNRegressor, CNNSegmenter
from skweight._fit.loop import resolve_device
from skweight.losses import FocalLoss


@pytest.fixture(scope="module")
def digits(digit_images):
    return digit_images(n=240, shuffle_rng=np.random.default_rng(0))


@pytest.fixture
def full_batch(tiny_cnn):
    def make(**kw):
        return CNNClassifier(
            **{**tiny_cnn, "batch_size": -1, "max_epochs": 8, "lr": 1e-2, **kw})

    return make


def params_of(est):
    return [p.detach().clone() for p in est.module_.parameters()]


def assert_same_model(a, b, X, atol=2e-5):
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=atol)


def test_scaling_all_weights_changes_nothing(digits, full_batch):
    X, y = digits
    w = np.random.default_rng(1).uniform(0.1, 3, len(y))
    ref = full_batch().fit(X, y, sample_weight=w)
    for scale in (1e-200, 1e3):
        other = full_batch().fit(X, y, sample_weight=w * scale)
        assert_same_model(ref, other, X, atol=1e-6)


def test_zero_weight_equals_leaving_the_sample_out(digits, full_batch):
    X, y = digits
    w = np.ones(len(y))
    w[::3] = 0.0
    keep = w > 0
    a = full_batch().fit(X, y, sample_weight=w)
    b = full_batch().fit(X[keep], y[keep])
    assert_same_model(a, b, X)


def test_integer_weight_equals_repeating_the_sample(digits, full_batch):
    X, y = digits
    k = np.random.default_rng(2).integers(1, 4, len(y))
    a = full_batch().fit(X, y, sample_weight=k)
    b = full_batch().fit(np.repeat(X, k, axis=0), np.repeat(y, k))
    assert_same_model(a, b, X)


def test_weights_are_not_ignored(digits, full_batch):
    # The equivalences above would also hold if weights were dropped; here
    # they must change the model.
    X, y = digits
    w = np.where(y == 3, 50.0, 1.0)
    a = full_batch().fit(X, y)
    b = full_batch().fit(X, y, sample_weight=w)
    assert np.abs(a.predict_proba(X) - b.predict_proba(X)).max() > 1e-2
    assert b.predict_proba(X)[:, 3].mean() > a.predict_proba(X)[:, 3].mean()


def test_same_random_state_same_model_with_minibatches(digits, tiny_cnn):
    X, y = digits
    make = lambda: CNNClassifier(batch_size=16, max_epochs=3, **tiny_cnn)  # noqa: E731
    a, b = make().fit(X, y), make().fit(X, y)
    for pa, pb in zip(params_of(a), params_of(b), strict=True):
        assert torch.equal(pa, pb)
    c = CNNClassifier(batch_size=16, max_epochs=3,
                      **{**tiny_cnn, "random_state": 1}).fit(X, y)
    assert not all(torch.equal(pa, pc) for pa, pc in
                   zip(params_of(a), params_of(c), strict=True))


def test_seeding_does_not_touch_global_rng(digits, tiny_cnn):
    X, y = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    CNNClassifier(max_epochs=1, **tiny_cnn).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_minibatch_loss_is_unbiased_weighted_mean(digits, tiny_cnn):
    # With weights normalised over the training set, the batch-size weighted
    # mean of the batch losses is the full weighted objective.
    X, y = digits
    w = np.random.default_rng(3).uniform(0, 2, len(y))
    clf = CNNClassifier(batch_size=50, max_epochs=1, lr=1e-9, **tiny_cnn)
    clf.fit(X, y, sample_weight=w)
    logits = clf.forward(X).double()
    lp = torch.log_softmax(logits, 1)[torch.arange(len(y)), torch.as_tensor(
        np.searchsorted(clf.classes_, y))]
    full = float((-(lp.numpy()) * w).sum() / w.sum())
    batches = clf.history[-1, "batches"]
    sizes = np.array([b["train_batch_size"] for b in batches])
    losses = np.array([b["train_loss"] for b in batches])
    assert clf.history[-1, "train_loss"] == pytest.approx(
        np.sum(sizes * losses) / sizes.sum())
    # lr ~ 0: the epoch's loss is the objective at the initial weights.
    assert clf.history[-1, "train_loss"] == pytest.approx(full, rel=1e-4)


def test_validation_loss_is_weighted_and_split_is_stratified(digits, tiny_cnn):
    X, y = digits
    w = np.random.default_rng(4).uniform(0, 2, len(y))
    clf = CNNClassifier(max_epochs=2, train_split=0.25, **tiny_cnn)
    clf.fit(X, y, sample_weight=w)
    valid_loss = clf.history[-1, "valid_loss"]
    # Recompute the weighted validation loss from the same seeded split.
    from sklearn.model_selection import train_test_split

    _, vidx = train_test_split(np.arange(len(y)), test_size=0.25,
                               stratify=np.searchsorted(clf.classes_, y),
                               random_state=clf._seeds_.split)
    logp = np.log(clf.predict_proba(X[vidx]))
    li = -logp[np.arange(len(vidx)), np.searchsorted(clf.classes_, y[vidx])]
    assert valid_loss == pytest.approx((li * w[vidx]).sum() / w[vidx].sum(), rel=1e-4)
    counts = np.bincount(y[vidx], minlength=10)
    assert counts.max() - counts.min() <= 3  # stratified


def test_skorch_validsplit_and_early_stopping_work(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(max_epochs=30, train_split=ValidSplit(4, stratified=True),
                        callbacks=[EarlyStopping(patience=1, threshold=0.5)],
                        **tiny_cnn)
    clf.fit(X, y, sample_weight=np.ones(len(y)))
    assert len(clf.history) < 30
    assert np.isfinite(clf.history[-1, "valid_loss"])


def test_class_weight_acts_as_focal_alpha_once(digits, tiny_cnn):
    X, y = digits
    cw = {k: float(k + 1) for k in range(10)}
    clf = CNNClassifier(criterion="focal", class_weight=cw, batch_size=-1,
                        max_epochs=1, lr=1e-9, **tiny_cnn).fit(X, y)
    alpha = torch.tensor([cw[k] for k in range(10)])
    logits = clf.forward(X)
    target = torch.as_tensor(y)
    ref = FocalLoss(alpha=alpha, reduction="sum")(logits, target)
    # Normalised weights: alpha_y / mean(alpha_y) over the training set.
    expected = float(ref) / float(alpha[target].sum())
    assert clf.history[-1, "train_loss"] == pytest.approx(expected, rel=1e-4)


def test_class_weight_with_criterion_alpha_is_refused(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(criterion="focal", class_weight="balanced",
                        criterion__alpha=np.ones(10), max_epochs=1, **tiny_cnn)
    with pytest.raises(ValueError, match="applied twice"):
        clf.fit(X, y)


def test_user_torch_loss_gets_weights_through_reduction_none(digits, full_batch):
    X, y = digits
    crit = torch.nn.CrossEntropyLoss()  # reduction="mean" on the user's object
    w = np.where(y == 0, 0.0, 1.0)
    clf = full_batch(criterion=crit).fit(X, y, sample_weight=w)
    ref = full_batch().fit(X, y, sample_weight=w)
    assert crit.reduction == "mean"  # not mutated
    assert_same_model(clf, ref, X)


def test_scalar_loss_with_weights_is_refused(digits, tiny_cnn):
    X, y = digits

    class ScalarLoss(torch.nn.Module):
        def forward(self, logits, target):
            return torch.nn.functional.cross_entropy(logits, target)

    CNNClassifier(criterion=ScalarLoss, max_epochs=1, **tiny_cnn).fit(X, y)
    with pytest.raises(ValueError, match="cannot apply sample or class weights"):
        CNNClassifier(criterion=ScalarLoss, max_epochs=1, **tiny_cnn).fit(
            X, y, sample_weight=np.ones(len(y)))


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_device_auto_param_survives_fit_and_pickle(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(max_epochs=1, **tiny_cnn).fit(X, y)
    assert clf.device == "auto"
    assert clf.get_params()["device"] == "auto"
    again = pickle.loads(pickle.dumps(clf))
    assert again.device == "auto" and again.device_ == clf.device_
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X))


def test_warm_start_and_partial_fit_continue_training(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(max_epochs=2, warm_start=True, **tiny_cnn).fit(X, y)
    first = params_of(clf)
    clf.fit(X, y)
    assert len(clf.history) == 4
    assert not all(torch.equal(a, b) for a, b in zip(first, params_of(clf), strict=True))
    pf = CNNClassifier(max_epochs=1, **tiny_cnn)
    pf.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))
    np.testing.assert_array_equal(pf.classes_, np.arange(10))
    pf.partial_fit(X, y)
    assert len(pf.history) == 2
    with pytest.raises(ValueError, match="labels not seen in fit"):
        pf.partial_fit(X[:5], np.array([0, 1, 2, 3, 99]))


def test_criterion_and_hyperparameter_validation(digits, tiny_cnn):
    X, y = digits
    bad = [
        (dict(criterion="hinge"), ValueError, "criterion='hinge' is not a known loss"),
        (dict(criterion=3), TypeError, "criterion must be"),
        (dict(precision="16"), ValueError, "precision must be one of"),
        (dict(batch_size=0), ValueError, "batch_size must be"),
        (dict(max_epochs=-1), ValueError, "max_epochs"),
        (dict(lr=0.0), ValueError, "lr must be"),
        (dict(train_split=1.5), ValueError, "train_split must be"),
        (dict(random_state="x"), ValueError, "random_state"),
        (dict(data_device_fraction=2.0), ValueError, "data_device_fraction"),
        (dict(channels_last="yes"), TypeError, "channels_last"),
        (dict(input_shape=(1, 0, 8)), ValueError, "input_shape"),
    ]
    for params, exc, match in bad:
        with pytest.raises(exc, match=match):
            CNNClassifier(**{**tiny_cnn, **params}).fit(X, y)


def test_precision_and_channels_last_are_ignored_on_cpu(digits, tiny_cnn):
    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    X, y = digits
    a = CNNClassifier(max_epochs=1, precision="bf16", channels_last=True,
                      **tiny_cnn).fit(X, y)
    b = CNNClassifier(max_epochs=1, **tiny_cnn).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X))


# -- persistence: skorch's idioms with device="auto" -------------------------


def test_save_and_load_params_with_device_auto(digits, tmp_path, tiny_cnn):
    X, y = digits
    labels = np.array(list("abcdefghij"))[y]
    clf = CNNClassifier(max_epochs=2, **tiny_cnn).fit(X, labels)
    files = dict(f_params=tmp_path / "p.pt", f_optimizer=tmp_path / "o.pt",
                 f_history=tmp_path / "h.json")
    clf.save_params(**files)
    # A fresh estimator with the default network: load_params restores what
    # fit learned (classes, input shape) and builds the network from it.
    fresh = CNNClassifier(max_epochs=2, **tiny_cnn)
    fresh.load_params(**files)
    assert fresh.device == "auto"
    np.testing.assert_array_equal(fresh.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(fresh.classes_, clf.classes_)
    assert len(fresh.history) == 2
    # The weights file stays a plain state_dict for torch users.
    state = torch.load(tmp_path / "p.pt", weights_only=True)
    clf.module_.load_state_dict(state)


def test_user_module_restored_by_initialize_and_load_params(digits, tmp_path,
                                                             linear_module):
    X, y = digits
    labels = y * 10 + 5  # classes the network's outputs cannot know by themselves
    clf = CNNClassifier(linear_module, max_epochs=3, random_state=0).fit(X, labels)
    clf.save_params(f_params=tmp_path / "p.pt")
    fresh = CNNClassifier(linear_module).initialize()
    fresh.load_params(f_params=tmp_path / "p.pt")
    np.testing.assert_array_equal(fresh.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(fresh.predict(X), clf.predict(X))
    assert fresh.n_features_in_ == 64 and fresh.input_shape_ == (1, 8, 8)


def test_default_module_cannot_initialize_before_fit():
    with pytest.raises(ValueError, match="call fit"):
        CNNClassifier().initialize()


def test_checkpoint_load_best_with_device_auto(digits, tmp_path, tiny_cnn):
    from skorch.callbacks import Checkpoint

    X, y = digits
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor="valid_loss_best",
                            load_best=True)
    clf = CNNClassifier(max_epochs=4, train_split=0.25, callbacks=[checkpoint],
                        **tiny_cnn).fit(X, y)
    assert clf.device == "auto"
    best = int(np.argmin(clf.history[:, "valid_loss"]))
    reloaded = CNNClassifier(max_epochs=1, **tiny_cnn)
    reloaded.load_params(checkpoint=checkpoint)
    np.testing.assert_array_equal(reloaded.predict_proba(X), clf.predict_proba(X))
    assert clf.history[best, "valid_loss_best"]


# -- continuing training on data that do not fit the network ----------------


def test_warm_start_and_partial_fit_refuse_new_classes_and_channels(digits, tiny_cnn):
    X, y = digits
    clf = CNNClassifier(warm_start=True, max_epochs=1, **tiny_cnn).fit(X[y < 5], y[y < 5])
    before = params_of(clf)
    with pytest.raises(ValueError, match=r"labels not seen in fit: \[5, 6, 7, 8, 9\].*"
                                         r"trained further"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match=r"3 channel\(s\), but the estimator was fitted "
                                         r"with 1"):
        clf.fit(np.repeat(X, 3, axis=1), y)
    with pytest.raises(ValueError, match=r"3 channel\(s\)"):
        clf.partial_fit(np.repeat(X, 3, axis=1), y)
    # nothing was re-initialised behind the user's back
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(clf), strict=True))


# -- weights of any finite scale ----------------------------------------------


@pytest.mark.parametrize("class_weight", [None, "balanced"])
@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e150, 1e300])
def test_extreme_weight_scales_train_like_weights_near_one(digits, class_weight, scale,
                                                            full_batch):
    X, y = digits
    w = np.random.default_rng(1).uniform(0.1, 0.5, len(y))
    ref = full_batch(max_epochs=4, class_weight=class_weight).fit(X, y, sample_weight=w)
    other = full_batch(max_epochs=4, class_weight=class_weight).fit(
        X, y, sample_weight=w * scale)
    assert_same_model(ref, other, X, atol=1e-6)
    if class_weight is not None:
        np.testing.assert_allclose(other.class_weight_, ref.class_weight_, rtol=1e-12)


# -- repr ------------------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor, CNNSegmenter])
def test_repr_shows_what_was_set_as_scikit_learn_does(Estimator):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    name = Estimator.__name__
    assert repr(Estimator()) == f"{name}()"
    assert repr(Estimator(lr=0.02, module__channels=(4,))) == (
        f"{name}(lr=0.02, module__channels=(4,))")
    # skorch's own settings show only when set, even to their default object
    assert repr(Estimator(iterator_train=torch.utils.data.DataLoader)) == f"{name}()"
    assert "iterator_valid__num_workers=2" in repr(
        Estimator(iterator_valid__num_workers=2))
    pipe = repr(make_pipeline(FunctionTransformer(), Estimator(max_epochs=3)))
    assert f"{name}(max_epochs=3)" in pipe and "dataset" not in pipe
    html = Estimator(max_epochs=3)._repr_html_()
    assert "max_epochs" in html and "iterator_train" not in html
    # set_params and clone keep what repr shows
    est = Estimator().set_params(lr=0.5)
    assert repr(est) == f"{name}(lr=0.5)" and repr(clone(est)) == repr(est)
