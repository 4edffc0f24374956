"""CNNSegmenter: masks in and out, weights per class, image and pixel,
ignore_index, scoring, and the scikit-learn protocol.

The weight equivalences are checked with seeded training of a tiny U-Net
(GroupNorm, so images do not interact within a batch); full-batch where the
batches themselves would differ.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    check_cv,
    cross_validate,
)
from torch import nn

from skweight import CNNSegmenter
from skweight.datasets import make_disk_scenes
from skweight.losses import CrossEntropyLoss, DiceCELoss, DiceLoss, FocalLoss, TverskyLoss
from skweight.metrics import dice_score
from skweight.nets import UNet

CRITERIA = ["cross_entropy", "dice", "dice_ce", "focal", "tversky"]


@pytest.fixture(scope="module")
def scenes():
    return make_disk_scenes(24, image_size=16, square_size=(5, 7), n_disks=(1, 2),
                            noise=0.3, random_state=0)


@pytest.fixture(scope="module")
def fitted(scenes, tiny_unet):
    X, y = scenes
    return CNNSegmenter(**tiny_unet).fit(X, y)


@pytest.fixture(scope="module")
def tiny(tiny_unet):
    """``tiny(**params)``: a CNNSegmenter of ``tiny_unet`` and ``params``."""

    def make(**kw):
        return CNNSegmenter(**{**tiny_unet, **kw})

    return make


def assert_same_model(a, b, X, atol=1e-6):
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=atol)


# -- masks in, masks out -------------------------------------------------


def test_predict_shapes_and_probabilities(scenes, fitted):
    X, y = scenes
    proba = fitted.predict_proba(X)
    assert proba.shape == (24, 3, 16, 16)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)  # float32
    pred = fitted.predict(X)
    assert pred.shape == y.shape
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(fitted.classes_, [0, 1, 2])
    assert fitted.input_shape_ == (1, 16, 16)
    assert fitted.n_features_in_ == 256
    assert isinstance(fitted.module_, UNet)


def test_any_image_size_at_predict_time(scenes, fitted):
    X, _ = scenes
    other = np.zeros((2, 1, 21, 13), dtype=np.float32)
    other[:, :, :16, :13] = X[:2, :, :, :13]
    assert fitted.predict(other).shape == (2, 21, 13)
    assert fitted.predict_proba(X[:3, 0]).shape == (3, 3, 16, 16)  # (N, H, W) input
    with pytest.raises(ValueError, match="2 channel"):
        fitted.predict(np.zeros((1, 2, 16, 16), dtype=np.float32))


def test_labels_are_mapped_through_classes(scenes, tiny):
    X, y = scenes
    ref = tiny().fit(X, y)
    labels = np.array([-5, 10, 30])
    seg = tiny().fit(X, labels[y])
    np.testing.assert_array_equal(seg.classes_, labels)
    np.testing.assert_array_equal(seg.predict(X), labels[ref.predict(X)])
    assert seg.score(X, labels[y]) == pytest.approx(ref.score(X, y))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, bool])
def test_masks_of_any_integer_dtype_train_the_same_model(scenes, tiny, dtype):
    X, y = scenes
    if dtype is bool:
        y = y == 1
    ref = tiny().fit(X, y.astype(np.int64))
    seg = tiny().fit(X, y.astype(dtype))
    assert_same_model(ref, seg, X, atol=0)
    # predictions come in the masks' own dtype (bool masks as 0/1 uint8)
    assert seg.classes_.dtype == (np.uint8 if dtype is bool else dtype)
    assert seg.predict(X).dtype == seg.classes_.dtype
    np.testing.assert_array_equal(seg.predict(X), ref.predict(X))


def test_label_masks_are_stored_in_one_byte_and_read_by_chunks(monkeypatch, tiny):
    # Chunks of 4096 labels: a stack of masks larger than a chunk is encoded,
    # counted and weighed without a temporary of its own size, and stored as
    # uint8 class indices (int64 copies took 48 bytes a pixel at the peak).
    import tracemalloc

    from skweight import _class_weight, _validation

    monkeypatch.setattr(_validation, "_LABEL_CHUNK", 4096)
    monkeypatch.setattr(_class_weight, "_SUM_CHUNK", 4096)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (256, 1, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 3, (256, 32, 32)).astype(np.uint8) * 7  # labels 0, 7, 14
    seg = tiny(train_split=0.25, max_epochs=1)
    seg.fit(X[:16], y[:16])  # the first fit's imports allocate too
    tracemalloc.start()  # NumPy's allocations (torch's are not traced)
    try:
        seg.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    train, valid = seg.get_split_datasets(X, y)
    assert train.target.dtype == valid.target.dtype == torch.uint8
    np.testing.assert_array_equal(seg.classes_, [0, 7, 14])
    # Encoded labels (1 byte a pixel) and the chunks' temporaries: 1.7 bytes
    # a pixel; 17 without chunks, 49 with int64 copies of the masks.
    assert peak < 1.5 * y.nbytes + 4096 * 64, (peak, y.nbytes)
    prior = seg.targets_.train_prior
    np.testing.assert_allclose(prior, np.bincount(y[train.rows.numpy()].ravel() // 7)
                               / y[train.rows.numpy()].size)


def test_overlapping_masks_are_stored_in_one_byte(tiny):
    rng = np.random.default_rng(0)
    X = rng.random((64, 1, 16, 16), dtype=np.float32)
    y = (rng.random((64, 2, 16, 16)) < 0.3).astype(np.int8)
    seg = tiny(max_epochs=1, train_split=0.25).fit(X, y)
    train, valid = seg.get_split_datasets(X, y)
    assert train.target.dtype == valid.target.dtype == torch.int8
    # each label's prevalence, from the one-byte masks
    np.testing.assert_allclose(seg.targets_.train_prior,
                               y[train.rows.numpy()].mean(axis=(0, 2, 3)))
    as_float = tiny(max_epochs=2).fit(X, y.astype(np.float32))
    assert_same_model(tiny(max_epochs=2).fit(X, y), as_float, X, atol=0)
    # predicted masks: one byte per pixel and channel, thresholded at 0.5
    pred = as_float.predict(X)
    assert pred.dtype == np.uint8 and pred.shape == y.shape
    np.testing.assert_array_equal(pred, as_float.predict_proba(X) >= 0.5)


def test_flattened_and_uint8_images(scenes, tiny):
    X, y = scenes
    u8 = (np.clip(X, 0, 1) * 255).astype(np.uint8)
    a = tiny(max_epochs=1).fit(u8, y)
    b = tiny(max_epochs=1, input_shape=(1, 16, 16)).fit(u8.reshape(len(X), -1), y)
    assert_same_model(a, b, u8)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_named_criterion_trains(scenes, criterion, tiny):
    X, y = scenes
    seg = tiny(criterion=criterion).fit(X, y)
    losses = seg.history[:, "train_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    expected = {"cross_entropy": CrossEntropyLoss, "dice": DiceLoss,
                "dice_ce": DiceCELoss, "focal": FocalLoss, "tversky": TverskyLoss}
    assert type(seg.criterion_) is expected[criterion]


def test_learns_small_structures():
    # A reduced version of the benchmark (600 32x32 scenes with the
    # default settings, see examples/): 16x16 scenes, a narrower U-Net.
    X, y = make_disk_scenes(160, image_size=16, square_size=(5, 7), n_disks=(1, 3),
                            noise=0.5, random_state=1)
    Xt, yt = make_disk_scenes(60, image_size=16, square_size=(5, 7), n_disks=(1, 3),
                              noise=0.5, random_state=2)
    seg = CNNSegmenter(module__channels=(8, 16), lr=3e-3, max_epochs=12,
                       random_state=0).fit(X, y)
    per_class = dice_score(yt, seg.predict(Xt), labels=[1, 2], average=None)
    assert per_class.min() > 0.8, per_class


def test_default_segmenter_on_the_real_nuclei_image():
    # The quality the default network must keep (issue: foreground Dice
    # >= 0.88 on the nuclei tiles with max_epochs=10): train on the
    # left half's 32 tiles, segment the right half as one image.
    from skweight.datasets import load_nuclei, load_nuclei_tiles

    X, y, _, _ = load_nuclei_tiles(64)
    nuclei = load_nuclei()
    seg = CNNSegmenter(max_epochs=10, random_state=0).fit(X, y)
    right = nuclei.image[None, None, :, 256:]
    dice = dice_score(nuclei.mask[None, :, 256:].astype(int), seg.predict(right))
    assert dice >= 0.88, dice


@pytest.mark.cuda
def test_cuda(scenes, tiny):
    X, y = scenes
    seg = tiny(device="cuda").fit(X, y, sample_weight=np.ones(len(X)))
    assert next(seg.module_.parameters()).is_cuda
    assert seg.predict(X).shape == y.shape


# -- weights ---------------------------------------------------------------


def test_no_weights_take_the_fast_path(scenes, tiny):
    X, y = scenes
    seg = tiny(max_epochs=0).fit(X, y)
    assert seg.get_split_datasets(X, y)[0].weight is None
    # ignore_index set but no pixel carries it: still nothing to weight
    seg = tiny(ignore_index=255, max_epochs=0).fit(X, y)
    assert seg.get_split_datasets(X, y)[0].weight is None
    w = seg.get_split_datasets(X, y, sample_weight=np.arange(24.0) + 1)[0].weight
    assert w.shape == (24,)


@pytest.mark.parametrize("kind", ["image", "pixel"])
def test_scaling_all_weights_changes_nothing(scenes, kind, tiny):
    X, y = scenes
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 3, len(X) if kind == "image" else y.shape)
    a = tiny(batch_size=-1).fit(X, y, sample_weight=w)
    b = tiny(batch_size=-1).fit(X, y, sample_weight=w * 1e3)
    assert_same_model(a, b, X)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_zero_pixel_weight_equals_ignore_index(scenes, criterion, tiny):
    X, y = scenes
    y_ignored = y.copy()
    y_ignored[:, :4] = 255
    w = np.ones(y.shape)
    w[:, :4] = 0.0
    a = tiny(criterion=criterion, ignore_index=255).fit(X, y_ignored)
    b = tiny(criterion=criterion).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.score(X, y_ignored) == pytest.approx(b.score(X, y, sample_weight=w))


@pytest.mark.parametrize("criterion", ["cross_entropy", "dice_ce"])
def test_zero_image_weight_equals_leaving_the_image_out(scenes, criterion, tiny):
    X, y = scenes
    w = np.ones(len(X))
    w[::4] = 0.0
    keep = w > 0
    a = tiny(criterion=criterion, batch_size=-1).fit(X, y, sample_weight=w)
    b = tiny(criterion=criterion, batch_size=-1).fit(X[keep], y[keep])
    assert_same_model(a, b, X, atol=2e-5)


def test_integer_image_weight_equals_repeating_the_image(scenes, tiny):
    X, y = scenes
    w = np.ones(len(X))
    w[:3] = 2.0
    a = tiny(criterion="cross_entropy", batch_size=-1).fit(X, y, sample_weight=w)
    rep = np.r_[np.arange(len(X)), 0, 1, 2]
    b = tiny(criterion="cross_entropy", batch_size=-1).fit(X[rep], y[rep])
    assert_same_model(a, b, X, atol=2e-5)


@pytest.mark.parametrize("criterion, options", [
    ("cross_entropy", {}), ("cross_entropy", {"criterion__label_smoothing": 0.1}),
    ("focal", {}), ("dice", {}), ("dice", {"criterion__per_image": True}),
    ("dice", {"criterion__squared": True, "criterion__include_background": False}),
    ("dice_ce", {}), ("dice_ce", {"criterion__per_image": True}),
    ("tversky", {"criterion__alpha": 0.3, "criterion__beta": 0.7}),
    ("tversky", {"criterion__per_image": True}),
])
def test_integer_image_weight_equals_repeating_the_image_for_every_loss(
        scenes, criterion, options, tiny):
    X, y = scenes
    w = np.ones(len(X))
    w[:4] = [2.0, 3.0, 0.0, 2.0]
    kept = np.repeat(np.arange(len(X)), w.astype(int))
    kw = dict(criterion=criterion, batch_size=-1, **options)
    a = tiny(**kw).fit(X, y, sample_weight=w)
    b = tiny(**kw).fit(X[kept], y[kept])
    assert_same_model(a, b, X, atol=2e-5)
    # the weights matter: not the model of unweighted data
    c = tiny(**kw).fit(X, y)
    assert np.abs(a.predict_proba(X) - c.predict_proba(X)).max() > 1e-4


@pytest.mark.parametrize("criterion", ["cross_entropy", "dice"])
def test_class_weight_acts_as_pixel_weight(scenes, criterion, tiny):
    X, y = scenes
    cw = {0: 0.5, 1: 4.0, 2: 2.0}
    image_w = np.linspace(0.5, 2.0, len(X))
    a = tiny(criterion=criterion, class_weight=cw).fit(X, y, sample_weight=image_w)
    pixel_w = image_w[:, None, None] * np.array([0.5, 4.0, 2.0])[y]
    b = tiny(criterion=criterion).fit(X, y, sample_weight=pixel_w)
    assert_same_model(a, b, X)
    np.testing.assert_allclose(a.class_weight_, [0.5, 4.0, 2.0])


def test_balanced_class_weight_from_weighted_pixel_counts(scenes, tiny):
    X, y = scenes
    y = y.copy()
    y[:, 0] = 255  # ignored pixels do not count
    w = np.linspace(1.0, 3.0, len(X))
    seg = tiny(max_epochs=1, class_weight="balanced", ignore_index=255)
    seg.fit(X, y, sample_weight=w)
    kept = y != 255
    pixel_w = np.broadcast_to(w[:, None, None], y.shape)
    counts = np.array([pixel_w[kept & (y == k)].sum() for k in range(3)])
    np.testing.assert_allclose(seg.class_weight_, counts.sum() / (3 * counts))


def test_class_weight_in_fit_overrides_constructor(scenes, tiny):
    X, y = scenes
    a = tiny(class_weight="balanced").fit(X, y, class_weight={1: 3.0})
    b = tiny(class_weight={1: 3.0}).fit(X, y)
    np.testing.assert_allclose(a.class_weight_, [1.0, 3.0, 1.0])
    assert_same_model(a, b, X)
    assert a.class_weight == "balanced"  # the parameter itself is untouched


def test_class_weights_are_not_given_twice(scenes, tiny):
    X, y = scenes
    seg = tiny(criterion="focal", criterion__alpha=[1.0, 2.0, 3.0], class_weight="balanced")
    with pytest.raises(ValueError, match="applied twice"):
        seg.fit(X, y)
    seg = tiny(criterion="dice", criterion__class_weight=[1.0, 2.0, 3.0],
               class_weight={1: 2.0})
    with pytest.raises(ValueError, match="applied twice"):
        seg.fit(X, y)
    # Tversky's alpha weighs false positives, not classes: allowed.
    seg = tiny(criterion="tversky", criterion__alpha=0.3, criterion__beta=0.7,
               class_weight="balanced").fit(X, y)
    assert seg.criterion_.alpha == 0.3


def test_caller_arrays_are_not_modified(scenes, tiny):
    X, y = scenes
    X, y = X.copy(), y.copy()
    y[:, 0] = 255
    w = np.ones(y.shape)
    X0, y0, w0 = X.copy(), y.copy(), w.copy()
    tiny(max_epochs=1, ignore_index=255, class_weight="balanced").fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(w, w0)


def test_dataloader_path_gives_the_same_model(scenes, tiny):
    X, y = scenes
    y = y.copy()
    y[:, 0] = 255
    # Unshuffled: a DataLoader draws its worker seed from the generator
    # first, so a shuffled epoch visits the images in another (seeded) order.
    a = tiny(ignore_index=255, iterator_train__shuffle=False).fit(X, y)
    b = tiny(ignore_index=255, iterator_train__shuffle=False,
             iterator_train__num_workers=0).fit(X, y)
    assert_same_model(a, b, X)


def test_foreign_loss_and_module(scenes):
    X, y = scenes

    class PixelNet(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, 3, 1))

        def forward(self, x):
            return self.net(x)

    w = np.random.default_rng(0).uniform(0.5, 2, y.shape)
    seg = CNNSegmenter(PixelNet, module__width=6, criterion=nn.CrossEntropyLoss,
                       max_epochs=2, random_state=0).fit(X, y, sample_weight=w)
    assert seg.criterion_.reduction == "none"
    assert seg.module_.net[0].out_channels == 6
    assert seg.predict(X).shape == y.shape


def test_module_output_of_the_wrong_size_is_reported(scenes):
    X, y = scenes

    class EvenOnly(nn.Module):
        # Halves and doubles the resolution: odd sizes come back one short.
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(1, 4, 2, stride=2)
            self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)

        def forward(self, x):
            return self.up(self.down(x))

    seg = CNNSegmenter(EvenOnly, max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"logits of shape \(N, n_classes, H, W\)"):
        seg.predict(X[:, :, :15, :15])


def test_validation_split_reports_weighted_loss(scenes, tiny):
    X, y = scenes
    seg = tiny(train_split=0.25).fit(X, y, sample_weight=np.ones(len(X)))
    assert np.all(np.isfinite(seg.history[:, "valid_loss"]))


def test_partial_fit_continues_on_other_sizes(scenes, tiny):
    X, y = scenes
    seg = tiny(max_epochs=1).partial_fit(X, y, classes=[0, 1, 2])
    first = [p.detach().clone() for p in seg.module_.parameters()]
    seg.partial_fit(X[:, :, :12, :12], y[:, :12, :12])
    assert len(seg.history) == 2
    assert any(not torch.equal(a, b) for a, b in zip(first, seg.module_.parameters(),
                                                     strict=True))


# -- score -------------------------------------------------------------------


def test_score_is_mean_foreground_dice(scenes, fitted):
    X, y = scenes
    pred = fitted.predict(X)
    assert fitted.score(X, y) == pytest.approx(dice_score(y, pred, labels=[1, 2]))
    w = np.linspace(0, 1, len(X))
    assert fitted.score(X, y, sample_weight=w) == pytest.approx(
        dice_score(y, pred, labels=[1, 2], sample_weight=w))
    assert 0.0 <= fitted.score(X, y) <= 1.0


def test_score_skips_ignored_pixels(scenes, tiny):
    X, y = scenes
    y = y.copy()
    y[:, 8:] = 255
    seg = tiny(ignore_index=255).fit(X, y)
    pred = seg.predict(X)
    assert 255 not in seg.classes_
    assert seg.score(X, y) == pytest.approx(
        dice_score(y[:, :8], pred[:, :8], labels=[1, 2]))


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_y, match",
    [
        (lambda y: y[:, :15], r"shape \(N, H, W\) = \(24, 16, 16\)"),
        (lambda y: y[:, None], "Drop the channel axis"),
        (lambda y: y[:, 0, 0], "one label per pixel"),
        (lambda y: y + 0.5, "integer class labels"),
        (lambda y: y.astype(str), "integer class labels"),
        (lambda y: np.where(y == 0, np.nan, y), "integer class labels"),
        (lambda y: np.zeros_like(y), "only one class"),
    ],
)
def test_bad_masks(scenes, make_y, match, tiny):
    X, y = scenes
    with pytest.raises(ValueError, match=match):
        tiny().fit(X, make_y(y))


def test_bad_weights_and_parameters(scenes, tiny):
    X, y = scenes
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(24, 15, 16\)"):
        tiny().fit(X, y, sample_weight=np.ones((24, 15, 16)))
    with pytest.raises(ValueError, match="negative"):
        tiny().fit(X, y, sample_weight=-np.ones(24))
    with pytest.raises(ValueError, match="only zero weights"):
        tiny().fit(X, y, sample_weight=np.zeros(y.shape))
    with pytest.raises(ValueError, match="class_weight has labels"):
        tiny(class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(TypeError, match="ignore_index must be None or an int"):
        tiny(ignore_index=2.5).fit(X, y)
    with pytest.raises(ValueError, match="Every pixel of y has the label ignore_index"):
        tiny(ignore_index=0).fit(X, np.zeros_like(y))
    with pytest.raises(ValueError, match="criterion='bce' is for overlapping 0/1 masks"):
        tiny(criterion="bce").fit(X, y)
    with pytest.raises(ValueError, match="Every training pixel has weight 0"):
        tiny(class_weight={0: 0.0, 1: 1.0, 2: 1.0}).fit(
            X, y, sample_weight=(y == 0).astype(float))


def test_bad_images(scenes, tiny):
    X, y = scenes
    bad = X.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tiny().fit(bad, y)
    with pytest.raises(ValueError, match="inconsistent|shape"):
        tiny().fit(X[:10], y)
    with pytest.raises(ValueError, match="requires y"):
        tiny().fit(X, None)


def test_score_refuses_unknown_labels_and_bad_masks(scenes, fitted):
    X, y = scenes
    with pytest.raises(ValueError, match=r"labels not seen in fit: \[3\]"):
        fitted.score(X, np.where(y == 2, 3, y))
    with pytest.raises(ValueError, match="integer class labels"):
        fitted.score(X, y * 0.5)
    with pytest.raises(ValueError, match="matching the images"):
        fitted.score(X, y[:, :8])


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CNNSegmenter().predict(np.zeros((1, 1, 8, 8)))


# -- scikit-learn protocol -------------------------------------------------------


def test_clone_get_and_set_params():
    seg = CNNSegmenter(criterion="dice", class_weight="balanced", ignore_index=255,
                       module__channels=(4, 8), max_epochs=2)
    params = seg.get_params()
    assert params["criterion"] == "dice"
    assert params["ignore_index"] == 255
    assert params["module__channels"] == (4, 8)
    other = clone(seg)
    assert other.get_params()["class_weight"] == "balanced"
    other.set_params(criterion="focal", criterion__gamma=1.0, ignore_index=None)
    assert other.criterion == "focal" and other.ignore_index is None
    assert seg.criterion == "dice"


def test_pickle_round_trip(scenes, fitted):
    X, _ = scenes
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(restored.classes_, fitted.classes_)


def test_not_a_classifier_so_cv_splits_images(scenes, tiny):
    X, y = scenes
    seg = tiny(max_epochs=1)
    assert not is_classifier(seg)
    assert seg.__sklearn_tags__().estimator_type is None
    assert isinstance(check_cv(3, y, classifier=is_classifier(seg)), KFold)
    result = cross_validate(seg, X, y, cv=2, return_indices=True)
    for test, (_, expected) in zip(result["indices"]["test"], KFold(2).split(X),
                                   strict=True):
        np.testing.assert_array_equal(test, expected)
    scores = result["test_score"]
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_grid_search_over_criterion_with_default_scoring(scenes, tiny):
    X, y = scenes
    search = GridSearchCV(
        tiny(max_epochs=2),
        {"criterion": ["cross_entropy", "dice_ce"], "class_weight": [None, "balanced"]},
        cv=2,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
    assert search.best_estimator_.criterion == search.best_params_["criterion"]
    assert search.score(X, y) == pytest.approx(search.best_estimator_.score(X, y))


@pytest.mark.slow
def test_default_settings_learn_small_structures():
    # The benchmark: 600 noisy 32x32 scenes, default segmenter,
    # mean Dice over disks and squares above 0.8 on held-out scenes
    # (about 20 s of CPU time on one core).
    X, y = make_disk_scenes(600, random_state=0)
    Xt, yt = make_disk_scenes(200, random_state=1)
    seg = CNNSegmenter(random_state=0).fit(X, y)
    per_class = dice_score(yt, seg.predict(Xt), labels=[1, 2], average=None)
    assert per_class.mean() > 0.8, per_class
    assert per_class.min() > 0.75, per_class


# -- volumes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def volumes():
    """Noisy 8x12x12 volumes of one ball each (label 1) on background."""
    rng = np.random.default_rng(0)
    n, d, h, w = 12, 8, 12, 12
    zz, yy, xx = np.mgrid[:d, :h, :w]
    y = np.zeros((n, d, h, w), dtype=np.int64)
    for i in range(n):
        cz, cy, cx = rng.integers(3, [d - 3, h - 3, w - 3])
        y[i][(zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= 6.25] = 1
    X = y + rng.normal(0, 0.5, y.shape)
    return X.astype(np.float32), y


VOL = dict(module__channels=(4, 8), lr=1e-2, random_state=0)


def test_volumes_get_a_3d_unet_and_are_segmented(volumes):
    X, y = volumes
    seg = CNNSegmenter(max_epochs=15, **VOL).fit(X[:, None], y)
    assert seg.input_shape_ == (1, 8, 12, 12) and seg.module_.ndim == 3
    proba = seg.predict_proba(X[:, None])
    assert proba.shape == (12, 2, 8, 12, 12)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    assert seg.predict(X[:, None]).shape == y.shape
    assert seg.score(X[:, None], y) > 0.7
    # one-channel volumes may come as (N, D, H, W): masks of that shape in
    # fit, and a model fitted on volumes at prediction
    flat = CNNSegmenter(max_epochs=15, **VOL).fit(X, y)
    assert flat.input_shape_ == (1, 8, 12, 12)
    np.testing.assert_array_equal(flat.predict(X), seg.predict(X[:, None]))
    assert dice_score(y, flat.predict(X)) == pytest.approx(flat.score(X, y))
    # any D x H x W at prediction
    assert flat.predict(X[:2, :6, :7, :9]).shape == (2, 6, 7, 9)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_volume_weights_keep_their_meaning(volumes, criterion):
    X, y = volumes
    kw = dict(criterion=criterion, batch_size=-1, max_epochs=3, **VOL)
    w = np.ones(len(X))
    w[:3] = [2.0, 0.0, 3.0]
    kept = np.repeat(np.arange(len(X)), w.astype(int))
    a = CNNSegmenter(**kw).fit(X, y, sample_weight=w)
    b = CNNSegmenter(**kw).fit(X[kept], y[kept])
    # (3-D convolutions run other kernels for other batch sizes; training
    # amplifies their float32 differences a little more than in 2-D)
    assert_same_model(a, b, X, atol=1e-3)
    plain = CNNSegmenter(**kw).fit(X, y)
    assert np.abs(plain.predict_proba(X) - a.predict_proba(X)).max() > 1e-2
    # a voxel of weight 0 is an ignored voxel
    y_ignored = y.copy()
    y_ignored[:, 0] = 255
    voxel_w = np.ones(y.shape)
    voxel_w[:, 0] = 0.0
    c = CNNSegmenter(ignore_index=255, **kw).fit(X, y_ignored)
    d = CNNSegmenter(**kw).fit(X, y, sample_weight=voxel_w)
    np.testing.assert_array_equal(c.predict_proba(X), d.predict_proba(X))


def test_volume_inputs_and_refusals(volumes):
    from skweight import CNNClassifier, CNNRegressor

    X, y = volumes
    flat = X.reshape(len(X), -1)
    seg = CNNSegmenter(input_shape=(1, 8, 12, 12), max_epochs=1, **VOL).fit(flat, y)
    assert seg.input_shape_ == (1, 8, 12, 12)
    with pytest.raises(ValueError, match=r"label masks of shape \(N, D, H, W\)"):
        CNNSegmenter(max_epochs=1, **VOL).fit(X[:, None], y[:, 0])
    targets = {CNNClassifier: np.arange(12) % 2, CNNRegressor: X.sum((1, 2, 3))}
    for Estimator, target in targets.items():
        with pytest.raises(ValueError, match="takes 2-D images, not volumes"):
            Estimator(max_epochs=1).fit(X[:, None], target)
    with pytest.raises(ValueError, match=r"\(C, H, W\), \(H, W\) or \(C, D, H, W\)"):
        CNNSegmenter(input_shape=(1, 2, 3, 4, 5)).fit(flat, y)
    images = CNNSegmenter(max_epochs=1, **VOL).fit(X[:, 4], y[:, 4])
    with pytest.raises(ValueError, match="spatial dimensions|images"):
        images.predict(X[:, None])


# -- overlapping structures: 0/1 masks (N, C, H, W) ------------------------------------


@pytest.fixture(scope="module")
def nested(scenes):
    """Two overlapping structures per pixel: any object, and the class-2 objects."""
    X, y = scenes
    return X, np.stack([y > 0, y == 2], axis=1).astype(int)


def test_overlapping_masks_train_one_sigmoid_channel_each(nested, tiny):
    X, Y = nested
    seg = tiny().fit(X, Y)
    proba = seg.predict_proba(X)
    assert proba.shape == Y.shape and proba.dtype == np.float32
    assert not np.allclose(proba.sum(1), 1)  # independent channels, no softmax
    np.testing.assert_array_equal(seg.predict(X), (proba >= 0.5).astype(int))
    np.testing.assert_array_equal(seg.classes_, [0, 1])
    expected = np.mean([dice_score(Y[:, c], seg.predict(X)[:, c], labels=[1])
                        for c in range(2)])
    assert seg.score(X, Y) == pytest.approx(expected)
    assert seg.score(X, Y) == dice_score(Y, seg.predict(X), multilabel=True)


@pytest.mark.parametrize("criterion", ["bce", "dice_ce", "dice", "focal", "tversky"])
def test_overlapping_masks_weight_rules_per_element(nested, criterion, tiny):
    X, Y = nested
    X, Y = X[:10], Y[:10]
    k = np.random.default_rng(0).integers(0, 3, len(Y))
    kw = dict(criterion=criterion, batch_size=-1, class_weight="balanced")
    per_image = tiny(**kw).fit(X, Y, sample_weight=k)
    per_pixel = tiny(**kw).fit(X, Y, sample_weight=1e-30 * np.broadcast_to(
        k[:, None, None], (10, 16, 16)))
    copies = tiny(**kw).fit(np.repeat(X, k, axis=0), np.repeat(Y, k, axis=0))
    p = per_image.predict_proba(X)
    np.testing.assert_allclose(per_pixel.predict_proba(X), p, atol=1e-5)
    np.testing.assert_allclose(copies.predict_proba(X), p, atol=3e-5)


def test_overlapping_masks_class_weights_per_channel(nested, tiny):
    X, Y = nested
    seg = tiny(class_weight="balanced").fit(X, Y)
    cw = seg.class_weight_
    assert cw.shape == (2, 2)
    pos = (Y * cw[:, 1][None, :, None, None]).sum(axis=(0, 2, 3))
    neg = ((1 - Y) * cw[:, 0][None, :, None, None]).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(pos, neg)
    np.testing.assert_allclose(seg.train_prior_, Y.mean(axis=(0, 2, 3)))


def test_overlapping_masks_bad_input(nested, tiny):
    X, Y = nested
    with pytest.raises(ValueError, match="its values must be 0 or 1"):
        tiny().fit(X, Y * 2)
    with pytest.raises(ValueError, match="ignore_index=255 marks pixels of label masks"):
        tiny(ignore_index=255).fit(X, Y)


def test_input_shape_says_4d_images_when_masks_have_their_shape(tiny):
    # Masks of X's very shape read X as one-channel volumes, unless input_shape
    # says (C, H, W): then they are C overlapping masks of 2-D images.
    rng = np.random.default_rng(0)
    X = rng.random((6, 2, 16, 16)).astype(np.float32)
    Y = (X > 0.5).astype(int)
    volumes = tiny().fit(X, Y)
    assert volumes.input_shape_ == (1, 2, 16, 16)
    images = tiny(input_shape=(2, 16, 16)).fit(X, Y)
    assert images.input_shape_ == (2, 16, 16) and images.predict(X).shape == Y.shape
