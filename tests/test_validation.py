"""The package's one set of validation rules and messages."""

import numpy as np
import pytest
import torch

from skweight._validation import (
    check_bool,
    check_class_mass,
    check_ignore_index,
    check_int,
    check_real,
    check_sample_weight,
    encode_labels,
    is_zero_one,
    per_element,
    unique_labels,
)
from skweight.losses import CrossEntropyLoss
from skweight.metrics import dice_score


def test_sample_weight_rules_are_the_same_for_estimators_losses_and_metrics():
    # One message per mistake, wherever it is made.
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(2,\), expected \(3,\)"):
        check_sample_weight(np.ones(2), 3)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(2,\), expected \(3,\)"):
        CrossEntropyLoss()(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
                           sample_weight=torch.ones(2))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(2,\), expected \(3,\)"):
        dice_score(np.zeros((3, 2, 2), int), np.zeros((3, 2, 2), int),
                   sample_weight=np.ones(2))
    rule = "must contain finite non-negative numbers"
    with pytest.raises(ValueError, match=f"negative values.*{rule}"):
        check_sample_weight([1.0, -1.0], 2)
    with pytest.raises(ValueError, match=f"NaN or infinity.*{rule}"):
        check_sample_weight([1.0, np.inf], 2)
    with pytest.raises(ValueError, match=rule):
        CrossEntropyLoss()(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long),
                           sample_weight=torch.tensor([1.0, -1.0]))


def test_check_sample_weight_forms():
    w = check_sample_weight(np.ones((2, 3, 3)), 2, extra_shape=(3, 3), unit="image",
                            element="pixel")
    assert w.shape == (2, 3, 3) and w.dtype == np.float64
    with pytest.raises(ValueError, match=r"expected \(2,\) \(one weight per image\) or "
                                         r"\(2, 3, 3\) \(one weight per pixel\)"):
        check_sample_weight(np.ones((2, 3)), 2, extra_shape=(3, 3), unit="image",
                            element="pixel")
    assert check_sample_weight(np.zeros(2), 2, allow_all_zero=True).sum() == 0
    with pytest.raises(ValueError, match="only zero weights"):
        check_sample_weight(np.zeros(2), 2)
    with pytest.raises(TypeError, match="array of finite non-negative numbers"):
        check_sample_weight(["a", "b"], 2)
    np.testing.assert_array_equal(check_sample_weight(torch.ones(2), 2), [1.0, 1.0])


@pytest.mark.parametrize("value, kwargs, match", [
    (True, {}, "finite real number"), (np.nan, {}, "finite"),
    (-1.0, {"low": 0.0}, ">= 0.0"), (0.0, {"low": 0.0, "low_open": True}, "> 0.0"),
    (2.0, {"low": 0.0, "high": 1.0}, r"in \[0.0, 1.0\]"),
])
def test_check_real(value, kwargs, match):
    with pytest.raises(ValueError, match=f"x must be a {match}|x must be a finite real "
                                         f"number {match}"):
        check_real(value, "x", **kwargs)
    assert check_real(0.5, "x", low=0.0, high=1.0) == 0.5


def test_check_int_bool_and_ignore_index():
    assert check_int(3, "n", low=1) == 3 and check_int(None, "n", allow_none=True) is None
    with pytest.raises(ValueError, match="n must be an int >= 1; got 0"):
        check_int(0, "n", low=1)
    with pytest.raises(ValueError, match="n must be an int"):
        check_int(True, "n")
    assert check_bool(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match="flag must be a bool"):
        check_bool(1, "flag")
    assert check_ignore_index(None) is None and check_ignore_index(np.int64(255)) == 255
    with pytest.raises(TypeError, match="ignore_index must be None or an int"):
        check_ignore_index(2.5)


def test_encode_labels_by_chunks_equals_at_once(monkeypatch):
    from skweight import _validation

    rng = np.random.default_rng(0)
    masks = rng.choice(np.array([3, 8, 200, 255], dtype=np.uint8), size=(40, 16, 16))
    classes, whole = encode_labels(masks)
    np.testing.assert_array_equal(unique_labels(masks), classes)
    _, ignored = encode_labels(masks, classes[:3], ignore=255, dtype=np.uint8)
    monkeypatch.setattr(_validation, "_LABEL_CHUNK", 1000)  # 10 chunks and a bit
    assert unique_labels(masks).tolist() == [3, 8, 200, 255]
    np.testing.assert_array_equal(encode_labels(masks)[1], whole)
    np.testing.assert_array_equal(whole, np.searchsorted(classes, masks))
    chunked = encode_labels(masks, classes[:3], ignore=255, dtype=np.uint8)[1]
    assert chunked.dtype == np.uint8
    np.testing.assert_array_equal(chunked, ignored)
    np.testing.assert_array_equal(chunked, np.where(masks == 255, 0, whole))
    masks[-1, -1, -1] = 7  # unknown, in the last chunk only
    with pytest.raises(ValueError, match=r"labels not seen in fit: \[7\]"):
        encode_labels(masks, classes, ignore=255)


@pytest.mark.parametrize("values, expected", [
    (np.array([[0, 1], [1, 0]], dtype=np.int8), True),
    (np.array([0, 2], dtype=np.uint8), False),
    (np.array([-1, 0]), False),
    (np.array([0.0, 1.0]), True),
    (np.array([0.0, 0.5]), False),
    (np.array([True, False]), True),
    (np.array([0, 1], dtype=object), True),
    (np.array(["0", "1"]), False),
    (np.zeros((0, 3), dtype=np.int64), True),
])
def test_is_zero_one(values, expected):
    assert is_zero_one(values) is expected


def test_encode_labels_learns_and_checks_classes():
    classes, enc = encode_labels(np.array([["b", "a"], ["c", "a"]]))
    assert classes.tolist() == ["a", "b", "c"] and enc.tolist() == [[1, 0], [2, 0]]
    _, enc = encode_labels(np.array([5, 15]), np.array([5, 10, 15]))
    assert enc.tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit: \[7\]"):
        encode_labels(np.array([5, 7]), np.array([5, 10, 15]))


def test_check_class_mass_one_rule_for_losses_and_estimators():
    t = torch.tensor([3.0, 1.0])
    mass = check_class_mass(t, "class_counts")
    assert mass.dtype == np.float64 and mass.tolist() == [3.0, 1.0]
    mass[0] = 99.0
    assert t.tolist() == [3.0, 1.0]  # a new array: the caller's tensor is untouched
    bad = [
        ([[1.0, 2.0]], "class_prior must be a non-empty 1-D array"),
        ([], "class_prior must be a non-empty 1-D array"),
        ([1.0, -1.0], "finite non-negative numbers; got"),
        ([np.inf, 1.0], "finite non-negative numbers; got"),
        ([0.0, 0.0], r"class_prior is all zero \(2 entries\).*not all 0"),
        (["a", "b"], "class_prior must be a 1-D array of finite non-negative"),
    ]
    for value, match in bad:
        with pytest.raises(ValueError, match=match):
            check_class_mass(value, "class_prior")


def test_check_sample_weight_returns_float64_copy():
    w = np.array([1, 2, 3], dtype=np.int32)
    out = check_sample_weight(w, 3)
    assert out.dtype == np.float64
    out[0] = 100
    assert w[0] == 1


def test_check_sample_weight_accepts_lists_scalars_and_per_element():
    np.testing.assert_array_equal(check_sample_weight([1, 0.5], 2), [1.0, 0.5])
    np.testing.assert_array_equal(check_sample_weight(2.0, 3), [2.0, 2.0, 2.0])
    w = check_sample_weight(np.ones((2, 4, 4)), 2, extra_shape=(4, 4))
    assert w.shape == (2, 4, 4)


@pytest.mark.parametrize(
    "w, match",
    [
        ([1.0, -1.0, 1.0], "negative"),
        ([1.0, np.nan, 1.0], "NaN or infinity"),
        ([1.0, np.inf, 1.0], "NaN or infinity"),
        ([0.0, 0.0, 0.0], "only zero weights"),
        ([1.0, 1.0], r"shape == \(2,\), expected \(3,\)"),
        (["a", "b", "c"], "non-negative numbers"),
    ],
)
def test_check_sample_weight_errors(w, match):
    with pytest.raises((ValueError, TypeError), match=match):
        check_sample_weight(w, 3)


def test_per_element_broadcasts_per_sample_weights():
    out = per_element([1, 2], (2, 3, 3))
    assert out.shape == (2, 3, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out[1], np.full((3, 3), 2.0))
    np.testing.assert_array_equal(per_element(np.ones((2, 3)), (2, 3)), np.ones((2, 3)))
