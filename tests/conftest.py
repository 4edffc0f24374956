"""Shared fixtures and markers of the test suite.

- Torch runs on one thread: the networks here are tiny, and on a shared
  2-core machine a second intra-op thread only adds synchronisation (fits
  ran 10-40x slower when processes shared the cores).
- Every test starts from the same global random state (NumPy and torch), so
  a test that forgets a seed still repeats itself.
- ``@pytest.mark.cuda`` tests are skipped without a CUDA GPU.
- ``@pytest.mark.slow`` tests run by default; ``--skip-slow`` leaves them out.
"""

import numpy as np
import pytest
import torch


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
