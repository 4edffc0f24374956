"""The weight path: split, fold, normalise (skweight._fit.weight_path)."""

import warnings

import numpy as np
import pytest
import torch

from skweight._fit import weight_path
from skweight._fit.loader import ArrayDataset
from skweight._fit.weight_path import (
    fold_weights,
    split_validation,
    weigh,
)


def _weighed(weight, target=None, class_weight=None, counts=None, mask=None):
    n = len(weight if weight is not None else target)
    target = torch.zeros(n, dtype=torch.long) if target is None else torch.as_tensor(target)
    data = ArrayDataset(torch.zeros(n, 1, 1, 1), target,
                        None if weight is None else torch.as_tensor(weight),
                        None if mask is None else torch.as_tensor(mask))
    return weigh(data, class_weight, counts, training=True, unit="sample",
                 sources="").weight.numpy()


def test_weigh_tiny_and_huge_scales():
    rng = np.random.default_rng(0)
    w = 10.0 ** rng.uniform(-100, 0, size=1000)
    with pytest.warns(UserWarning, match="effective sample size"):  # 9.35 of 1000
        ref = _weighed(w)
    assert ref.dtype == np.float32 and np.isclose(ref.mean(dtype=np.float64), 1.0)
    # float64 all the way, one cast: only weights below float32's range are lost
    np.testing.assert_allclose(ref, w / w.mean(), rtol=1e-6, atol=1e-38)
    for scale in (1e-200, 1e-100, 1e200):
        with pytest.warns(UserWarning, match="effective sample size"):
            np.testing.assert_allclose(_weighed(w * scale), ref, rtol=1e-6, atol=1e-38)
    assert np.all(np.isfinite(ref)) and ref.max() > 1


def test_weigh_by_chunks_of_rows_equals_at_once(monkeypatch):
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, (20, 4, 4))
    sw = rng.random(20)
    ignore = rng.random((20, 4, 4)) > 0.1
    counts = rng.integers(0, 3, 20).astype(float)
    whole = _weighed(sw, masks, np.array([1.0, 2.0, 5.0]), counts, ignore)
    expected = sw[:, None, None] * np.array([1.0, 2.0, 5.0])[masks] * ignore
    served = counts[:, None, None] * np.ones_like(expected)
    expected /= np.sum(served * expected) / served.sum()
    np.testing.assert_allclose(whole, expected, rtol=1e-6)
    monkeypatch.setattr(weight_path, "_WEIGH_CHUNK", 40)  # 2 rows a chunk
    chunked = _weighed(sw, masks, np.array([1.0, 2.0, 5.0]), counts, ignore)
    np.testing.assert_allclose(chunked, whole, rtol=1e-7)


def test_small_effective_sample_size_warns():
    w = np.r_[1.0, np.full(999, 1e-60)]
    with pytest.warns(UserWarning, match=r"= 1, is below 1% of the 1000 weighted samples"):
        _weighed(w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _weighed(np.linspace(0.5, 1.5, 100))




def test_fold_weights_multiplies_factors_of_any_scale():
    y = np.array([0, 1, 1, 2])
    sw = np.array([1e-300, 2e-300, 4e-300, 1e-300])
    cw = np.array([1e200, 2e200, 4e200])
    mask = np.array([True, True, False, True])
    w = fold_weights(y, sw, cw, mask)
    np.testing.assert_allclose(w, [1 / 16, 1 / 4, 0.0, 1 / 4])
    assert fold_weights(y) is None
    np.testing.assert_allclose(fold_weights(y, sw), sw / sw.max())


def test_weigh_counts_rows_as_served():
    w = np.array([1.0, 3.0])
    # row 0 served three times: the mean over served rows is (3 + 3) / 4
    np.testing.assert_allclose(_weighed(w, counts=np.array([3.0, 1.0])), w / 1.5)
    # a row never served neither counts in the mean nor saves the split
    np.testing.assert_allclose(_weighed(w, counts=np.array([0.0, 1.0])), w / 3)
    with pytest.raises(ValueError, match="Every training sample has weight 0"):
        _weighed(w, counts=np.array([0.0, 0.0]))


def test_weigh_normalises_once_to_float32_mean_one():
    data = ArrayDataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 1, 1]),
                        torch.tensor([1e-100, 1e-100, 3e-100, 0.0], dtype=torch.float64))
    out = weigh(data, np.array([3.0, 1.0]), None, training=True, unit="sample",
                sources=" and class_weight")
    assert out.weight.dtype == torch.float32
    np.testing.assert_allclose(out.weight.numpy(), np.array([3, 1, 3, 0]) / 1.75, rtol=1e-6)
    zero = data.replace(weight=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="Every training sample has weight 0"):
        weigh(zero, None, None, training=True, unit="sample", sources="")


def test_split_validation_is_seeded_and_stratified():
    y = np.repeat([0, 1], [40, 10])
    data = ArrayDataset(torch.arange(50.0).reshape(50, 1, 1, 1), torch.from_numpy(y))
    train, valid = split_validation(data, 0.2, seed=0, stratify=y, split_params={})
    again, _ = split_validation(data, 0.2, seed=0, stratify=y, split_params={})
    assert len(valid) == 10 and np.bincount(valid.target.numpy()).tolist() == [8, 2]
    torch.testing.assert_close(train.X, again.X)
    assert split_validation(data, None, seed=0, stratify=y, split_params={}) == (data, None)


def test_fold_weights_per_label_for_multilabel_targets():
    Y = np.array([[1, 0], [0, 0], [1, 1]])
    cw = np.array([[1.0, 4.0], [2.0, 8.0]])  # (negatives, positives) per label
    w = fold_weights(Y, np.array([1.0, 0.5, 1.0]), cw)
    np.testing.assert_allclose(w, np.array([[4, 2], [0.5, 1], [4, 8]]) / 8)


def test_iterative_split_keeps_every_label_in_both_parts():
    from skweight._fit.weight_path import iterative_split

    rng = np.random.default_rng(0)
    Y = (rng.random((500, 6)) < [0.5, 0.2, 0.05, 0.02, 0.01, 0.3]).astype(int)
    train, test = iterative_split(Y, 0.2, seed=0)
    assert len(test) == 100 and len(train) == 400
    assert not set(train) & set(test)
    # each label's positives split 80/20 to within one sample
    np.testing.assert_allclose(Y[test].sum(0), 0.2 * Y.sum(0), atol=1)
    # a plain random split misses rare labels far more
    plain = rng.permutation(500)[:100]
    assert np.abs(Y[plain].sum(0) - 0.2 * Y.sum(0)).max() >= np.abs(
        Y[test].sum(0) - 0.2 * Y.sum(0)).max()
    again, _ = iterative_split(Y, 0.2, seed=0)
    np.testing.assert_array_equal(again, train)
