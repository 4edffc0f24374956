"""Seeds for a fit, and the section of a fit that uses torch's global RNG.

Weight initialisation and dropout draw from torch's process-wide generators
(there is no per-thread one, and ``nn.Module`` constructors take no
generator). A fit seeds them inside :func:`seeded_section`, which holds a
process-wide lock for as long as it runs and restores the caller's RNG
state afterwards: two fits in two threads (joblib's threading backend, a
user's threads) then give the same models as the same fits run one after
the other, and neither disturbs the caller's random numbers. Seeded fits in
threads therefore run one at a time; processes (joblib's default ``loky``
backend, Dask workers) run in parallel.
"""

import contextlib
import threading
from typing import NamedTuple

import torch
from sklearn.utils import check_random_state

__all__ = ["FitSeeds", "draw_seeds", "seeded_section"]

# Re-entrant: a callback may fit another skweight model inside a fit.
_GLOBAL_RNG_LOCK = threading.RLock()


class FitSeeds(NamedTuple):
    """Independent seeds of one fit, drawn from the estimator's random_state."""

    torch: int  # weight initialisation and dropout (torch's global RNG)
    shuffle: int  # mini-batch order
    split: int  # the validation split
    sampler: int  # per-epoch resampling
    augment: int  # batch augmentation


def draw_seeds(random_state):
    """Draw the seeds of a fit from ``random_state`` (None, int or RandomState).

    ``random_state=None`` draws them from NumPy's global RNG, as scikit-learn
    does, so unseeded fits differ from each other but use torch's global RNG
    in the same guarded way as seeded ones.
    """
    rng = check_random_state(random_state)
    values = rng.randint(0, 2**31 - 1, size=len(FitSeeds._fields))
    return FitSeeds(*(int(v) for v in values))


@contextlib.contextmanager
def seeded_section(seed, device):
    """Run a block with torch's global RNG seeded, alone, and restored after.

    Parameters
    ----------
    seed : int
    device : torch.device
        The device the block trains on; its CUDA generator is seeded and
        restored too.
    """
    cuda_index = None
    if device.type == "cuda":
        cuda_index = device.index
        if cuda_index is None:
            cuda_index = torch.cuda.current_device()
    with _GLOBAL_RNG_LOCK:
        devices = [] if cuda_index is None else [cuda_index]
        with torch.random.fork_rng(devices=devices):
            # Only the generators this fit uses are seeded (and restored by
            # fork_rng); torch.manual_seed would reseed every GPU.
            torch.default_generator.manual_seed(seed)
            if cuda_index is not None:
                torch.cuda.default_generators[cuda_index].manual_seed(seed)
            yield
