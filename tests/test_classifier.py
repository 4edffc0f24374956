import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight as sk_compute_class_weight

from skweight import CNNClassifier


@pytest.fixture(scope="module")
def tiny(tiny_cnn):
    return {**tiny_cnn, "max_epochs": 2}


@pytest.fixture(scope="module")
def digits(digit_images):
    # float64 images: the float64 and tensor inputs below are checked on them.
    X, y = digit_images(dtype=np.float64)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def test_default_settings_learn_digits(digits):
    Xtr, Xte, ytr, yte = digits
    clf = CNNClassifier(random_state=0).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.95


def make_shapes(n, size=32, seed=0):
    """Noisy 32x32 scenes of a square, a plus or a ring at random places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    X = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 3, n)
    for i in range(n):
        cy, cx = rng.integers(7, size - 7, 2)
        if y[i] == 0:
            m = (abs(yy - cy) <= 4) & (abs(xx - cx) <= 4)
        elif y[i] == 1:
            m = ((abs(yy - cy) <= 1) & (abs(xx - cx) <= 5)) | (
                (abs(xx - cx) <= 1) & (abs(yy - cy) <= 5))
        else:
            r = np.hypot(yy - cy, xx - cx)
            m = (r >= 3) & (r <= 5)
        X[i, 0][m] += 1.0
    return X, y


def test_default_settings_learn_32x32_scenes():
    X, y = make_shapes(600)
    clf = CNNClassifier(random_state=0, max_epochs=10).fit(X[:450], y[:450])
    assert clf.score(X[450:], y[450:]) > 0.9


def test_string_and_noncontiguous_labels(digits, tiny):
    Xtr, Xte, ytr, yte = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    clf = CNNClassifier(**tiny).fit(Xtr, names[ytr])
    assert set(clf.classes_) == set(names)
    assert clf.predict(Xte).dtype.kind == "U"
    proba = clf.predict_proba(Xte)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)  # float32, as computed
    np.testing.assert_array_equal(clf.predict(Xte), clf.classes_[proba.argmax(1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(Xte)), proba, rtol=1e-6)
    sparse_labels = ytr * 10 + 5
    clf = CNNClassifier(**tiny).fit(Xtr, sparse_labels)
    np.testing.assert_array_equal(clf.classes_, np.arange(10) * 10 + 5)


def test_binary_problem(digits):
    Xtr, Xte, ytr, yte = digits
    mtr, mte = ytr < 2, yte < 2
    clf = CNNClassifier(random_state=0, max_epochs=5).fit(Xtr[mtr], ytr[mtr] == 1)
    assert clf.predict_proba(Xte[mte]).shape == (mte.sum(), 2)
    assert clf.score(Xte[mte], yte[mte] == 1) > 0.95


def test_score_is_weighted_accuracy(digits, tiny):
    Xtr, Xte, ytr, yte = digits
    clf = CNNClassifier(**tiny).fit(Xtr, ytr)
    w = np.random.default_rng(0).uniform(0, 1, len(yte))
    assert clf.score(Xte, yte, sample_weight=w) == pytest.approx(
        accuracy_score(yte, clf.predict(Xte), sample_weight=w))


def test_class_weight_balanced_and_fit_override(digits, tiny):
    Xtr, _, ytr, _ = digits
    clf = CNNClassifier(class_weight="balanced", **tiny).fit(Xtr, ytr)
    ref = sk_compute_class_weight("balanced", classes=np.arange(10), y=ytr)
    np.testing.assert_allclose(clf.class_weight_, ref)
    clf.fit(Xtr, ytr, class_weight={3: 5.0})
    expected = np.ones(10)
    expected[3] = 5.0
    np.testing.assert_array_equal(clf.class_weight_, expected)
    assert clf.class_weight == "balanced"  # the parameter is untouched
    clf.fit(Xtr, ytr)
    np.testing.assert_allclose(clf.class_weight_, ref)
    assert CNNClassifier(**tiny).fit(Xtr, ytr).class_weight_ is None


def test_class_weight_helps_a_rare_class(digits):
    # A class cut to a handful of samples is recalled more often when it is
    # weighted up (fixed budget of epochs; see the demo for the subtlety).
    Xtr, Xte, ytr, yte = digits
    rng = np.random.default_rng(0)
    rare = np.flatnonzero(ytr == 8)
    drop = rng.choice(rare, len(rare) - 5, replace=False)
    keep = np.setdiff1d(np.arange(len(ytr)), drop)
    recalls = {}
    for cw in (None, "balanced"):
        clf = CNNClassifier(class_weight=cw, random_state=0, max_epochs=8)
        clf.fit(Xtr[keep], ytr[keep])
        recalls[cw] = (clf.predict(Xte[yte == 8]) == 8).mean()
    assert recalls["balanced"] > recalls[None] + 0.1


@pytest.mark.parametrize("criterion", ["cross_entropy", "focal"])
def test_uint8_images_and_flattened_input_shape(digits, criterion, tiny):
    Xtr, Xte, ytr, yte = digits
    X8 = (Xtr * 255).astype(np.uint8)
    X8_before = X8.copy()
    flat = CNNClassifier(input_shape=(1, 8, 8), criterion=criterion, **tiny).fit(
        X8.reshape(len(X8), -1), ytr)
    images = CNNClassifier(criterion=criterion, **tiny).fit(X8, ytr)
    np.testing.assert_array_equal(X8, X8_before)
    np.testing.assert_allclose(
        flat.predict_proba(X8.reshape(len(X8), -1)), images.predict_proba(X8), atol=1e-6)
    assert flat.n_features_in_ == 64 and images.n_features_in_ == 64
    assert flat.input_shape_ == (1, 8, 8)


def test_torch_tensor_input_and_float64(digits, tiny):
    Xtr, _, ytr, _ = digits
    a = CNNClassifier(**tiny).fit(torch.as_tensor(Xtr), torch.as_tensor(ytr))
    b = CNNClassifier(**tiny).fit(Xtr.astype(np.float64), ytr)
    np.testing.assert_allclose(a.predict_proba(Xtr[:20]), b.predict_proba(Xtr[:20]),
                               atol=1e-6)


def test_callers_arrays_are_not_modified(digits, tiny):
    Xtr, _, ytr, _ = digits
    X = Xtr.astype(np.float32)
    y = ytr.copy()
    w = np.random.default_rng(0).uniform(0, 2, len(y))
    copies = [X.copy(), y.copy(), w.copy()]
    clf = CNNClassifier(class_weight="balanced", **tiny).fit(X, y, sample_weight=w)
    clf.predict(X)
    clf.score(X, y, sample_weight=w)
    for before, after in zip(copies, (X, y, w), strict=True):
        np.testing.assert_array_equal(before, after)


def test_default_network_is_configurable(digits):
    Xtr, _, ytr, _ = digits
    clf = CNNClassifier(module__channels=(3, 5), module__hidden_units=7,
                        max_epochs=1).fit(Xtr, ytr)
    convs = [m for m in clf.module_.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [3, 3, 5, 5]
    clf.set_params(module__hidden_units=9)
    assert clf.module_.head[1].out_features == 9


def test_user_module_class_and_instance(digits, linear_module):
    Xtr, Xte, ytr, yte = digits

    clf = CNNClassifier(module=linear_module, random_state=0, max_epochs=10, lr=1e-2)
    assert clf.fit(Xtr, ytr).score(Xte, yte) > 0.85
    instance = linear_module()
    before = instance.fc.weight.detach().clone()
    clf = CNNClassifier(module=instance, max_epochs=1).fit(Xtr, ytr)
    # an instance is a starting point: the fit trains a copy of it
    assert clf.module_ is not instance and isinstance(clf.module_, linear_module)
    assert torch.equal(instance.fc.weight, before)
    # clone deep-copies a module instance: a grid search must not train the
    # same object in every fold.
    cloned = clone(clf).module
    assert isinstance(cloned, linear_module) and cloned is not instance


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        CNNClassifier().predict(np.zeros((2, 1, 8, 8)))


@pytest.mark.parametrize(
    "X_mod, y_mod, fit_kw, exc, match",
    [
        (lambda X: np.where(X > 0.5, np.nan, X), None, {}, ValueError, "NaN"),
        (lambda X: np.where(X > 0.5, np.inf, X), None, {}, ValueError, "infinity"),
        (None, None, {"sample_weight": "neg"}, ValueError, "negative"),
        (None, None, {"sample_weight": "nan"}, ValueError, "NaN"),
        (None, None, {"sample_weight": "inf"}, ValueError, "infinity"),
        (None, None, {"sample_weight": "zero"}, ValueError, "only zero weights"),
        (None, None, {"sample_weight": "short"}, ValueError, r"sample_weight.shape"),
        (None, lambda y: y[:-1], {}, ValueError, "inconsistent numbers of samples"),
        (None, lambda y: np.zeros_like(y), {}, ValueError, "only one class"),
        (None, None, {"class_weight": {42: 1.0}}, ValueError, r"labels \[42\]"),
        (None, None, {"class_weight": "balance"}, ValueError, "'balanced'"),
        (lambda X: X[:, 0, 0, 0], None, {}, ValueError, "got 1-D X"),
        (lambda X: X.astype(str), None, {}, TypeError, "must be numeric"),
        (None, lambda y: y + 0.5, {}, ValueError, "Unknown label type"),
    ],
)
def test_bad_fit_input(digits, X_mod, y_mod, fit_kw, exc, match, tiny):
    Xtr, _, ytr, _ = digits
    X = X_mod(Xtr) if X_mod else Xtr
    y = y_mod(ytr) if y_mod else ytr
    weights = {
        "neg": -np.ones(len(ytr)), "nan": np.full(len(ytr), np.nan),
        "inf": np.full(len(ytr), np.inf), "zero": np.zeros(len(ytr)),
        "short": np.ones(len(ytr) - 1),
    }
    if "sample_weight" in fit_kw:
        fit_kw = {"sample_weight": weights[fit_kw["sample_weight"]]}
    with pytest.raises(exc, match=match):
        CNNClassifier(**tiny).fit(X, y, **fit_kw)


def test_bad_predict_input(digits, tiny):
    Xtr, _, ytr, _ = digits
    clf = CNNClassifier(**tiny).fit(Xtr, ytr)
    with pytest.raises(ValueError, match=r"3 channel\(s\).*fitted with 1"):
        clf.predict(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        clf.predict(np.zeros((2, 1, 9, 9)))
    flat = CNNClassifier(input_shape=(1, 8, 8), **tiny).fit(Xtr.reshape(len(Xtr), -1), ytr)
    with pytest.raises(ValueError, match="X has 60 features, but CNNClassifier is"):
        flat.predict(np.zeros((2, 60)))
    with pytest.raises(ValueError, match="does not match input_shape"):
        CNNClassifier(input_shape=(1, 7, 7), **tiny).fit(Xtr.reshape(len(Xtr), -1), ytr)


def test_imbalanced_weights_warn_about_effective_sample_size(digits, tiny):
    Xtr, _, ytr, _ = digits
    w = np.full(len(ytr), 1e-80)
    w[:3] = 1.0
    with pytest.warns(UserWarning, match="effective sample size"):
        CNNClassifier(**tiny).fit(Xtr, ytr, sample_weight=w)


@pytest.mark.parametrize("criterion, options", [
    ("cross_entropy", {}), ("cross_entropy", {"criterion__label_smoothing": 0.2}),
    ("focal", {}), ("focal", {"criterion__gamma": 0.5}),
])
@pytest.mark.parametrize("class_weight", [None, {0: 3.0, 4: 0.5}])
def test_integer_weight_equals_repeating_the_sample_for_every_loss(
        digits, criterion, options, class_weight, tiny):
    Xtr, _, ytr, _ = digits
    X, y = Xtr[:200], ytr[:200]
    k = np.random.default_rng(5).integers(0, 4, len(y))
    kw = dict(criterion=criterion, class_weight=class_weight, batch_size=-1, lr=1e-2,
              **{**tiny, "max_epochs": 5}, **options)
    a = CNNClassifier(**kw).fit(X, y, sample_weight=k)
    b = CNNClassifier(**kw).fit(np.repeat(X, k, axis=0), np.repeat(y, k))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=2e-5)


@pytest.mark.parametrize("n_outputs", [9, 12])
def test_module_with_the_wrong_number_of_logits_is_reported(digits, n_outputs,
                                                            linear_module):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match=rf"output of shape \(64, {n_outputs}\), but a "
                                         r"classifier of 10 classes needs logits of "
                                         r"shape \(N, n_classes\) = \(64, 10\)"):
        CNNClassifier(linear_module, module__n_outputs=n_outputs, head=None,
                      max_epochs=1).fit(Xtr, ytr)
    # with head="auto" (the default) the wrong head is replaced by one of 10
    clf = CNNClassifier(linear_module, module__n_outputs=n_outputs, max_epochs=1)
    assert clf.fit(Xtr, ytr).module_.fc.out_features == 10


# -- multi-label y ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mosaic(digits):
    """Three labels per image (is it a 0, a 3, a 7?) on the digits; 7 is made rare."""
    Xtr, _, ytr, _ = digits
    Y = np.stack([ytr == 0, ytr == 3, ytr == 7], axis=1).astype(int)
    keep = ~((ytr == 7) & (np.arange(len(ytr)) % 4 != 0))  # a quarter of the 7s
    return Xtr[keep][:400].astype(np.float32), Y[keep][:400]


def test_multilabel_outputs_follow_scikit_learn(mosaic, tiny):
    from sklearn.neural_network import MLPClassifier

    X, Y = mosaic
    clf = CNNClassifier(**tiny).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and proba.dtype == np.float32
    assert ((proba >= 0) & (proba <= 1)).all()
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(int))
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    # the MLP's multi-label interface: classes_ are the columns, score is the
    # subset accuracy (accuracy_score on the indicator matrices)
    mlp = MLPClassifier(max_iter=2000, random_state=0).fit(X.reshape(len(X), -1), Y)
    np.testing.assert_array_equal(mlp.classes_, clf.classes_)
    assert clf.score(X, Y) == accuracy_score(Y, pred)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-6)


def test_multilabel_from_label_sets_through_multilabelbinarizer(mosaic, tiny):
    from sklearn.preprocessing import MultiLabelBinarizer

    X, Y = mosaic
    sets = [{name for name, on in zip(("zero", "three", "seven"), row, strict=True)
             if on} for row in Y]
    mlb = MultiLabelBinarizer()
    Yb = mlb.fit_transform(sets)
    clf = CNNClassifier(**tiny).fit(X, Yb)
    labels = mlb.inverse_transform(clf.predict(X))
    assert len(labels) == len(X) and all(set(t) <= set(mlb.classes_) for t in labels)
    sparse = MultiLabelBinarizer(sparse_output=True).fit_transform(sets)
    again = CNNClassifier(**tiny).fit(X, sparse)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("criterion", ["bce", "focal", "asl", "logit_adjusted"])
def test_multilabel_weight_rules_hold_per_element(mosaic, criterion, tiny):
    X, Y = mosaic[0][:120], mosaic[1][:120]
    kw = dict(criterion=criterion, class_weight="balanced", batch_size=-1, lr=1e-2,
              **{**tiny, "max_epochs": 4})
    k = np.random.default_rng(0).integers(0, 3, len(Y))
    per_row = CNNClassifier(**kw).fit(X, Y, sample_weight=k)
    # the same weights given per (sample, label) element, at another scale
    per_element = CNNClassifier(**kw).fit(X, Y, sample_weight=1e-40 * np.repeat(
        k[:, None], 3, axis=1))
    copies = CNNClassifier(**kw).fit(np.repeat(X, k, axis=0), np.repeat(Y, k, axis=0))
    p = per_row.predict_proba(X)
    np.testing.assert_allclose(per_element.predict_proba(X), p, atol=1e-5)
    np.testing.assert_allclose(copies.predict_proba(X), p, atol=2e-5)


def test_multilabel_balanced_weights_give_both_sides_of_each_label_half(mosaic, tiny):
    X, Y = mosaic
    w = np.random.default_rng(1).uniform(0.5, 2, len(Y))
    clf = CNNClassifier(class_weight="balanced", **tiny).fit(X, Y, sample_weight=w)
    cw = clf.class_weight_
    assert cw.shape == (3, 2)
    pos = (w[:, None] * Y * cw[:, 1]).sum(0)
    neg = (w[:, None] * (1 - Y) * cw[:, 0]).sum(0)
    np.testing.assert_allclose(pos, neg)
    # the loss saw balanced labels: their prevalence as seen is one half
    np.testing.assert_allclose(clf.effective_prior_, 0.5, rtol=1e-6)
    np.testing.assert_allclose(clf.train_prior_, Y.mean(0))


def test_multilabel_class_weight_forms(mosaic, tiny):
    X, Y = mosaic
    dicts = [{0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.0}, {1: 4.0}]
    clf = CNNClassifier(class_weight=dicts, **tiny).fit(X, Y)
    np.testing.assert_array_equal(clf.class_weight_, [[1, 2], [0.5, 1], [1, 4]])
    ratios = CNNClassifier(class_weight=[2.0, 1.0, 4.0], **tiny).fit(X, Y)
    np.testing.assert_array_equal(ratios.class_weight_, [[1, 2], [1, 1], [1, 4]])


@pytest.mark.parametrize("params, Y_mod, match", [
    ({}, lambda Y: Y * 2, r"0 or 1, got other values \(\[2\]\)"),
    ({"class_weight": [{0: 1, 1: 2}]}, None, "1 dicts, but y has 3 labels"),
    ({"class_weight": [1.0, 2.0]}, None, "2 positive-class ratios, but y has 3 labels"),
    ({"class_weight": {0: 2.0}}, None, "got a dict"),
    ({"threshold": 1.5}, None, r"threshold must lie in \[0, 1\]"),
    ({"threshold": [0.2, 0.3]}, None, "threshold has 2 entries, but y has 3 labels"),
    ({"threshold": "best"}, None, "threshold must be a number"),
    ({"threshold_metric": "accuracy"}, None, "threshold_metric must be one of"),
    ({"threshold": "auto"}, None, "set train_split"),
    ({"criterion__clip": 1.5, "criterion": "asl"}, None, "clip"),
])
def test_multilabel_bad_input_is_named(mosaic, params, Y_mod, match, tiny):
    X, Y = mosaic
    Y = Y if Y_mod is None else Y_mod(Y)
    with pytest.raises(ValueError, match=match):
        CNNClassifier(**{**tiny, **params}).fit(X, Y)


def test_single_label_refuses_multilabel_only_settings(digits, tiny):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match="threshold=0.3 applies to multi-label y"):
        CNNClassifier(threshold=0.3, **tiny).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="criterion='asl' is not a loss for one label"):
        CNNClassifier(criterion="asl", **tiny).fit(Xtr, ytr)


def test_multilabel_label_without_positives_warns_and_stays_finite(mosaic, tiny):
    X, Y = mosaic
    Y = Y.copy()
    Y[:, 2] = 0
    with pytest.warns(UserWarning, match=r"Label\(s\) \[2\] have no positive"):
        clf = CNNClassifier(class_weight="balanced", **tiny).fit(X, Y)
    assert np.isfinite(clf.class_weight_).all() and clf.class_weight_[2, 1] == 0
    assert np.isfinite(clf.predict_proba(X)).all()


def test_multilabel_thresholds_tuned_on_the_validation_split(mosaic, tiny):
    from sklearn.metrics import f1_score

    X, Y = mosaic
    kw = {**tiny, "max_epochs": 6, "train_split": 0.3}
    fixed = CNNClassifier(**kw).fit(X, Y)
    tuned = CNNClassifier(threshold="auto", **kw).fit(X, Y)
    np.testing.assert_array_equal(fixed.predict_proba(X), tuned.predict_proba(X))
    assert tuned.threshold_.shape == (3,) and not np.allclose(tuned.threshold_, 0.5)
    np.testing.assert_array_equal(fixed.threshold_, [0.5, 0.5, 0.5])
    # the tuned thresholds are the F1-best ones on the validation rows
    _, valid = tuned.get_split_datasets(X, Y)
    proba = tuned.predict_proba(valid)
    Yv = valid.target.numpy()
    for c in range(3):
        best = f1_score(Yv[:, c], proba[:, c] >= tuned.threshold_[c])
        for t in np.linspace(0.01, 0.99, 99):
            assert f1_score(Yv[:, c], proba[:, c] >= t) <= best + 1e-12
    assert (tuned.predict(X) == (tuned.predict_proba(X) >= tuned.threshold_)).all()
    # class weights do not weigh the tuning: the thresholds are the F1-best
    # ones of the validation split as it is
    weighted = CNNClassifier(threshold="auto", class_weight="balanced", **kw).fit(X, Y)
    _, valid = weighted.get_split_datasets(X, Y)
    proba = weighted.predict_proba(valid)
    for c in range(3):
        best = f1_score(Yv[:, c], proba[:, c] >= weighted.threshold_[c])
        assert all(f1_score(Yv[:, c], proba[:, c] >= t) <= best + 1e-12
                   for t in np.linspace(0.01, 0.99, 99))
    # a fixed array is used as given, and can be changed after fit
    tuned.set_params(threshold=[0.1, 0.9, 0.5])
    np.testing.assert_array_equal(tuned.predict(X),
                                  tuned.predict_proba(X) >= [0.1, 0.9, 0.5])


def test_multilabel_split_is_stratified_per_label(mosaic, tiny):
    X, Y = mosaic
    clf = CNNClassifier(train_split=0.25, **tiny).fit(X, Y)
    train, valid = clf.get_split_datasets(X, Y)
    Yt, Yv = train.target.numpy(), valid.target.numpy()
    np.testing.assert_allclose(Yt.sum(0), Y.sum(0) * 0.75, atol=1)
    assert len(Yv) == 100
    np.testing.assert_allclose(Yv.sum(0), Y.sum(0) * 0.25, atol=1)


def test_multilabel_searches_with_scikit_learns_scorers_and_persistence(mosaic, tiny,
                                                                         tmp_path):
    import pickle

    from sklearn.model_selection import GridSearchCV, KFold

    X, Y = mosaic
    search = GridSearchCV(CNNClassifier(**tiny), {"criterion": ["bce", "asl"]},
                          scoring=["f1_macro", "average_precision", "f1_micro"],
                          refit="average_precision", cv=KFold(2))
    search.fit(X, Y)
    assert np.isfinite(search.cv_results_["mean_test_f1_macro"]).all()
    best = search.best_estimator_
    again = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(again.predict(X), best.predict(X))
    best.save_params(f_params=tmp_path / "p.pt")
    fresh = CNNClassifier(**tiny).load_params(f_params=tmp_path / "p.pt")
    np.testing.assert_array_equal(fresh.predict_proba(X), best.predict_proba(X))
    assert type(fresh.targets_).__name__ == "MultiLabelTargets"
