import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from skweight._fit.data import (
    check_images,
    check_input_scale,
    check_input_shape,
    scale_inputs,
    to_numpy_1d,
)


def test_four_three_and_two_dimensional_inputs():
    rng = np.random.default_rng(0)
    x4 = rng.random((5, 3, 4, 6))
    img, shape = check_images(x4)
    assert img.shape == (5, 3, 4, 6) and img.dtype == torch.float32
    assert shape == (5, 3, 4, 6)
    np.testing.assert_allclose(img.numpy(), x4.astype(np.float32))

    img, _ = check_images(rng.random((5, 4, 6)))
    assert img.shape == (5, 1, 4, 6)

    img, _ = check_images(rng.random((5, 7)))
    assert img.shape == (5, 1, 1, 7)

    flat = x4.reshape(5, -1)
    img, shape = check_images(flat, input_shape=(3, 4, 6))
    assert shape == (5, 72)
    np.testing.assert_allclose(img.numpy(), x4.astype(np.float32))


def test_uint8_kept_then_scaled_per_batch_and_tensor_and_dataframe_inputs():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    img, _ = check_images(x)
    # stored as given (shared, not copied), scaled per batch on the device
    assert img.dtype == torch.uint8 and np.shares_memory(img.numpy(), x)
    scaled = scale_inputs(img, "auto", user_module=False)
    expected = x.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(scaled.numpy()[:, 0], expected)
    img, _ = check_images(torch.from_numpy(x))
    assert img.dtype == torch.uint8
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    img, _ = check_images(df)
    assert img.shape == (2, 1, 1, 2)


def test_callers_array_is_never_written():
    x = np.random.default_rng(0).random((4, 1, 3, 3)).astype(np.float32)
    before = x.copy()
    img, _ = check_images(x)
    # Shared memory is fine, but skweight itself never writes into it.
    assert np.shares_memory(img.numpy(), x)
    np.testing.assert_array_equal(x, before)
    x8 = np.arange(9, dtype=np.uint8).reshape(1, 3, 3)
    check_images(x8)
    assert x8.dtype == np.uint8 and x8[0, 2, 2] == 8


@pytest.mark.parametrize(
    "X, kwargs, exc, match",
    [
        (np.zeros(5), {}, ValueError, r"got 1-D X of shape \(5,\)"),
        (np.zeros((2, 1, 2, 2, 2, 2)), {}, ValueError, "got 6-D"),
        (np.zeros((0, 3)), {}, ValueError, "0 sample"),
        (np.zeros((3, 0)), {}, ValueError, "0 feature"),
        (np.array([[1.0, np.nan]]), {}, ValueError, "NaN or infinity"),
        (np.array([[1.0, np.inf]]), {}, ValueError, "NaN or infinity"),
        (np.array([[1e300, 1.0]]), {}, ValueError, "too large for float32"),
        (np.array([["a", "b"]]), {}, TypeError, "must be numeric"),
        (np.array([[1 + 1j]]), {}, ValueError, "Complex data not supported"),
        (sp.csr_matrix(np.eye(3)), {}, TypeError, "Sparse data"),
        (np.zeros((2, 10)), {"input_shape": (1, 3, 3)}, ValueError,
         r"10 features per sample.*input_shape=\(1, 3, 3\)"),
        (np.zeros((2, 1, 4, 4)), {"input_shape": (1, 3, 3)}, ValueError,
         "does not match input_shape"),
        (np.zeros((2, 2, 3, 3)), {"expected_shape": (1, 3, 3)}, ValueError,
         r"2 channel\(s\), but the estimator was fitted with 1"),
        (np.zeros((2, 1, 4, 4)), {"expected_shape": (1, 3, 3)}, ValueError,
         "fitted on images of shape"),
        (np.zeros((2, 5)), {"n_features": 4, "estimator_name": "Est"}, ValueError,
         "X has 5 features, but Est is expecting 4 features"),
    ],
)
def test_bad_inputs(X, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        check_images(X, **kwargs)


def test_spatial_mismatch_allowed_for_fully_convolutional():
    img, _ = check_images(np.zeros((2, 1, 4, 4)), expected_shape=(1, 3, 3),
                          match_spatial=False)
    assert img.shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    "value, expected",
    [(None, None), ((3, 8, 8), (3, 8, 8)), ((8, 8), (1, 8, 8)), ([2, 4, 5], (2, 4, 5))],
)
def test_check_input_shape(value, expected):
    assert check_input_shape(value) == expected


@pytest.mark.parametrize("value", [(0, 8, 8), (8,), (1, 2, 3, 4), (1.5, 2, 2), "abc", 5])
def test_check_input_shape_errors(value):
    with pytest.raises((ValueError, TypeError), match="input_shape"):
        check_input_shape(value)


def test_to_numpy_1d():
    from sklearn.exceptions import DataConversionWarning

    np.testing.assert_array_equal(to_numpy_1d(torch.tensor([1, 2])), [1, 2])
    with pytest.warns(DataConversionWarning):
        assert to_numpy_1d(np.zeros((3, 1))).shape == (3,)
    with pytest.raises(ValueError, match=r"1-D of shape \(n_samples,\)"):
        to_numpy_1d(np.zeros((3, 2)))


@pytest.mark.parametrize("shape", [(5, 16, 16, 3), (5, 9, 7, 1), (5, 8, 8, 4)])
def test_channels_last_layout_is_pointed_out(shape):
    X = np.zeros(shape, dtype=np.float32)
    hint = r"looks like channels-last.*X.transpose\(0, 3, 1, 2\)"
    with pytest.warns(UserWarning, match=hint):
        img, _ = check_images(X)
    assert img.shape == shape  # still read as (N, C, H, W), as documented
    # at predict time the shape check says it, with the same hint
    with pytest.raises(ValueError, match="channel.*looks like channels-last"):
        check_images(X, expected_shape=(shape[-1], shape[1], shape[2]))


@pytest.mark.parametrize("shape", [(5, 3, 16, 16), (5, 1, 8, 8), (5, 16, 16, 16),
                                   (5, 2, 3, 3)])
def test_channels_first_layout_is_not_warned_about(shape):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_images(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("dtype, expected", [
    (np.uint8, np.array([0, 255, 51], np.float32) / np.float32(255)),
    (np.uint16, np.array([0, 255, 51], np.float32) / np.float32(65535)),
])
def test_auto_scale_of_image_integers(dtype, expected):
    x = torch.from_numpy(np.array([0, 255, 51], dtype=dtype))
    for user_module in (True, False):
        out = scale_inputs(x, "auto", user_module=user_module)
        assert out.dtype == torch.float32
        np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_other_integers_are_ids_for_a_users_module(dtype):
    x = torch.from_numpy(np.array([0, 3, 7], dtype=dtype))
    ids = scale_inputs(x, "auto", user_module=True)
    assert ids.dtype == torch.int64 and ids.tolist() == [0, 3, 7]
    floats = scale_inputs(x, "auto", user_module=False)
    assert floats.dtype == torch.float32 and floats.tolist() == [0, 3, 7]


def test_input_scale_none_and_numbers():
    x = torch.tensor([0, 3, 255], dtype=torch.uint8)
    assert scale_inputs(x, None, user_module=True).tolist() == [0, 3, 255]
    assert scale_inputs(x, None, user_module=True).dtype == torch.int64
    np.testing.assert_allclose(scale_inputs(x, 0.5, user_module=False).numpy(),
                               [0, 1.5, 127.5])
    f = torch.tensor([1.0, 2.0])
    assert scale_inputs(f, "auto", user_module=True) is f
    np.testing.assert_allclose(scale_inputs(f, 2.0, user_module=True).numpy(), [2, 4])


@pytest.mark.parametrize("bad", ["none", 0, -1.0, float("nan"), True, [255]])
def test_bad_input_scale(bad):
    with pytest.raises(ValueError, match=r"input_scale must be 'auto'.*got"):
        check_input_scale(bad)


def test_integer_images_are_not_checked_for_finiteness_and_are_not_copied(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    img, _ = check_images(mm)
    assert img.dtype == torch.uint8 and np.shares_memory(img.numpy(), mm)
    other, _ = check_images(x.astype(np.uint32))
    assert other.dtype == torch.int64  # too few torch kernels for uint32
