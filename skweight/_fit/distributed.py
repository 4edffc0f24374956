"""Data-parallel training under ``torchrun``, on PyTorch's own ``torch.distributed``.

A script launched with ``torchrun --nproc_per_node=K`` calls ``fit`` in K
processes. With ``distributed="auto"`` (the default) the estimator then
trains one model across them:

- the process group is created from torchrun's environment if the user has
  not created one (gloo on the CPU, NCCL on GPUs; each process takes the GPU
  ``LOCAL_RANK``), and reused if one exists;
- ``batch_size`` is the global batch: every process walks the single-process
  permutation of the rows and takes its share of each global batch, so the
  batches, and the model, do not depend on K;
- only the network is wrapped in ``DistributedDataParallel``, which averages
  the gradients over the processes; each process scales its loss by
  ``K * n_local / n_global`` so that the averaged gradient is the gradient
  of the global batch's ``mean(w * l)``;
- every process validates on the whole validation split (the same numbers
  everywhere, so early stopping stops everywhere at once), and the recorded
  training losses are the global batches' losses;
- only process 0 prints and writes checkpoints; at the end the network is
  broadcast from process 0 (a checkpoint may have reloaded its best
  weights there), so every process ends with the same fitted estimator,
  whose ``module_`` is the plain network.
"""

import contextlib
import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DataParallel", "check_distributed", "data_parallel"]


def check_distributed(distributed):
    """Validate the ``distributed`` parameter."""
    if isinstance(distributed, str) and distributed == "auto":
        return distributed
    if isinstance(distributed, (bool, np.bool_)):
        return bool(distributed)
    raise ValueError(
        f"distributed must be 'auto' (data-parallel under torchrun), True or False, "
        f"got {distributed!r}."
    )


def _env_world_size():
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def wanted(distributed):
    """Whether ``fit`` trains data-parallel for this ``distributed`` setting."""
    if distributed is False or not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if distributed == "auto":
        return _env_world_size() > 1
    # distributed=True outside torchrun: nothing to train across.
    if _env_world_size() <= 1:
        raise ValueError(
            "distributed=True needs several processes: launch the script with "
            "torchrun --nproc_per_node=K (or create a torch.distributed process "
            "group first), or use distributed='auto'."
        )
    return True


class DataParallel:
    """The process group of one data-parallel ``fit``."""

    def __init__(self, rank, world_size, created):
        self.rank = rank
        self.world_size = world_size
        self.created = created

    @property
    def leader(self):
        """Whether this is process 0 (which prints and writes files)."""
        return self.rank == 0

    def device(self, device):
        """Return the device of this process: its own GPU when training on CUDA."""
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device

    def share(self, rows):
        """Return this process's part of a global batch's rows (a 1-D index tensor)."""
        return torch.tensor_split(rows, self.world_size)[self.rank]

    def loss_scale(self, n_local, n_global):
        """Return the factor that makes DDP's gradient average the global batch mean."""
        return self.world_size * n_local / n_global

    def broadcast_object(self, value):
        """``value`` as process 0 has it."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, tensor):
        """Sum a tensor over the processes (in place; the tensor is returned)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_module(self, module):
        """Copy process 0's parameters and buffers into every process."""
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def wrap(self, module, device):
        """Wrap the network for training (gradients averaged over processes)."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)


@contextlib.contextmanager
def data_parallel(distributed, device):
    """Yield a :class:`DataParallel` for a data-parallel fit, or None.

    Creates the process group from torchrun's environment when there is
    none (and destroys it afterwards); an existing group is used as it is.
    """
    if not wanted(distributed):
        yield None
        return
    created = False
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        created = True
    try:
        yield DataParallel(dist.get_rank(), dist.get_world_size(), created)
    finally:
        if created:
            dist.destroy_process_group()
