"""Seeds of a fit and the guarded section that uses torch's global RNG."""

import threading

import numpy as np
import pytest
import torch

from skweight import CNNClassifier
from skweight._seeding import FitSeeds, draw_seeds, seeded_section


@pytest.fixture
def digits(digit_images):
    return digit_images(n=240)


def _net(seed):
    # Dropout draws from torch's global RNG at every training step.
    return CNNClassifier(module__channels=(4,), module__hidden_units=16,
                         module__dropout=0.5, max_epochs=3, batch_size=32,
                         random_state=seed)


def test_fits_in_threads_equal_the_same_fits_run_in_turn(digits):
    X, y = digits
    in_turn = {seed: _net(seed).fit(X, y).predict_proba(X) for seed in (0, 1, 2)}
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    threaded = {}

    def fit(seed):
        threaded[seed] = _net(seed).fit(X, y).predict_proba(X)

    threads = [threading.Thread(target=fit, args=(seed,)) for seed in (0, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (0, 1, 2):
        np.testing.assert_array_equal(threaded[seed], in_turn[seed])
    # The caller's generator is where it was before the fits.
    assert torch.equal(torch.rand(4), expected)


def test_unseeded_fits_differ_and_leave_torch_rng_alone(digits):
    X, y = digits
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    a = _net(None).fit(X, y).predict_proba(X)
    b = _net(None).fit(X, y).predict_proba(X)
    assert np.abs(a - b).max() > 1e-3
    assert torch.equal(torch.rand(2), expected)


def test_draw_seeds_repeats_with_the_seed():
    a, b = draw_seeds(0), draw_seeds(0)
    assert isinstance(a, FitSeeds) and a == b
    assert draw_seeds(1) != a
    assert len(set(a)) == len(a)  # independent streams
    rng = np.random.RandomState(7)
    assert draw_seeds(rng) != draw_seeds(rng)  # a RandomState advances


def test_seeded_section_seeds_and_restores():
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    with seeded_section(42, torch.device("cpu")):
        inside = torch.rand(3)
    with seeded_section(42, torch.device("cpu")):
        again = torch.rand(3)
    assert torch.equal(inside, again)
    assert torch.equal(torch.random.get_rng_state(), before)
