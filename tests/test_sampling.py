"""Tests of ``CNNClassifier(sampler=...)``: imbalanced-learn samplers on images
and the balanced mini-batch sampler, with sample weights that follow the rows."""

import pickle

import numpy as np
import pytest
import torch
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from imblearn.under_sampling import NearMiss, RandomUnderSampler
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skweight import CNNClassifier


@pytest.fixture(scope="module")
def tiny(tiny_cnn):
    # A narrower head than tiny_cnn's, and no seed: each test passes its own
    # random_state, or none where the result does not depend on it.
    params = {**tiny_cnn, "module__hidden_units": 8}
    del params["random_state"]
    return params


class Recording(CNNClassifier):
    """A CNNClassifier that keeps what each training batch gave the loss:
    images, labels and weights (``batches_``, per epoch) and each epoch's
    training set (``train_sets_``)."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.batches_, self.train_sets_ = [], []

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train,
                               dataset_valid=dataset_valid, **kwargs)
        self.batches_.append([])
        self.train_sets_.append(dataset_train)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if training:
            y, w = y_true if isinstance(y_true, (tuple, list)) else (y_true, None)
            self.batches_[-1].append(
                (X.cpu().clone(), y.cpu().clone(), None if w is None else w.cpu().clone())
            )
        return super().get_loss(y_pred, y_true, X=X, training=training)


def _row_ids(X_train, X_served):
    """Index in X_train of each served image (images are unique floats)."""
    lookup = {row.tobytes(): i for i, row in enumerate(
        np.ascontiguousarray(X_train, dtype=np.float32).reshape(len(X_train), -1))}
    flat = X_served.numpy().reshape(len(X_served), -1)
    return np.array([lookup[row.tobytes()] for row in flat])


def _served(recording, X_train, epoch):
    """Rows, labels and weights served in one epoch."""
    batches = recording.batches_[epoch]
    ids = np.concatenate([_row_ids(X_train, X) for X, _, _ in batches])
    y = torch.cat([y for _, y, _ in batches]).numpy()
    w = None
    if batches[0][2] is not None:
        w = torch.cat([w for _, _, w in batches]).numpy()
    return ids, y, w


def _blobs(counts, seed=0, size=4):
    """Unique random images whose class shifts their mean; labels 0..K-1."""
    rng = np.random.RandomState(seed)
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    X = rng.rand(len(y), 1, size, size) + y[:, None, None, None]
    return X.astype(np.float32), y


@pytest.fixture
def digits(digit_images):
    return digit_images(n_class=4, flat=True, shuffle_rng=np.random.RandomState(0))


def _mislabelled_copies(X, y, n_class):
    """Each image twice: correctly (weight 1) and wrongly labelled (weight 0)."""
    Xc = np.concatenate([X, X])
    yc = np.concatenate([y, (y + 1) % n_class])
    w = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    return Xc, yc, w


def _net(**params):
    defaults = dict(input_shape=(1, 8, 8), max_epochs=6, lr=3e-3, random_state=0,
                    module__channels=(8,), module__hidden_units=16)
    return CNNClassifier(**{**defaults, **params})


# -- validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "error", "match"),
    [
        ("oversample", ValueError, "sampler must be None, 'balanced'"),
        (RandomUnderSampler, TypeError, r"RandomUnderSampler\(\) instead"),
        (5, TypeError, "fit_resample"),
        (object(), TypeError, "fit_resample"),
    ],
)
def test_invalid_sampler_raises_clear_error(sampler, error, match):
    X, y = _blobs([20, 10])
    with pytest.raises(error, match=match):
        CNNClassifier(sampler=sampler, max_epochs=1).fit(X, y)


def test_nested_sampler_params_are_settable_and_cloned():
    clf = CNNClassifier(sampler=SMOTE(k_neighbors=5))
    assert clf.get_params()["sampler__k_neighbors"] == 5
    clf.set_params(sampler__k_neighbors=2)
    assert clf.sampler.k_neighbors == 2
    assert "sampler__k_neighbors" not in vars(clf)
    with pytest.raises(ValueError, match="has no parameters"):
        CNNClassifier(sampler="balanced").set_params(sampler__k_neighbors=2)


# -- samplers that select rows: fresh rows every epoch ------------------------


def test_under_sampler_draws_fresh_majority_rows_every_epoch(tiny):
    X, y = _blobs([200, 20])
    clf = Recording(sampler=RandomUnderSampler(), max_epochs=6, batch_size=16,
                    random_state=0, **tiny).fit(X, y)
    majority_seen = set()
    for epoch in range(6):
        ids, labels, _ = _served(clf, X, epoch)
        assert np.bincount(labels).tolist() == [20, 20]
        assert len(set(ids)) == 40  # under-sampling: no repeats
        assert set(ids[labels == 1]) == set(range(200, 220))
        majority_seen |= set(ids[labels == 0])
    # 6 draws of 20 of 200 rows: ~94 distinct expected; a single draw gives 20.
    assert len(majority_seen) > 70
    assert clf.history[-1]["train_batch_count"] == 3


def test_over_sampler_repeats_minority_rows_and_resamples_each_epoch(tiny):
    X, y = _blobs([60, 12])
    rec = Recording(sampler=RandomOverSampler(), max_epochs=3,
                    random_state=0, **tiny).fit(X, y)
    draws = []
    for epoch in range(3):
        ids, labels, _ = _served(rec, X, epoch)
        assert np.bincount(labels).tolist() == [60, 60]
        assert set(ids[labels == 0]) == set(range(60))
        draws.append(np.bincount(ids, minlength=72)[60:])
    assert all(d.sum() == 60 for d in draws)
    assert not np.array_equal(draws[0], draws[1])


def test_deterministic_sampler_selects_the_same_rows_each_epoch(tiny):
    X, y = _blobs([40, 10])
    rec = Recording(sampler=NearMiss(), max_epochs=3,
                    iterator_train__shuffle=False, random_state=0, **tiny).fit(X, y)
    rows = [_served(rec, X, epoch)[0] for epoch in range(3)]
    assert len(rows[0]) == 20
    assert np.array_equal(rows[0], rows[1]) and np.array_equal(rows[1], rows[2])


def test_resampling_repeats_with_random_state_whatever_the_sampler_seed(tiny):
    X, y = _blobs([80, 16])
    probas = []
    for sampler_seed, est_seed in [(0, 0), (1, 0), (None, 0), (0, 1)]:
        clf = CNNClassifier(sampler=RandomUnderSampler(random_state=sampler_seed),
                            max_epochs=3, random_state=est_seed, **tiny).fit(X, y)
        probas.append(clf.predict_proba(X))
    np.testing.assert_array_equal(probas[0], probas[1])
    np.testing.assert_array_equal(probas[0], probas[2])
    assert not np.allclose(probas[0], probas[3])


def test_sample_weight_follows_resampled_rows(tiny):
    X, y = _blobs([100, 20])
    w = np.random.RandomState(1).uniform(0.5, 2.0, len(y))
    w[:10] = 0.0
    rec = Recording(sampler=RandomOverSampler(), max_epochs=2,
                    random_state=0, **tiny).fit(X, y, sample_weight=w)
    for epoch in range(2):
        ids, _, served_w = _served(rec, X, epoch)
        assert not set(ids) & set(range(10))  # weight 0: never served
        ratio = served_w / w[ids]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
        # normalised to mean 1 over the rows of the first epoch (later
        # epochs draw other rows, so their mean is near 1)
        assert served_w.mean() == pytest.approx(1.0, rel=1e-5 if epoch == 0 else 0.1)


def test_imblearn_pipeline_cannot_resample_weights_but_sampler_param_can(digits):
    X, y = digits
    Xtr, ytr, Xte, yte = X[:300], y[:300], X[300:], y[300:]
    Xc, yc, w = _mislabelled_copies(Xtr, ytr, 4)
    pipe = make_imb_pipeline(RandomUnderSampler(random_state=0), _net())
    with pytest.raises(ValueError, match="sample_weight.shape"):
        pipe.fit(Xc, yc, cnnclassifier__sample_weight=w)

    clf = _net(sampler=RandomUnderSampler()).fit(Xc, yc, sample_weight=w)
    assert clf.score(Xte, yte) > 0.9
    blind = _net(sampler=RandomUnderSampler()).fit(Xc, yc)
    assert blind.score(Xte, yte) < 0.7


def test_fitted_model_does_not_keep_the_epoch_rows(tiny):
    X, y = _blobs([60, 12])
    clf = CNNClassifier(sampler=RandomUnderSampler(), max_epochs=1, random_state=0,
                        **tiny).fit(X, y)
    assert "_epoch_rows_" not in vars(clf)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_validation_split_is_not_resampled(tiny):
    X, y = _blobs([120, 40])
    rec = Recording(sampler=RandomUnderSampler(), train_split=0.25, max_epochs=1,
                    random_state=0, **tiny).fit(X, y)
    assert len(rec.train_sets_[0]) == 120  # the training split, before sampling
    _, labels, _ = _served(rec, X, 0)
    assert np.bincount(labels).tolist() == [30, 30]


def test_class_weight_is_computed_after_resampling(tiny):
    X, y = _blobs([90, 10])
    clf = CNNClassifier(sampler=RandomOverSampler(), class_weight="balanced",
                        max_epochs=1, random_state=0, **tiny).fit(X, y)
    np.testing.assert_allclose(clf.class_weight_, [1.0, 1.0])
    plain = CNNClassifier(class_weight="balanced", max_epochs=1, **tiny).fit(X, y)
    np.testing.assert_allclose(plain.class_weight_, [100 / 180, 100 / 20])


def test_sampler_sees_original_labels(tiny):
    X, y = _blobs([60, 20])
    labels = np.array(["cat", "dog"])[y]
    sampler = RandomUnderSampler(sampling_strategy={"cat": 30, "dog": 20})
    clf = Recording(sampler=sampler, max_epochs=1,
                    random_state=0, **tiny).fit(X, labels)
    _, served, _ = _served(clf, X, 0)
    assert np.bincount(served).tolist() == [30, 20]
    assert set(clf.predict(X)) <= {"cat", "dog"}


def test_dataloader_path_refuses_per_epoch_rows(tiny):
    X, y = _blobs([30, 10])
    clf = CNNClassifier(sampler="balanced", iterator_train__num_workers=0,
                        max_epochs=1, **tiny)
    with pytest.raises(ValueError, match="in-memory"):
        clf.fit(X, y)


# -- samplers that synthesise: once, on flattened images --------------------


def test_smote_on_unflattened_images_with_documented_weights(tiny):
    X, y = _blobs([50, 10], size=5)
    w = np.random.RandomState(2).uniform(0.5, 1.5, len(y))
    clf = Recording(sampler=SMOTE(k_neighbors=3), max_epochs=2,
                    random_state=0, **tiny).fit(X, y, sample_weight=w)
    train = clf.train_sets_[0]
    assert tuple(train.X.shape) == (100, 1, 5, 5)
    assert np.bincount(train.y.numpy()).tolist() == [50, 50]
    got = train.weight.numpy().astype(np.float64)
    scale = got[0] / w[0]
    np.testing.assert_allclose(got[:60], scale * w, rtol=1e-5)  # real rows
    np.testing.assert_allclose(got[60:], scale * w[50:].mean(), rtol=1e-5)
    # synthetic images lie between minority images, not copies of them
    synthetic = train.X.numpy()[60:]
    assert not any((synthetic[0] == X[k]).all() for k in range(len(X)))
    assert synthetic.min() >= X[50:].min() and synthetic.max() <= X[50:].max()
    assert clf.predict(X).shape == (60,)
    # the same estimator seed gives the same synthetic samples, whatever SMOTE's
    rec2 = Recording(sampler=SMOTE(k_neighbors=3, random_state=123), max_epochs=1,
                     random_state=0, **tiny).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(rec2.train_sets_[0].X.numpy(), train.X.numpy())


def test_smote_ignores_zero_weight_rows(tiny):
    X, y = _blobs([40, 12])
    w = np.ones(len(y))
    w[40:44] = 0.0  # four minority rows left out: SMOTE must not use them
    rec = Recording(sampler=SMOTE(k_neighbors=3), max_epochs=1,
                    random_state=0, **tiny).fit(X, y, sample_weight=w)
    train = rec.train_sets_[0]
    assert np.bincount(train.y.numpy()).tolist() == [40, 40]
    real = X[np.r_[0:40, 44:52]].reshape(48, -1)
    np.testing.assert_array_equal(train.X.numpy()[:48].reshape(48, -1), real)


def test_smote_improves_rare_classes_on_imbalanced_digits(digits):
    X, y = digits
    Xtr, ytr, Xte, yte = X[:400], y[:400], X[400:], y[400:]
    keep = (ytr < 2) | (np.arange(400) % 12 == 0)  # classes 2, 3: ~9 samples each
    scores = {}
    for sampler in [None, SMOTE(k_neighbors=3), "balanced"]:
        clf = _net(sampler=sampler, max_epochs=4).fit(Xtr[keep], ytr[keep])
        scores[str(sampler)] = balanced_accuracy_score(yte, clf.predict(Xte))
    assert scores["SMOTE(k_neighbors=3)"] > scores["None"] + 0.1
    assert scores["balanced"] > scores["None"] + 0.1


# -- the balanced mini-batch sampler ----------------------------------------


def test_balanced_sampler_gives_near_balanced_batches(tiny):
    X, y = _blobs([300, 30, 10])
    rec = Recording(sampler="balanced", batch_size=60, max_epochs=3,
                    random_state=0, **tiny).fit(X, y)
    for epoch in range(3):
        ids, labels, _ = _served(rec, X, epoch)
        assert sorted(np.bincount(labels, minlength=3)) == [113, 113, 114]
        # rare rows repeated evenly: the 10-sample class shows each row 11-12 times
        rare = np.bincount(ids[labels == 2], minlength=340)[330:]
        assert rare.min() >= 11 and rare.max() <= 12
        for _, batch_y, _ in rec.batches_[epoch][:-1]:  # full batches of 60
            counts = np.bincount(batch_y.numpy(), minlength=3)
            assert counts.min() >= 10 and counts.max() <= 30
    first = set(_served(rec, X, 0)[0])
    second = set(_served(rec, X, 1)[0])
    assert first != second  # the frequent class is sub-sampled afresh


def test_balanced_sampler_keeps_sample_weights_within_classes(tiny):
    X, y = _blobs([200, 20])
    w = np.random.RandomState(3).uniform(0.2, 3.0, len(y))
    clf = Recording(sampler="balanced", max_epochs=1,
                    random_state=0, **tiny).fit(X, y, sample_weight=w)
    ids, labels, served_w = _served(clf, X, 0)
    ratio = served_w / w[ids]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
    assert np.bincount(labels).tolist() == [110, 110]
    assert clf.class_weight_ is None


def test_balanced_sampler_with_balanced_class_weight_equalises_class_totals(tiny):
    X, y = _blobs([200, 20])
    w = np.where(y == 0, 3.0, 1.0) * np.random.RandomState(4).uniform(0.5, 1.5, len(y))
    clf = Recording(sampler="balanced", class_weight="balanced", max_epochs=1,
                    random_state=0, **tiny).fit(X, y, sample_weight=w)
    _, labels, served_w = _served(clf, X, 0)
    totals = np.bincount(labels, weights=served_w)
    assert totals[0] == pytest.approx(totals[1], rel=0.1)
    # The class weights divide out the class means of the sample weights.
    means = np.array([w[y == k].mean() for k in (0, 1)])
    np.testing.assert_allclose(clf.class_weight_ * means,
                               (clf.class_weight_ * means)[0], rtol=1e-9)
    # Without weights, a balanced epoch needs no class weights at all.
    even = CNNClassifier(sampler="balanced", class_weight="balanced", max_epochs=1,
                         random_state=0, **tiny).fit(X, y)
    np.testing.assert_allclose(even.class_weight_, [1.0, 1.0])


def test_grid_search_over_sampler_choice(digits):
    X, y = digits
    keep = (y < 2) | (np.arange(len(y)) % 10 == 0)
    grid = GridSearchCV(
        _net(max_epochs=3),
        {"sampler": [None, "balanced", RandomUnderSampler(), SMOTE(k_neighbors=3)]},
        scoring="balanced_accuracy", cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(X[keep], y[keep])
    scores = grid.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and len(scores) == 4
    assert grid.best_params_["sampler"] is not None
    assert grid.best_score_ > 0.8


@pytest.mark.cuda
@pytest.mark.parametrize("sampler", ["balanced", RandomUnderSampler(), SMOTE()])
def test_samplers_on_cuda_serve_the_same_rows_as_on_cpu(sampler, tiny):
    X, y = _blobs([80, 16])
    w = np.random.RandomState(5).uniform(0.5, 2.0, len(y))
    served = {}
    for device in ("cpu", "cuda"):
        clf = Recording(sampler=sampler, device=device, max_epochs=2,
                        random_state=0, **tiny)
        clf.fit(X, y, sample_weight=w)
        assert clf.predict(X).shape == y.shape
        served[device] = [torch.cat([b[0] for b in epoch]) for epoch in clf.batches_]
    for cpu_rows, cuda_rows in zip(served["cpu"], served["cuda"], strict=True):
        np.testing.assert_array_equal(cpu_rows.numpy(), cuda_rows.numpy())


# -- multi-label random over-sampling (skweight.sampling) --------------------------


def test_ml_ros_clones_samples_of_labels_above_the_mean_imbalance_ratio():
    from skweight.sampling import MultiLabelRandomOverSampler

    rng = np.random.default_rng(0)
    Y = (rng.random((400, 4)) < [0.5, 0.3, 0.05, 0.02]).astype(int)
    X = np.arange(400)[:, None]
    sampler = MultiLabelRandomOverSampler(percentage=20, random_state=0)
    X_res, Y_res = sampler.fit_resample(X, Y)
    idx = sampler.sample_indices_
    np.testing.assert_array_equal(X_res[:, 0], idx)
    np.testing.assert_array_equal(idx[:400], np.arange(400))
    clones = idx[400:]
    assert 0 < len(clones) <= 80
    ratio = sampler.imbalance_ratio_
    minority = np.flatnonzero(ratio > ratio[np.isfinite(ratio)].mean())
    # every clone carries a minority label, and the rare labels gained most
    assert Y[clones][:, minority].any(axis=1).all()
    gain = Y_res.sum(0) / Y.sum(0)
    assert gain[3] > gain[0] and gain[2] > gain[0]
    again = MultiLabelRandomOverSampler(percentage=20, random_state=0)
    np.testing.assert_array_equal(again.fit_resample(X, Y)[1], Y_res)


@pytest.mark.parametrize("percentage", [0, 150, "10", True])
def test_ml_ros_bad_percentage(percentage):
    from skweight.sampling import MultiLabelRandomOverSampler

    with pytest.raises(ValueError, match="percentage must be a number in"):
        MultiLabelRandomOverSampler(percentage=percentage).fit_resample(
            np.zeros((4, 1)), np.eye(4, 2, dtype=int))


def test_ml_ros_in_the_classifier_resamples_rows_weights_and_labels_together(tiny):
    from skweight.sampling import MultiLabelRandomOverSampler

    rng = np.random.default_rng(0)
    X = rng.random((200, 1, 4, 4)).astype(np.float32)
    Y = (rng.random((200, 3)) < [0.5, 0.1, 0.04]).astype(int)
    w = rng.uniform(0.5, 2, len(Y))
    clf = Recording(sampler=MultiLabelRandomOverSampler(percentage=30), max_epochs=3,
                    batch_size=50, random_state=0, **tiny)
    clf.fit(X, Y, sample_weight=w)
    draws = []
    for epoch in range(3):
        ids, y_served, w_served = _served(clf, X, epoch)
        assert len(ids) > len(Y)  # every row once, then the clones
        np.testing.assert_array_equal(np.unique(ids), np.arange(len(Y)))
        # labels and weights travel with their rows (weights normalised once)
        np.testing.assert_array_equal(y_served, Y[ids])
        ratio = w_served / w[ids]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
        draws.append(tuple(np.sort(ids)))
    assert len(set(draws)) > 1  # drawn afresh each epoch
    with pytest.raises(ValueError, match="takes one label per sample"):
        CNNClassifier(sampler="balanced", max_epochs=1, **tiny).fit(X, Y)
