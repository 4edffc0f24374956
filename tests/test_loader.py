"""The in-memory data path: BatchIterator, the DataLoader fallback, devices.

The slicing iterator must serve exactly what a DataLoader over the same
ArrayDataset serves (same rows, same order for the same seed, targets and
weights aligned with their images), so that both paths train the same
model; and the speed-ups around it (training mode set once per epoch,
prediction outputs gathered on the device) must not change what skorch's
callbacks and history see. CUDA tests are skipped without a GPU.
"""

import math
import os

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback, EarlyStopping, EpochScoring, LRScheduler
from torch import nn
from torch.utils.data import DataLoader

import skweight._fit.loop as training_module
from skweight import CNNClassifier
from skweight._fit.loader import ArrayDataset, BatchIterator, ShuffleSampler


@pytest.fixture(scope="module")
def digits(digit_images):
    X, y = digit_images(n=240, shuffle_rng=np.random.default_rng(0))
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(y))
    return X, y, w


def params_of(est):
    return [p.detach().cpu().clone() for p in est.module_.parameters()]


def tagged(n, weights=True):
    """Rows whose image, target and weight all encode the row number."""
    X = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1)
    y = torch.arange(n) * 10
    w = torch.arange(n, dtype=torch.float32) / 1000 if weights else None
    return ArrayDataset(X, y, w)


def rows_of(batches):
    return torch.cat([X.flatten() for X, _ in batches]).long()


def assert_aligned(batches):
    for X, (y, w) in batches:
        ids = X.flatten()
        torch.testing.assert_close(y, (ids * 10).long())
        torch.testing.assert_close(w, ids / 1000)


# -- BatchIterator ------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 32, 100, 250])
def test_every_row_is_served_once_per_pass(shuffle, batch_size):
    n = 100
    it = BatchIterator(tagged(n), batch_size, shuffle=shuffle,
                       generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        batches = list(it)
        assert len(batches) == len(it) == math.ceil(n / batch_size)
        sizes = [len(X) for X, _ in batches]
        assert sizes[:-1] == [batch_size] * (len(sizes) - 1)
        assert sum(sizes) == n
        rows = rows_of(batches)
        assert sorted(rows.tolist()) == list(range(n))
        assert_aligned(batches)
        if not shuffle:
            assert rows.tolist() == list(range(n))


def test_shuffling_draws_a_new_order_each_pass_and_repeats_with_the_seed():
    def orders(seed):
        it = BatchIterator(tagged(50), 8, shuffle=True,
                           generator=torch.Generator().manual_seed(seed))
        return [rows_of(it).tolist() for _ in range(3)]

    first = orders(3)
    assert first == orders(3)
    assert first[0] != first[1] != first[2]
    assert first[0] != list(range(50))
    assert orders(4) != first


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last(shuffle):
    it = BatchIterator(tagged(100), 32, shuffle=shuffle, drop_last=True,
                       generator=torch.Generator().manual_seed(0))
    batches = list(it)
    assert len(batches) == len(it) == 3
    assert all(len(X) == 32 for X, _ in batches)
    rows = rows_of(batches)
    assert len(set(rows.tolist())) == 96
    assert_aligned(batches)
    assert list(BatchIterator(tagged(10), 32, drop_last=True)) == []
    assert len(BatchIterator(tagged(10), 32, drop_last=True)) == 0


class FixedRows:
    """An ``epoch_indices`` callable: the same rows (with repeats) each pass."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def __len__(self):
        return len(self.rows)

    def __call__(self, generator=None):
        return torch.from_numpy(self.rows)


@pytest.mark.parametrize("shuffle", [False, True])
def test_epoch_indices_choose_the_rows_of_each_pass(shuffle):
    rows = [0, 0, 1, 5, 5, 5, 9, 3]
    it = BatchIterator(tagged(10), 3, shuffle=shuffle, epoch_indices=FixedRows(rows),
                       generator=torch.Generator().manual_seed(0))
    assert len(it) == 3
    batches = list(it)
    served = rows_of(batches).tolist()
    assert sorted(served) == sorted(rows)
    if not shuffle:
        assert served == rows
    assert_aligned(batches)


def test_unweighted_and_target_free_batches():
    X, y = next(iter(BatchIterator(tagged(5, weights=False), 2)))
    assert y.tolist() == [0, 10]
    X, y = next(iter(BatchIterator(ArrayDataset(torch.zeros(5, 1, 2, 2)), 2)))
    assert y is None and X.shape == (2, 1, 2, 2)


def test_unshuffled_batches_are_views_not_copies():
    ds = tagged(20)
    X, (y, w) = next(iter(BatchIterator(ds, 8)))
    assert X.data_ptr() == ds.X.data_ptr()
    assert y.data_ptr() == ds.y.data_ptr() and w.data_ptr() == ds.weight.data_ptr()


def test_array_dataset_take_with_weight_and_items():
    ds = tagged(6)
    sub = ds.take([4, 1])
    assert sub.images().flatten().tolist() == [4.0, 1.0] and sub.y.tolist() == [40, 10]
    assert sub.X.data_ptr() == ds.X.data_ptr()  # the images are not copied
    assert len(sub) == 2 and sub.weight.tolist() == pytest.approx([0.004, 0.001])
    other = ds.with_weight(torch.ones(6))
    assert other.X is ds.X and other.y is ds.y
    assert ds.nbytes == 6 * 4 + 6 * 8 + 6 * 4
    x, (y, w) = ds[2]
    assert x.item() == 2 and y.item() == 20 and w.item() == pytest.approx(0.002)
    x, y = tagged(3, weights=False)[1]
    assert y.item() == 10


def test_shuffle_sampler_and_dataloader_serve_the_slicing_iterators_batches():
    ds = tagged(23)
    loader = DataLoader(ds, batch_size=5,
                        sampler=ShuffleSampler(23, torch.Generator().manual_seed(7)))
    it = BatchIterator(ds, 5, shuffle=True, generator=torch.Generator().manual_seed(7))
    for _ in range(3):
        via_loader = [(X, (y, w)) for X, (y, w) in loader]
        via_slicing = list(it)
        assert len(via_loader) == len(via_slicing) == len(it)
        for (Xa, (ya, wa)), (Xb, (yb, wb)) in zip(via_loader, via_slicing, strict=True):
            assert torch.equal(Xa, Xb) and torch.equal(ya, yb) and torch.equal(wa, wb)


# -- the estimators' two data paths --------------------------------------------


@pytest.mark.parametrize("batch_size", [-1, 32])
def test_fast_path_and_dataloader_path_train_the_same_model(digits, batch_size, tiny_cnn):
    X, y, w = digits
    common = dict(batch_size=batch_size, max_epochs=3, lr=1e-2, class_weight="balanced",
                  train_split=0.25, **tiny_cnn)
    fast = CNNClassifier(**common)
    # Any iterator setting besides batch_size/shuffle/drop_last needs a DataLoader.
    slow = CNNClassifier(iterator_train__num_workers=0, iterator_train__shuffle=True,
                         iterator_valid__num_workers=0, **common)
    probe = ArrayDataset(torch.zeros(2, 1, 8, 8))
    fast.fit(X, y, sample_weight=w)
    slow.fit(X, y, sample_weight=w)
    assert fast._fast_path(probe, True) and fast._fast_path(probe, False)
    assert not slow._fast_path(probe, True) and not slow._fast_path(probe, False)
    for pa, pb in zip(params_of(fast), params_of(slow), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    for key in ("train_loss", "valid_loss", "train_batch_count", "valid_batch_count"):
        np.testing.assert_allclose(fast.history[:, key], slow.history[:, key], rtol=1e-5)
    np.testing.assert_allclose(fast.predict_proba(X), slow.predict_proba(X), atol=1e-6)


def test_fixed_random_state_repeats_itself_on_the_fast_path(digits, tiny_cnn):
    X, y, w = digits
    clf = CNNClassifier(batch_size=16, max_epochs=2, **tiny_cnn)
    first = params_of(clf.fit(X, y, sample_weight=w))
    losses = clf.history[:, "train_loss"]
    again = params_of(clf.fit(X, y, sample_weight=w))
    cloned = params_of(clone(clf).fit(X, y, sample_weight=w))
    for a, b, c in zip(first, again, cloned, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert clf.history[:, "train_loss"] == losses


def test_history_losses_are_batch_size_weighted_means(digits, tiny_cnn):
    X, y, w = digits
    clf = CNNClassifier(batch_size=50, max_epochs=2, train_split=0.25, **tiny_cnn)
    clf.fit(X, y, sample_weight=w)
    for epoch in clf.history:
        for prefix in ("train", "valid"):
            batches = [b for b in epoch["batches"] if prefix + "_loss" in b]
            sizes = np.array([b[prefix + "_batch_size"] for b in batches])
            losses = np.array([b[prefix + "_loss"] for b in batches])
            assert all(isinstance(v, float) for v in losses)
            assert epoch[prefix + "_batch_count"] == len(batches)
            assert epoch[prefix + "_loss"] == pytest.approx(
                np.sum(sizes * losses) / sizes.sum(), rel=1e-6)
        assert [b["train_batch_size"] for b in epoch["batches"][:4]] == [50, 50, 50, 30]


def test_deferred_loss_readback_records_the_same_history(digits, monkeypatch, tiny_cnn):
    # On a GPU the batch losses are read back once per epoch; force that
    # path here and compare with the per-batch read-back.
    X, y, w = digits
    make = lambda: CNNClassifier(batch_size=50, max_epochs=2,  # noqa: E731
                                 train_split=0.25, **tiny_cnn)
    eager = make().fit(X, y, sample_weight=w)
    monkeypatch.setattr(CNNClassifier, "_defer_loss_readback", lambda self: True)
    lazy = make().fit(X, y, sample_weight=w)
    for key in ("train_loss", "valid_loss"):
        assert lazy.history[:, key] == eager.history[:, key]
    assert lazy.history[:, "batches"] == eager.history[:, "batches"]


def test_full_batch_train_loss_is_the_weighted_loss_of_all_data(digits, tiny_cnn):
    X, y, w = digits
    start = CNNClassifier(batch_size=-1, max_epochs=0, **tiny_cnn).fit(X, y)
    with torch.no_grad():
        logits = start.module_(torch.as_tensor(X)).double()
    labels = torch.as_tensor(np.searchsorted(start.classes_, y))
    nll = torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy()
    expected = float(np.sum(w * nll) / np.sum(w))
    clf = CNNClassifier(batch_size=-1, max_epochs=1, **tiny_cnn).fit(X, y, sample_weight=w)
    assert clf.history[-1, "train_batch_count"] == 1
    assert clf.history[-1, "train_loss"] == pytest.approx(expected, rel=1e-5)


def test_skorch_callbacks_still_work(digits, capsys, tiny_cnn):
    X, y, w = digits
    clf = CNNClassifier(
        batch_size=32, max_epochs=30, lr=1e-2, train_split=0.25, verbose=1,
        callbacks=[
            EarlyStopping(monitor="valid_loss", patience=2, threshold=0.5),
            # Reads each batch's train_loss in on_batch_end.
            LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, monitor="train_loss",
                        step_every="batch"),
        ],
        **tiny_cnn,
    ).fit(X, y, sample_weight=w)
    out = capsys.readouterr().out
    for column in ("epoch", "train_loss", "valid_loss", "dur"):
        assert column in out
    assert 3 <= len(clf.history) < 30  # 50% relative gains stop coming quickly
    assert all(np.isfinite(clf.history[:, "valid_loss"]))
    assert all(np.isfinite(clf.history[:, "train_loss"]))


class TargetsSeen(Callback):
    def on_batch_end(self, net, batch, training, **kwargs):
        self.y = batch[1]


def test_callbacks_see_targets_not_weights(digits, tiny_cnn):
    X, y, w = digits
    spy = TargetsSeen()
    CNNClassifier(batch_size=32, max_epochs=1, callbacks=[spy], **tiny_cnn).fit(
        X, y, sample_weight=w)
    assert isinstance(spy.y, torch.Tensor) and spy.y.dtype == torch.int64


def test_epoch_scoring(digits, tiny_cnn):
    # skorch's EpochScoring predicts on the internal validation dataset and
    # compares with its encoded targets; string labels must not break that.
    X, y, _ = digits
    names = np.array(list("abcdefghij"))[y]
    clf = CNNClassifier(
        batch_size=32, max_epochs=12, lr=1e-2, train_split=0.25,
        callbacks=[EpochScoring("accuracy", lower_is_better=False, name="valid_acc")],
        **tiny_cnn,
    ).fit(X, names)
    accs = clf.history[:, "valid_acc"]
    assert all(0 <= a <= 1 for a in accs)
    assert accs[-1] > 0.5


def test_epoch_scoring_regressor_uses_internal_targets(digits, tiny_cnn):
    from skweight import CNNRegressor

    X, y, _ = digits
    reg = CNNRegressor(
        batch_size=32, max_epochs=12, lr=1e-2, train_split=0.25,
        callbacks=[EpochScoring("r2", lower_is_better=False, name="valid_r2")],
        **tiny_cnn,
    ).fit(X, y * 100.0 + 1e3)
    assert reg.history[-1, "valid_r2"] > 0.3


class ModeSpy(nn.Module):
    """Records (grad enabled, training) at every forward."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Dropout(0.0), nn.Linear(64, n_classes))
        self.calls = []

    def forward(self, x):
        self.calls.append((torch.is_grad_enabled(), self.training, self.body[1].training))
        return self.body(x)


class PredictMidEpoch(Callback):
    def on_batch_end(self, net, batch, training, **kwargs):
        if training:
            net.predict_proba(batch[0][:3].cpu().numpy())


def test_training_steps_run_in_train_mode_and_the_rest_in_eval_mode(digits):
    X, y, _ = digits
    clf = CNNClassifier(ModeSpy, batch_size=64, max_epochs=2, train_split=0.25,
                        callbacks=[PredictMidEpoch()], random_state=0, device="cpu")
    clf.fit(X, y)
    clf.predict(X)
    calls = clf.module_.calls
    assert len({grad for grad, _, _ in calls}) == 2
    for grad, top, sub in calls:
        # with gradients: a training step; without: validation or prediction
        assert top == sub == grad


def test_predictions_equal_a_raw_forward_and_do_not_depend_on_chunking(digits, monkeypatch,
                                                                       tiny_cnn):
    X, y, _ = digits
    clf = CNNClassifier(batch_size=50, max_epochs=1, **tiny_cnn).fit(X, y)
    module = clf.module_.eval()
    with torch.no_grad():
        expected = torch.softmax(module(torch.as_tensor(X)).double(), 1).numpy()
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba, expected, rtol=1e-6, atol=1e-7)
    monkeypatch.setattr(training_module, "_OUTPUT_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


def test_training_batches_share_memory_with_the_callers_images(digits, tiny_cnn):
    X, y, _ = digits
    seen = []

    class Spy(Callback):
        def on_batch_begin(self, net, batch, training, **kwargs):
            if training:
                seen.append(np.shares_memory(batch[0].numpy(), X))

    CNNClassifier(batch_size=60, max_epochs=1, iterator_train__shuffle=False,
                  callbacks=[Spy()], **tiny_cnn).fit(X, y)
    assert seen == [True] * 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
@pytest.mark.parametrize("options", [
    dict(precision="bf16"), dict(precision="fp16"), dict(channels_last=True),
    dict(precision="fp16", channels_last=True, data_device_fraction=1.0),
])
def test_cuda_options_are_ignored_on_the_cpu(digits, options, tiny_cnn):
    X, y, w = digits
    plain = CNNClassifier(batch_size=32, max_epochs=1, **tiny_cnn).fit(X, y,
                                                                     sample_weight=w)
    clf = CNNClassifier(batch_size=32, max_epochs=1, **options, **tiny_cnn)
    clf.fit(X, y, sample_weight=w)
    assert clf.device_.type == "cpu" and clf.grad_scaler_ is None
    for a, b in zip(params_of(plain), params_of(clf), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(clf.predict_proba(X), plain.predict_proba(X))


@pytest.mark.skipif(os.environ.get("SKWEIGHT_TEST_COMPILE") != "1",
                    reason="torch.compile spends 30 s (idle 2-core CPU) to minutes "
                           "building kernels; set SKWEIGHT_TEST_COMPILE=1 to run it")
def test_compile_is_usable(digits, tiny_cnn):
    X, y, _ = digits
    clf = CNNClassifier(compile=True, batch_size=64, max_epochs=2, **tiny_cnn).fit(X, y)
    plain = CNNClassifier(batch_size=64, max_epochs=2, **tiny_cnn).fit(X, y)
    assert type(clf.module_).__name__ == "OptimizedModule"
    np.testing.assert_allclose(clf.predict_proba(X), plain.predict_proba(X), atol=1e-4)


# -- CUDA --------------------------------------------------------------------


class BatchDevices(Callback):
    def __init__(self):
        self.seen = []

    def on_batch_begin(self, net, batch, training, **kwargs):
        Xb, yb = batch
        tensors = [Xb, *(yb if isinstance(yb, (tuple, list)) else [yb])]
        self.seen.append({t.device.type for t in tensors})


@pytest.mark.cuda
@pytest.mark.parametrize("fraction", [0.5, 0.0])  # on the GPU; pinned host memory
def test_cuda_placement_and_prediction(digits, fraction, tiny_cnn):
    X, y, w = digits
    spy = BatchDevices()
    clf = CNNClassifier(batch_size=32, max_epochs=2, train_split=0.25, callbacks=[spy],
                        data_device_fraction=fraction, **tiny_cnn)
    assert clf.device == "auto"
    clf.fit(X, y, sample_weight=w, class_weight="balanced")
    assert clf.device_.type == "cuda"
    assert all(p.device.type == "cuda" for p in clf.module_.parameters())
    assert spy.seen and all(s == {"cuda"} for s in spy.seen)
    train, valid = clf.get_split_datasets(X, y, sample_weight=w, class_weight="balanced")
    if fraction > 0:
        assert train.X.is_cuda and valid.X.is_cuda
    else:
        assert train.X.is_pinned() and not train.X.is_cuda
    # lazy loss read-back still fills the history with floats
    batches = clf.history[-1, "batches"]
    assert all(isinstance(b["train_loss"], float) for b in batches if "train_loss" in b)
    sizes = np.array([b["train_batch_size"] for b in batches if "train_loss" in b])
    losses = np.array([b["train_loss"] for b in batches if "train_loss" in b])
    assert clf.history[-1, "train_loss"] == pytest.approx(
        np.sum(sizes * losses) / sizes.sum(), rel=1e-5)
    proba = clf.predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X), 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    assert clf.predict(X).dtype == y.dtype


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda(digits, precision, tiny_cnn):
    X, y, w = digits
    clf = CNNClassifier(batch_size=32, max_epochs=10, lr=1e-2, precision=precision,
                        **tiny_cnn).fit(X, y, sample_weight=w, class_weight="balanced")
    assert (clf.grad_scaler_ is not None) == (precision == "fp16")
    losses = np.array(clf.history[:, "train_loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0]
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.all(np.isfinite(proba))
    assert np.mean(clf.predict(X) == y) > 0.5


@pytest.mark.cuda
def test_channels_last_on_cuda(digits, tiny_cnn):
    X, y, _ = digits
    clf = CNNClassifier(batch_size=32, max_epochs=2, channels_last=True,
                        **tiny_cnn).fit(X, y)
    plain = CNNClassifier(batch_size=32, max_epochs=2, **tiny_cnn).fit(X, y)
    conv = next(m for m in clf.module_.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(clf.predict_proba(X), plain.predict_proba(X), atol=1e-2)


@pytest.mark.cuda
def test_batch_listeners_get_the_loss_on_cuda(digits, tiny_cnn):
    # A callback reading the batch loss in on_batch_end turns the lazy
    # read-back off.
    X, y, _ = digits
    clf = CNNClassifier(
        batch_size=32, max_epochs=2,
        callbacks=[LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau,
                               monitor="train_loss", step_every="batch")],
        **tiny_cnn,
    ).fit(X, y)
    assert np.all(np.isfinite(clf.history[:, "train_loss"]))


class ImageFolderLike(torch.utils.data.Dataset):
    """A user's Dataset: uint8 (H, W) images read one at a time, with labels."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i], self.labels[i]


def test_user_dataset_trains_like_arrays(digits, tiny_cnn):
    # Same seeded permutations on both paths, so the models match with
    # shuffled mini-batches, weights, class weights and a hold-out split.
    X, y, w = digits
    X8 = (X[:, 0] * 255).round().astype(np.uint8)
    params = dict(batch_size=32, max_epochs=2, train_split=0.2, class_weight="balanced",
                  **tiny_cnn)
    source = ImageFolderLike(X8, y)
    lazy = CNNClassifier(**params).fit(source, y, sample_weight=w)
    eager = CNNClassifier(**params).fit(X8, y, sample_weight=w)
    assert source.reads >= 2 * len(y)  # read item by item, every epoch
    assert lazy.input_shape_ == (1, 8, 8) and lazy.n_features_in_ == 64
    np.testing.assert_allclose(lazy.predict_proba(X8), eager.predict_proba(X8), atol=1e-5)
    np.testing.assert_allclose(lazy.predict_proba(source), eager.predict_proba(X8),
                               atol=1e-5)
    assert lazy.history[-1, "valid_loss"] == pytest.approx(
        eager.history[-1, "valid_loss"], rel=1e-4)


# One epoch on 24 scenes is a shape check, not a fit: the regressor's
# collapse warning is right to fire and is not what this test is about.
@pytest.mark.filterwarnings("ignore::skweight.exceptions.PredictionCollapseWarning")
def test_user_dataset_for_segmenter_and_regressor(tiny_cnn):
    from skweight import CNNRegressor, CNNSegmenter
    from skweight.datasets import make_disk_scenes

    X, masks = make_disk_scenes(24, random_state=0)
    seg = CNNSegmenter(max_epochs=1, random_state=0, module__channels=(4, 8))
    seg.fit(ImageFolderLike(X[:, 0] if X.ndim == 4 else X, masks), masks)
    assert seg.predict(X).shape == masks.shape
    reg = CNNRegressor(max_epochs=1, **tiny_cnn)
    targets = masks.reshape(len(masks), -1).mean(1)
    reg.fit(ImageFolderLike(X[:, 0] if X.ndim == 4 else X, targets), targets)
    assert reg.predict(X).shape == targets.shape


def test_user_dataset_errors(digits, tiny_cnn):
    X, y, _ = digits
    with pytest.raises(ValueError, match="0 sample"):
        CNNClassifier(**tiny_cnn).fit(ImageFolderLike(X[:0], y[:0]), y[:0])
    with pytest.raises(ValueError, match=r"images of shape \(C, H, W\)"):
        CNNClassifier(**tiny_cnn).fit(ImageFolderLike(X.reshape(-1, 1, 1, 8, 8), y), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        CNNClassifier(**tiny_cnn).fit(ImageFolderLike(X, y), y[:-1])
    with pytest.raises(ValueError, match="needs the images in memory"):
        CNNClassifier(sampler="balanced", **tiny_cnn).fit(ImageFolderLike(X, y), y)
    clf = CNNClassifier(max_epochs=1, **tiny_cnn).fit(X, y)
    with pytest.raises(ValueError, match=r"3 channel\(s\)"):
        clf.predict(ImageFolderLike(np.zeros((2, 3, 8, 8)), [0, 0]))


# -- integer images and no copies ----------------------------------------------


def _uint8_digits(digit_images):
    X, y = digit_images(n=300, shuffle_rng=np.random.default_rng(0))
    # Exactly representable as uint8 / 255, so that both paths see the same
    # numbers.
    X8 = np.round(X * 255).astype(np.uint8)
    return X8, X8.astype(np.float32) / np.float32(255), y


@pytest.mark.parametrize("options", [
    dict(),
    dict(train_split=0.25, sampler="balanced"),
    dict(batch_size=32, iterator_train__num_workers=0),  # the DataLoader path
])
def test_uint8_images_train_the_model_of_the_float_images(digit_images, tiny_cnn,
                                                          options):
    X8, Xf, y = _uint8_digits(digit_images)
    settings = {**tiny_cnn, "max_epochs": 2, **options}
    a = CNNClassifier(**settings).fit(X8, y)
    b = CNNClassifier(**settings).fit(Xf, y)
    for p, q in zip(params_of(a), params_of(b), strict=True):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.predict_proba(X8), b.predict_proba(Xf))
    assert a.predict_proba(X8).dtype == np.float32


def test_uint8_dataset_items_are_scaled_like_arrays(digit_images, tiny_cnn):
    X8, Xf, y = _uint8_digits(digit_images)
    items = torch.utils.data.TensorDataset(torch.from_numpy(X8))
    a = CNNClassifier(max_epochs=1, batch_size=50, **tiny_cnn).fit(items, y)
    b = CNNClassifier(max_epochs=1, batch_size=50, **tiny_cnn).fit(Xf, y)
    np.testing.assert_allclose(a.predict_proba(items), b.predict_proba(Xf), atol=1e-6)


def test_split_and_sampler_hold_row_numbers_not_copies(digit_images, tiny_cnn, tmp_path):
    X8, _, y = _uint8_digits(digit_images)
    path = tmp_path / "X.npy"
    np.save(path, X8)
    mm = np.load(path, mmap_mode="r")
    clf = CNNClassifier(train_split=0.2, sampler="balanced", max_epochs=1, **tiny_cnn)
    clf.fit(mm, y)
    train, valid = clf.get_split_datasets(mm, y)
    for part in (train, valid):
        assert part.X.dtype == torch.uint8
        assert np.shares_memory(part.X.numpy(), mm)
        assert part.rows is not None
    assert len(train) + len(valid) == len(y)
    assert not set(train.rows.tolist()) & set(valid.rows.tolist())
    np.testing.assert_array_equal(clf.predict(mm), clf.predict(np.asarray(mm)))


_MEMORY_SCRIPT = r"""
import json, sys, threading, time
import numpy as np, torch
from torch import nn
torch.set_num_threads(1)
from skweight import CNNClassifier

def anon_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

peak = [0]
def watch(stop):
    while not stop.is_set():
        peak[0] = max(peak[0], anon_kib())
        time.sleep(0.002)

mm = np.load(sys.argv[1], mmap_mode="r")
y = np.arange(len(mm)) % 2
net = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 2))
clf = CNNClassifier(net, train_split=0.2, max_epochs=1, batch_size=256, random_state=0)
clf.fit(mm[:8], y[:8])  # warm-up: torch's own allocations
base = anon_kib()
stop = threading.Event()
thread = threading.Thread(target=watch, args=(stop,))
thread.start()
clf.fit(mm, y)
proba = clf.predict_proba(mm)
stop.set(); thread.join()
print(json.dumps({"input": mm.nbytes, "output": proba.nbytes,
                  "increase": (peak[0] - base) * 1024}))
"""


def test_read_only_memmap_is_neither_copied_at_fit_nor_at_prediction(tmp_path):
    # RssAnon counts the process's own memory, not the file's pages it reads:
    # a float32 copy of these images would add 4x their bytes. The bound is
    # the target for fit (1.5x). glibc's dynamic mmap threshold is
    # turned off in the child: with it, freed batch-sized blocks may stay
    # resident in a fragmented heap and the peak then varied from 0.8x to
    # 3.5x the input from run to run, live memory or not
    # (benchmarks/bench_memory.py, "glibc").
    import json
    import subprocess
    import sys

    X = np.random.default_rng(0).integers(0, 256, (3000, 3, 64, 64), dtype=np.uint8)
    path = tmp_path / "X.npy"
    np.save(path, X)
    script = tmp_path / "measure.py"
    script.write_text(_MEMORY_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, str(script), str(path)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["increase"] < 1.5 * found["input"] + found["output"], found
