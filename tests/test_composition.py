"""Composition with scikit-learn and imbalanced-learn: pipelines, metadata
routing of sample weights, searches, cross-validation, cloning and pickling;
searches on Dask (joblib's Dask backend) and with Optuna's OptunaSearchCV,
each skipped where its package is missing; torch's threads in worker processes.

Sample weights are proven to arrive by their effect, not by looking inside:
every training image appears twice, once with its true target (weight 1) and
once with a wrong one (weight 0). Only a model that received the weights is
accurate; without them the classifier is at chance between an image's two
labels, the regressor predicts between the two targets and the segmenter
half-learns empty masks. The routes are tested for all three estimators.
"""

import os
import pickle
import warnings

import numpy as np
import pytest
import sklearn
import torch
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import Pipeline as ImbPipeline
from imblearn.under_sampling import RandomUnderSampler
from joblib import parallel_backend
from scipy.stats import loguniform, uniform
from sklearn.base import clone
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
from skorch.callbacks import Callback

from skweight import CNNClassifier, CNNRegressor, CNNSegmenter
from skweight.datasets import make_disk_scenes

N_CLASS = 4


def _digits(digit_images):
    """The digits of N_CLASS classes, flat, in a fixed shuffled order (new arrays)."""
    return digit_images(n_class=N_CLASS, flat=True, shuffle_rng=np.random.RandomState(0))


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


def _classifier_case(digit_images):
    X, y = _digits(digit_images)
    Xc, yc, w = _with_copies(X[:300], y[:300], (y[:300] + 1) % N_CLASS)
    return _net, Xc, yc, w, X[300:], y[300:], True


def _regressor_case(digit_images):
    # The digit's label as a number; the copies' targets are shifted by 2.
    X, y = _digits(digit_images)
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
def case(request, digit_images):
    """(make_estimator, X with copies, y, w, X_test, y_test, stratify)."""
    build = CASES[request.param]
    # The segmenter's case is made of disk scenes, not of digits.
    return build() if request.param == "segmenter" else build(digit_images)


@pytest.fixture(scope="module")
def copies(digit_images):
    return _classifier_case(digit_images)[1:6]


# -- pipelines ---------------------------------------------------------------


def test_pipeline_scaler_before_net_on_flattened_images(digit_images):
    X, y = _digits(digit_images)
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


def test_grid_search_over_module_lr_criterion_and_class_weight(digit_images):
    X, y = _digits(digit_images)
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


def test_randomized_search(digit_images):
    X, y = _digits(digit_images)
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


@pytest.mark.slow
def test_grid_search_n_jobs_2_matches_n_jobs_1(digit_images):
    X, y = _digits(digit_images)
    grid = {"lr": [3e-3, 1e-2]}
    serial = GridSearchCV(_net(max_epochs=2), grid, cv=_cv(2)).fit(X[:200], y[:200])
    parallel = GridSearchCV(_net(max_epochs=2), grid, cv=_cv(2), n_jobs=2).fit(
        X[:200], y[:200])
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], atol=0.02)


def test_cross_val_score_and_learning_curve(digit_images):
    X, y = _digits(digit_images)
    scores = cross_val_score(_net(max_epochs=4), X[:400], y[:400], cv=_cv(2))
    assert scores.shape == (2,) and scores.min() > 0.75
    sizes, train_scores, test_scores = learning_curve(
        _net(max_epochs=4), X[:400], y[:400], train_sizes=[0.25, 1.0], cv=_cv(2))
    assert sizes.tolist() == [50, 200]
    assert test_scores.mean(axis=1)[1] > test_scores.mean(axis=1)[0]


# -- clone and pickle ---------------------------------------------------------


def test_clone_keeps_params_and_drops_fitted_state(digit_images):
    X, y = _digits(digit_images)
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


def test_regressor_grid_search_and_learning_curve(digit_images):
    X, y = _digits(digit_images)
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


def _imbalanced_digits(digit_images):
    X, y = _digits(digit_images)
    keep = (y < 2) | (np.arange(len(y)) % 8 == 0)  # classes 2 and 3: ~1/8 kept
    return X[keep], y[keep]


def test_imblearn_pipeline_feeds_flattened_samples_to_the_net(digit_images):
    X, y = _imbalanced_digits(digit_images)
    pipe = ImbPipeline([("sampler", RandomOverSampler(random_state=0)),
                        ("net", _net(max_epochs=3))]).fit(X, y)
    assert pipe.predict(X).shape == y.shape
    assert pipe["net"].input_shape_ == (1, 8, 8)
    counts = np.bincount(y)
    # the net trained on the over-sampled data: 4 classes of the majority count
    assert pipe["net"].history[-1]["train_batch_count"] == int(
        np.ceil(N_CLASS * counts.max() / 64))


def test_imblearn_grid_search_chooses_between_samplers(digit_images):
    X, y = _imbalanced_digits(digit_images)
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


# -- searches on Dask, worker threads --------------------------------------------
#
# The Dask tests share one LocalCluster of 2 worker processes x 1 thread; they are
# skipped where dask.distributed is not installed. Their data are the classifier's
# copies, split so that plain scores tell weighted fits from blind ones: each fold
# trains on both copies of half of the images and is scored on the true copies of
# the other half only. A fit that received the weights scores ~0.97 there, a blind
# one ~0.5.


def _clean_splits(n_rows):
    """Two folds over copies data (``n_rows`` rows: images, then their copies)."""
    n = n_rows // 2
    first, second = np.arange(n // 2), np.arange(n // 2, n)
    return [(np.r_[a, a + n], b) for a, b in ((first, second), (second, first))]


def _thread_probe():
    """A callback that records, when training starts (inside fit's thread cap),
    torch's thread count, ``OMP_NUM_THREADS`` and the process id (``seen_``),
    and the device of the network's weights (``device_``).

    The class is local so that Dask and loky pickle it by value: their workers
    need not import this test module.
    """

    class ThreadProbe(Callback):
        def on_train_begin(self, net, X=None, y=None, **kwargs):
            self.seen_ = (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"),
                          os.getpid())
            self.device_ = str(next(net.module_.parameters()).device)

    return ThreadProbe()


def _seen(estimator):
    return dict(estimator.callbacks_)["probe"].seen_


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def _worker_pids(client):
    return set(client.run(os.getpid).values())


@pytest.mark.slow
def test_dask_grid_search_scores_like_sequential_with_weights_in_every_fit(
        dask_client, copies):
    Xc, yc, w, Xte, yte = copies

    def fit_search():
        # a scorer that reports where each fit ran
        pid = make_scorer(lambda y_true, y_pred, sample_weight=None: os.getpid())
        scoring = {"accuracy": "accuracy", "pid": pid}
        search = GridSearchCV(_net(), {"lr": [3e-3, 1e-2]}, cv=_clean_splits(len(yc)),
                              scoring=scoring, refit="accuracy")
        return search.fit(Xc, yc, sample_weight=w)  # legacy fit params

    serial = fit_search()
    with parallel_backend("dask"):
        on_dask = fit_search()
    for key in ("split0_test_accuracy", "split1_test_accuracy", "params"):
        np.testing.assert_array_equal(on_dask.cv_results_[key], serial.cv_results_[key])
    assert on_dask.cv_results_["mean_test_accuracy"].min() > GOOD  # only with weights
    pids = {*on_dask.cv_results_["split0_test_pid"],
            *on_dask.cv_results_["split1_test_pid"]}
    assert pids <= _worker_pids(dask_client) and os.getpid() not in pids
    assert set(serial.cv_results_["split0_test_pid"]) == {os.getpid()}
    # GridSearchCV refits in the caller, on all the weighted rows
    np.testing.assert_array_equal(on_dask.predict_proba(Xte), serial.predict_proba(Xte))
    assert on_dask.score(Xte, yte) > GOOD


@pytest.mark.slow
def test_dask_randomized_search_with_routed_weights(dask_client, copies):
    Xc, yc, w, Xte, yte = copies
    with sklearn.config_context(enable_metadata_routing=True):

        def fit_search():
            net = _net().set_fit_request(sample_weight=True).set_score_request(
                sample_weight=False)
            search = RandomizedSearchCV(
                net, {"lr": loguniform(3e-3, 3e-2), "class_weight": [None, "balanced"]},
                n_iter=3, cv=_clean_splits(len(yc)), random_state=0)
            return search.fit(Xc, yc, sample_weight=w)

        serial = fit_search()
        with parallel_backend("dask"):
            on_dask = fit_search()
    assert on_dask.cv_results_["params"] == serial.cv_results_["params"]
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    assert on_dask.cv_results_["mean_test_score"].min() > GOOD
    assert on_dask.best_params_ == serial.best_params_
    np.testing.assert_array_equal(on_dask.predict_proba(Xte), serial.predict_proba(Xte))


@pytest.mark.slow
@pytest.mark.parametrize("routed", [False, True], ids=["legacy", "routed"])
def test_dask_cross_validate_returns_fitted_estimators(dask_client, copies, routed):
    Xc, yc, w, Xte, yte = copies
    caller_threads = torch.get_num_threads()
    with sklearn.config_context(enable_metadata_routing=routed):
        net = _net(callbacks=[("probe", _thread_probe())])
        if routed:
            net = net.set_fit_request(sample_weight=True).set_score_request(
                sample_weight=False)

        def run():
            return cross_validate(net, Xc, yc, params={"sample_weight": w},
                                  cv=_clean_splits(len(yc)), return_estimator=True)

        serial = run()
        with parallel_backend("dask"):
            on_dask = run()
    assert torch.get_num_threads() == caller_threads
    np.testing.assert_array_equal(on_dask["test_score"], serial["test_score"])
    assert on_dask["test_score"].min() > GOOD
    workers = _worker_pids(dask_client)
    for remote, local in zip(on_dask["estimator"], serial["estimator"], strict=True):
        np.testing.assert_array_equal(remote.predict_proba(Xte), local.predict_proba(Xte))
        assert remote.score(Xte, yte) > GOOD
        threads, omp, pid = _seen(remote)
        # the fit ran in a worker, on the one thread Dask's nanny allows
        assert pid in workers and omp == "1" and threads == 1
        assert _seen(local)[2] == os.getpid()


@pytest.mark.slow
def test_dask_worker_threads_capped_during_fit_and_restored(dask_client, copies):
    # torch's default in a worker whose OMP_NUM_THREADS is not honoured would be
    # every core; raise it to 2 in the threads that run the workers' tasks (torch's
    # thread count is per OS thread: client.run would set it in another thread).
    Xc, yc, _, _, _ = copies
    workers = list(dask_client.scheduler_info()["workers"])

    def set_torch_threads(n):  # local: pickled by value, as is _thread_probe
        torch.set_num_threads(n)
        return torch.get_num_threads()

    def set_in_workers(n):
        return [dask_client.submit(set_torch_threads, n, workers=[address],
                                   pure=False).result() for address in workers]

    assert set_in_workers(2) == [2, 2]
    try:
        net = _net(max_epochs=1, callbacks=[("probe", _thread_probe())])
        with parallel_backend("dask"):
            result = cross_validate(net, Xc, yc, cv=_clean_splits(len(yc)),
                                    return_estimator=True)
        assert [_seen(est)[:2] for est in result["estimator"]] == [(1, "1"), (1, "1")]
        after = [dask_client.submit(torch.get_num_threads, workers=[address],
                                    pure=False).result() for address in workers]
        assert after == [2, 2]  # restored after the fit
    finally:
        set_in_workers(1)


@pytest.mark.slow
@pytest.mark.cuda
def test_dask_workers_train_on_the_gpu_they_see(dask_client, copies):
    # The workers see this process's GPUs; with one GPU per worker (dask-cuda's
    # LocalCUDACluster, or CUDA_VISIBLE_DEVICES per `dask worker`) "cuda" is
    # each worker's own. device="auto" picks it up.
    Xc, yc, w, Xte, yte = copies
    with parallel_backend("dask"):
        result = cross_validate(_net(callbacks=[("probe", _thread_probe())]), Xc, yc,
                                params={"sample_weight": w}, cv=_clean_splits(len(yc)),
                                return_estimator=True)
    assert result["test_score"].min() > GOOD
    for est in result["estimator"]:
        assert dict(est.callbacks_)["probe"].device_.startswith("cuda")
        assert _seen(est)[2] in _worker_pids(dask_client)
        assert est.score(Xte, yte) > GOOD


@pytest.mark.slow
def test_loky_workers_fit_on_the_threads_joblib_allows(copies):
    Xc, yc, _, _, _ = copies
    result = cross_validate(_net(max_epochs=1, callbacks=[("probe", _thread_probe())]),
                            Xc, yc, cv=_clean_splits(len(yc)), n_jobs=2,
                            return_estimator=True)
    for est in result["estimator"]:
        threads, omp, pid = _seen(est)
        assert pid != os.getpid()
        assert omp is not None and threads == int(omp)


def test_thread_cap_leaves_the_caller_alone(copies, monkeypatch):
    # OMP_NUM_THREADS=1 is set, but the caller is not a worker: what it set stays.
    Xc, yc, w, _, _ = copies
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = _net(max_epochs=1, callbacks=[("probe", _thread_probe())])
        net.fit(Xc[:64], yc[:64], sample_weight=w[:64])
        assert _seen(net)[0] == 2
        net.predict(Xc[:64])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- Bayesian optimisation with Optuna ------------------------------------------------


@pytest.fixture
def optuna_search():
    """(OptunaSearchCV, the optuna module) with optuna's experimental and
    deprecation warnings silenced for the test."""
    optuna = pytest.importorskip("optuna")
    integration = pytest.importorskip("optuna_integration")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)  # optuna.terminator, v4.9
        yield integration.OptunaSearchCV, optuna


def _seeded_study(optuna):
    sampler = optuna.samplers.TPESampler(seed=0)
    return optuna.create_study(direction="maximize", sampler=sampler)


@pytest.mark.slow
@pytest.mark.parametrize("routed", [False, True], ids=["legacy", "routed"])
def test_optuna_search_weights_reach_every_fit(optuna_search, copies, routed):
    OptunaSearchCV, optuna = optuna_search
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    Xc, yc, w, Xte, yte = copies
    space = {
        "lr": FloatDistribution(3e-3, 3e-2, log=True),
        "class_weight": CategoricalDistribution([None, "balanced"]),
        "criterion": CategoricalDistribution(["cross_entropy", "focal"]),
        "sampler": CategoricalDistribution([None, "balanced"]),
        "module__hidden_units": CategoricalDistribution([8, 16]),
    }
    with sklearn.config_context(enable_metadata_routing=routed):
        net = _net()
        if routed:
            net = net.set_fit_request(sample_weight=True).set_score_request(
                sample_weight=False)
        search = OptunaSearchCV(net, space, cv=_clean_splits(len(yc)), n_trials=4,
                                study=_seeded_study(optuna), error_score="raise")
        search.fit(Xc, yc, sample_weight=w)
    trials = search.trials_
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    # every fold of every trial (and the refit) trained on the weighted rows
    assert min(t.user_attrs["mean_test_score"] for t in trials) > GOOD
    assert search.score(Xte, yte) > GOOD
    assert len({t.params["lr"] for t in trials}) == 4
    best = search.best_estimator_.get_params()
    assert {name: best[name] for name in space} == search.best_params_


@pytest.mark.slow
def test_optuna_pruning_cannot_take_sample_weight(optuna_search, copies):
    # With enable_pruning, optuna-integration calls partial_fit on each fold's rows
    # with the full-length fit parameters: the weights do not match the rows.
    OptunaSearchCV, optuna = optuna_search
    from optuna.distributions import FloatDistribution

    Xc, yc, w, _, _ = copies
    space = {"lr": FloatDistribution(3e-3, 3e-2, log=True)}
    warnings.simplefilter("ignore", RuntimeWarning)  # its nanmean over failed folds

    def search(**params):
        return OptunaSearchCV(_net(max_epochs=1), space, cv=_clean_splits(len(yc)),
                              n_trials=2, enable_pruning=True, max_iter=2,
                              study=_seeded_study(optuna), **params)

    with pytest.raises(ValueError, match="sample_weight") as error:
        search(error_score="raise").fit(Xc, yc, sample_weight=w)
    assert "600" in str(error.value) and "300" in str(error.value)  # all rows vs a fold's
    # With the default error_score=nan every trial fails, yet fit returns: the
    # "best" estimator is the untuned default, refitted.
    silent = search().fit(Xc, yc, sample_weight=w)
    assert {t.state for t in silent.trials_} == {optuna.trial.TrialState.FAIL}
    assert silent.best_estimator_.lr == _net().lr
    with pytest.raises(ValueError, match="No trials are completed"):
        silent.best_params_  # noqa: B018
