"""Shared fixtures and markers of the test suite.

- Torch runs on one thread: the networks here are tiny, and on a shared
  2-core machine a second intra-op thread only adds synchronisation (fits
  ran 10-40x slower when processes shared the cores).
- Every test starts from the same global random state (NumPy and torch), so
  a test that forgets a seed still repeats itself.
- ``@pytest.mark.cuda`` tests are skipped without a CUDA GPU.
- ``@pytest.mark.slow`` tests run by default; ``--skip-slow`` leaves them out.
  The tests that start processes (Dask, loky, torchrun, a Python
  subprocess) and Optuna's searches carry it.
- What many test files share is defined here once: the settings of a tiny
  network (``tiny_cnn``, ``tiny_unet``), scikit-learn's digits as images
  (``digit_images``) and a one-layer user network (``linear_module``).
"""

from types import MappingProxyType

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits


def pytest_addoption(parser):
    parser.addoption("--skip-slow", action="store_true", default=False,
                     help="leave out the tests marked slow")


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    no_slow = pytest.mark.skip(reason="--skip-slow")
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(no_cuda)
        if "slow" in item.keywords and config.getoption("--skip-slow"):
            item.add_marker(no_slow)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    np.random.seed(0)  # noqa: NPY002 (the legacy global state is what tests share)
    torch.manual_seed(0)


# -- shared data and networks -------------------------------------------------


@pytest.fixture(scope="session")
def tiny_cnn():
    """Settings of a SmallCNN small enough for sub-second fits on 8x8 digits.

    Read-only, so that no test changes it for the others: a test that needs
    other values says so, ``{**tiny_cnn, "max_epochs": 2}``.
    """
    return MappingProxyType(dict(module__channels=(4,), module__hidden_units=16,
                                 random_state=0))


@pytest.fixture(scope="session")
def tiny_unet():
    """Settings of a two-level UNet for segmenter fits of a few seconds.

    Read-only, like ``tiny_cnn``.
    """
    return MappingProxyType(dict(module__channels=(4, 8), lr=1e-2, max_epochs=3,
                                 random_state=0))


def _digit_images(n_class=10, n=None, shuffle_rng=None, flat=False, dtype=np.float32):
    X, y = load_digits(n_class=n_class, return_X_y=True)
    if shuffle_rng is not None:
        order = shuffle_rng.permutation(len(y))
        X, y = X[order], y[order]
    X = (X / 16).astype(dtype)
    if not flat:
        X = X.reshape(-1, 1, 8, 8)
    return X[:n], y[:n]


@pytest.fixture(scope="session")
def digit_images():
    """Scikit-learn's 8x8 digits as images in [0, 1], as a factory.

    ``digit_images(n_class=10, n=None, shuffle_rng=None, flat=False,
    dtype=np.float32)`` returns ``(X, y)``: the digits of the first
    ``n_class`` classes, put in the order of ``shuffle_rng.permutation``
    when a generator (``np.random.default_rng(0)``, or a legacy
    ``np.random.RandomState(0)``) is given, then the first ``n`` of them.
    ``X`` has shape ``(n, 1, 8, 8)``, or ``(n, 64)`` with ``flat=True``.
    Every call returns new arrays.
    """
    return _digit_images


class Linear(torch.nn.Module):
    """One linear layer on the flattened input: a user network of known shape."""

    def __init__(self, n_features=64, n_outputs=10):
        super().__init__()
        self.fc = torch.nn.Linear(n_features, n_outputs)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture(scope="session")
def linear_module():
    """The class :class:`Linear` (not an instance), as ``module=`` takes it."""
    return Linear
