"""Composition with scikit-learn and imbalanced-learn: pipelines, metadata
routing of sample weights, searches, cross-validation, cloning and pickling.

Sample weights are proven to arrive by their effect, not by looking inside:
every training image appears twice, once with its true target (weight 1) and
once with a wrong one (weight 0). Only a model that received the weights is
accurate; without them the classifier is at chance between an image's two
labels, the regressor predicts between the two targets and the segmenter
half-learns empty masks. The routes are tested for all three estimators.
"""

import pickle

import numpy as np
import pytest
import sklearn
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import Pipeline as ImbPipeline
from imblearn.under_sampling import RandomUnderSampler
from scipy.stats import loguniform, uniform
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_val_score,
    cross_validate,
    learning_curve,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skweight import CNNClassifier, CNNRegressor, CNNSegmenter
from skweight.datasets import make_disk_scenes

N_CLASS = 4




def _digits():
    X, y = load_digits(n_class=N_CLASS, return_X_y=True)
    perm = np.random.RandomState(0).permutation(len(y))
    return (X[perm] / 16).astype(np.float32), y[perm]


def _net(**params):
    defaults = dict(input_shape=(1, 8, 8), max_epochs=5, lr=3e-3, random_state=0,
                    module__channels=(8,), module__hidden_units=16)
    return CNNClassifier(**{**defaults, **params})


def _regressor(**params):
    defaults = dict(input_shape=(1, 8, 8), max_epochs=8, lr=1e-2, random_state=0,
                    module__channels=(8,), module__hidden_units=16)
    return CNNRegressor(**{**defaults, **params})


def _segmenter(**params):
    defaults = dict(input_shape=(1, 12, 12), criterion="cross_entropy", max_epochs=4,
                    lr=1e-2, random_state=0, module__channels=(4, 8))
    return CNNSegmenter(**{**defaults, **params})


def _cv(n=3, stratified=True):
    if stratified:
        return StratifiedKFold(n, shuffle=True, random_state=0)
    return KFold(n, shuffle=True, random_state=0)


def _weighted_accuracy():
    return make_scorer(accuracy_score).set_score_request(sample_weight=True)


def _with_copies(X, y, wrong):
    """X twice: with y (weight 1) and with wrong targets (weight 0)."""
    n = len(y)
    return (np.concatenate([X, X]), np.concatenate([y, wrong]),
            np.concatenate([np.ones(n), np.zeros(n)]))


def _classifier_case():
    X, y = _digits()
    Xc, yc, w = _with_copies(X[:300], y[:300], (y[:300] + 1) % N_CLASS)
    return _net, Xc, yc, w, X[300:], y[300:], True


def _regressor_case():
    # The digit's label as a number; the copies' targets are shifted by 2.
    X, y = _digits()
    y = y.astype(np.float64)
    Xc, yc, w = _with_copies(X[:300], y[:300], y[:300] + 2.0)
    return _regressor, Xc, yc, w, X[300:], y[300:], False


def _segmenter_case():
    # Objects on noise; the copies' masks are empty.
    X, y = make_disk_scenes(50, image_size=12, square_size=(3, 5), n_disks=(1, 2),
                            noise=0.3, random_state=0)
    X, y = X.reshape(50, -1), (y > 0).astype(np.int64)
    Xc, yc, w = _with_copies(X[:30], y[:30], np.zeros_like(y[:30]))
    return _segmenter, Xc, yc, w, X[30:], y[30:], False


CASES = {"classifier": _classifier_case, "regressor": _regressor_case,
         "segmenter": _segmenter_case}
#: Held-out score of a model that received the weights (accuracy, R^2, Dice);
#: without them the classifier is at chance between an image's two labels
#: (~0.5), the regressor predicts y + 1 (R^2 ~0.2), the segmenter predicts
#: little foreground (Dice ~0.1).
GOOD = 0.75
BLIND = 0.6


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    """(make_estimator, X with copies, y, w, X_test, y_test, stratify)."""
    return CASES[request.param]()


@pytest.fixture(scope="module")
def copies():
    return _classifier_case()[1:6]


# -- pipelines ---------------------------------------------------------------


def test_pipeline_scaler_before_net_on_flattened_images():
    X, y = _digits()
    pipe = make_pipeline(StandardScaler(), _net()).fit(X[:400] * 16, y[:400])
    assert pipe.score(X[400:] * 16, y[400:]) > 0.9
    assert pipe[-1].input_shape_ == (1, 8, 8)
    assert pipe[-1].n_features_in_ == 64


def test_legacy_pipeline_step_sample_weight(case):
    make, Xc, yc, w, Xte, yte, _ = case
    pipe = Pipeline([("scale", StandardScaler()), ("net", make())])
    pipe.fit(Xc, yc, net__sample_weight=w)
    assert pipe.score(Xte, yte) > GOOD
    blind = Pipeline([("scale", StandardScaler()), ("net", make())]).fit(Xc, yc)
    assert blind.score(Xte, yte) < BLIND


def test_routed_pipeline_sample_weight(case):
    make, Xc, yc, w, Xte, yte, _ = case
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline([
            ("scale", StandardScaler().set_fit_request(sample_weight=False)),
            ("net", make().set_fit_request(sample_weight=True)),
        ])
        pipe.fit(Xc, yc, sample_weight=w)
        assert pipe.score(Xte, yte) > GOOD
        # weights nobody requested are refused rather than silently dropped
        unrouted = Pipeline([
            ("scale", StandardScaler().set_fit_request(sample_weight=False)),
            ("net", make().set_fit_request(sample_weight=False)),
        ])
        with pytest.raises(TypeError, match="not routed"):
            unrouted.fit(Xc, yc, sample_weight=w)


# -- metadata routing declarations ---------------------------------------------


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor, CNNSegmenter])
def test_metadata_requests_and_routing(Estimator):
    with pytest.raises(RuntimeError, match="enable_metadata_routing"):
        Estimator().set_fit_request(sample_weight=True)
    with sklearn.config_context(enable_metadata_routing=True):
        est = (Estimator().set_fit_request(sample_weight=True)
               .set_score_request(sample_weight=True))
        for each in (est, clone(est)):
            routing = each.get_metadata_routing()
            assert routing.consumes("fit", ["sample_weight", "class_weight"]) == {
                "sample_weight"}
            assert routing.consumes("score", ["sample_weight"]) == {"sample_weight"}
        default = Estimator().get_metadata_routing()
        assert default.consumes("fit", ["sample_weight"]) == set()


# -- searches and cross-validation with routed weights ----------------------


def test_routed_grid_search_weighted_fit_and_score(case):
    make, Xc, yc, w, Xte, yte, stratify = case
    with sklearn.config_context(enable_metadata_routing=True):
        est = make().set_fit_request(sample_weight=True).set_score_request(
            sample_weight=True)
        search = GridSearchCV(est, {"lr": [3e-3, 1e-2]}, cv=_cv(3, stratify))
        search.fit(Xc, yc, sample_weight=w)
    # Half of each test fold is wrong copies: an unweighted score stays below
    # BLIND even for a perfect model, as the refitted model shows.
    assert search.best_score_ > GOOD
    assert search.score(Xte, yte) > GOOD
    assert search.best_estimator_.score(Xc, yc) < BLIND
    assert search.best_estimator_.score(Xc, yc, sample_weight=w) > GOOD


def test_routed_cross_validate_params(case):
    make, Xc, yc, w, _, _, stratify = case
    with sklearn.config_context(enable_metadata_routing=True):
        est = make().set_fit_request(sample_weight=True).set_score_request(
            sample_weight=True)
        result = cross_validate(est, Xc, yc, params={"sample_weight": w},
                                cv=_cv(3, stratify))
    assert result["test_score"].min() > GOOD


def test_routed_cross_validate_with_weighted_and_plain_scorers(copies):
    Xc, yc, w, _, _ = copies
    with sklearn.config_context(enable_metadata_routing=True):
        est = _net().set_fit_request(sample_weight=True)
        plain = make_scorer(accuracy_score).set_score_request(sample_weight=False)
        result = cross_validate(est, Xc, yc, params={"sample_weight": w}, cv=_cv(),
                                scoring={"weighted": _weighted_accuracy(),
                                         "plain": plain})
    assert result["test_weighted"].min() > 0.9
    assert result["test_plain"].max() < 0.6


def test_legacy_grid_search_and_cross_validate_pass_weights_to_fit(case):
    make, Xc, yc, w, Xte, yte, stratify = case
    search = GridSearchCV(make(), {"random_state": [0]}, cv=_cv(2, stratify))
    search.fit(Xc, yc, sample_weight=w)
    assert search.score(Xte, yte) > GOOD
    result = cross_validate(make(), Xc, yc, params={"sample_weight": w},
                            cv=_cv(2, stratify), return_estimator=True)
    assert all(est.score(Xte, yte) > GOOD for est in result["estimator"])


# -- searches over network, optimiser, loss and weighting -------------------


def test_grid_search_over_module_lr_criterion_and_class_weight():
    X, y = _digits()
    grid = [
        {"criterion": ["cross_entropy"], "class_weight": [None, "balanced"],
         "module__hidden_units": [8, 16]},
        {"criterion": ["focal"], "criterion__gamma": [1.0, 3.0], "lr": [3e-3, 1e-2]},
    ]
    search = GridSearchCV(_net(max_epochs=3), grid, cv=_cv(2)).fit(X[:300], y[:300])
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 8 and np.all(scores > 0.5)
    params = search.cv_results_["params"]
    assert {"criterion": "focal", "criterion__gamma": 3.0, "lr": 1e-2} in params
    assert search.best_estimator_.score(X[300:], y[300:]) > 0.85
    # what the search sets reaches the loss
    focal = clone(search.estimator).set_params(**params[-1]).fit(X[:50], y[:50])
    assert focal.criterion_.gamma == params[-1]["criterion__gamma"]


def test_randomized_search():
    X, y = _digits()
    search = RandomizedSearchCV(
        _net(max_epochs=3, criterion="focal"),
        {"lr": loguniform(1e-3, 3e-2), "criterion__gamma": uniform(0.0, 3.0),
         "module__hidden_units": [8, 16], "class_weight": [None, "balanced"]},
        n_iter=3, cv=_cv(2), random_state=0,
    ).fit(X[:300], y[:300])
    assert len(search.cv_results_["params"]) == 3
    assert np.all(search.cv_results_["mean_test_score"] > 0.5)
    gammas = [p["criterion__gamma"] for p in search.cv_results_["params"]]
    assert len(set(gammas)) == 3


def test_grid_search_n_jobs_2_matches_n_jobs_1():
    X, y = _digits()
    grid = {"lr": [3e-3, 1e-2]}
    serial = GridSearchCV(_net(max_epochs=2), grid, cv=_cv(2)).fit(X[:200], y[:200])
    parallel = GridSearchCV(_net(max_epochs=2), grid, cv=_cv(2), n_jobs=2).fit(
        X[:200], y[:200])
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], atol=0.02)


def test_cross_val_score_and_learning_curve():
    X, y = _digits()
    scores = cross_val_score(_net(max_epochs=4), X[:400], y[:400], cv=_cv(2))
    assert scores.shape == (2,) and scores.min() > 0.75
    sizes, train_scores, test_scores = learning_curve(
        _net(max_epochs=4), X[:400], y[:400], train_sizes=[0.25, 1.0], cv=_cv(2))
    assert sizes.tolist() == [50, 200]
    assert test_scores.mean(axis=1)[1] > test_scores.mean(axis=1)[0]


# -- clone and pickle ---------------------------------------------------------


def test_clone_keeps_params_and_drops_fitted_state():
    X, y = _digits()
    clf = _net(max_epochs=1, class_weight="balanced", criterion="focal",
               criterion__gamma=3.0, sampler=RandomUnderSampler()).fit(X[:100], y[:100])
    twin = clone(clf)
    assert twin.get_params()["criterion__gamma"] == 3.0
    assert twin.sampler is not clf.sampler
    assert twin.get_params()["sampler__sampling_strategy"] == "auto"
    assert not hasattr(twin, "classes_") and not hasattr(twin, "module_")
    twin.fit(X[:100], y[:100])
    np.testing.assert_array_equal(twin.predict_proba(X[100:]),
                                  clf.predict_proba(X[100:]))


def test_pickled_models_predict_identically(case):
    make, Xc, yc, w, Xte, _, _ = case
    net = make(max_epochs=2).fit(Xc, yc, sample_weight=w)
    pipe = Pipeline([("scale", StandardScaler()), ("net", make(max_epochs=2))])
    pipe.fit(Xc, yc, net__sample_weight=w)
    for model in (net, pipe):
        restored = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(restored.predict(Xte), model.predict(Xte))
        if not isinstance(net, CNNRegressor):  # a regressor has no probabilities
            np.testing.assert_array_equal(restored.predict_proba(Xte),
                                          model.predict_proba(Xte))


def test_regressor_grid_search_and_learning_curve():
    X, y = _digits()
    y = y.astype(np.float64)
    grid = [{"criterion": ["mse"], "module__hidden_units": [8, 16]},
            {"criterion": ["huber"], "criterion__delta": [0.5, 2.0], "lr": [5e-3]}]
    search = GridSearchCV(_regressor(), grid, cv=_cv(2, False))
    search.fit(X[:300], y[:300])
    assert len(search.cv_results_["params"]) == 4
    assert np.all(search.cv_results_["mean_test_score"] > 0.3)
    assert search.score(X[300:], y[300:]) > 0.5
    sizes, _, test_scores = learning_curve(
        _regressor(), X[:400], y[:400], train_sizes=[0.25, 1.0],
        cv=_cv(2, False))
    assert sizes.tolist() == [50, 200]
    assert test_scores.mean(axis=1)[1] > test_scores.mean(axis=1)[0]


def test_segmenter_grid_search_over_loss_and_class_weight():
    _, Xc, yc, w, Xte, yte, _ = _segmenter_case()
    X, y = Xc[:30], yc[:30]
    grid = [{"criterion": ["cross_entropy"], "class_weight": [None, "balanced"]},
            {"criterion": ["dice_ce", "focal"], "module__channels": [(4, 8)]}]
    search = GridSearchCV(_segmenter(), grid, cv=_cv(3, False)).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all(scores > 0.5)  # mean foreground Dice
    assert search.score(Xte, yte) > GOOD
    assert cross_val_score(_segmenter(), X, y, cv=_cv(3, False)).min() > 0.5


# -- imbalanced-learn ------------------------------------------------------------


def _imbalanced_digits():
    X, y = _digits()
    keep = (y < 2) | (np.arange(len(y)) % 8 == 0)  # classes 2 and 3: ~1/8 kept
    return X[keep], y[keep]


def test_imblearn_pipeline_feeds_flattened_samples_to_the_net():
    X, y = _imbalanced_digits()
    pipe = ImbPipeline([("sampler", RandomOverSampler(random_state=0)),
                        ("net", _net(max_epochs=3))]).fit(X, y)
    assert pipe.predict(X).shape == y.shape
    assert pipe["net"].input_shape_ == (1, 8, 8)
    counts = np.bincount(y)
    # the net trained on the over-sampled data: 4 classes of the majority count
    assert pipe["net"].history[-1]["train_batch_count"] == int(
        np.ceil(N_CLASS * counts.max() / 64))


def test_imblearn_grid_search_chooses_between_samplers():
    X, y = _imbalanced_digits()
    pipe = ImbPipeline([("sampler", "passthrough"), ("net", _net(max_epochs=3))])
    search = GridSearchCV(
        pipe,
        {"sampler": [RandomOverSampler(random_state=0), RandomUnderSampler(random_state=0),
                     SMOTE(k_neighbors=3, random_state=0), "passthrough"]},
        scoring="balanced_accuracy", cv=_cv(2),
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all(np.isfinite(scores))
    assert search.best_params_["sampler"] != "passthrough"
    assert search.best_score_ > scores[3]
