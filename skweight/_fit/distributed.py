"""Data-parallel training under ``torchrun``, on PyTorch's own ``torch.distributed``.

A script launched with ``torchrun --nproc_per_node=K`` calls ``fit`` in K
processes. With ``distributed="auto"`` (the default) the estimator then
trains one model across them:

- ``batch_size`` is the global batch: every process walks the single-process
  permutation of the rows and takes its share of each global batch, so the
  batches, and the model, do not depend on K (a process whose share of a
  small last batch is empty takes part in the step with one row weighed
  0);
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

The process group
-----------------
The first data-parallel ``fit`` of a process creates the default group from
torchrun's environment (gloo on the CPU, NCCL on GPUs) unless the script
created one; every later ``fit``, ``partial_fit`` and search reuses it. A
group skweight created lives until the interpreter exits, where an
``atexit`` handler destroys it. Both choices are forced by PyTorch:

- destroying the default group resets the counter that names groups, so a
  group created again is named ``"0"`` again; under torchrun its keys go to
  the agent's store, which outlives every group, and the new group's
  rendezvous then reads the addresses the old one left there. One process
  connects to a socket of the old group and the other waits for it for
  ever: the 0.2 hang of ``fit, predict, fit``. Groups skweight creates also
  get their own key prefix (``skweight/<attempt>/<n>``), so that a group
  destroyed by the script and created again, or created again by the
  script that ``torchrun --max-restarts`` restarted (the agent's store
  outlives the attempts too), starts from clean keys;
- a process could abort at exit: a collective returns as soon as it is
  done, but the gloo worker thread that ran it lets go of its tensors a
  moment later, and that needs the GIL (a tensor seen from Python holds
  its Python object). When the script ended within that moment, the thread
  asked for the GIL while the interpreter was finalising, was ended with
  ``pthread_exit``, and the unwinding through a ``noexcept`` destructor
  called ``std::terminate`` ("terminate called without an active
  exception"). Destroying the group would join those threads, but it does
  not: a ``DistributedDataParallel`` wrapper, once built, keeps the group
  alive in C++ until the process ends. So the collectives that end a fit
  wait until the worker threads have let go of their tensors (see
  :func:`_settle`; a fraction of a millisecond), and the group skweight
  created is destroyed at exit, as PyTorch asks.

A group the script created is the script's: skweight uses it and never
destroys it (PyTorch asks scripts to call ``destroy_process_group()`` at the
end).

Failures
--------
``distributed={"timeout": seconds}`` bounds every collective: a process
that waits longer for the others raises. Each process of a data-parallel
fit writes a pulse to torchrun's rendezvous store every half second; when a
collective fails, the survivors compare the pulses and raise
:class:`ProcessLostError`, naming the processes whose pulse stopped.
"""

import atexit
import contextlib
import datetime
import math
import numbers
import os
import threading
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from ..exceptions import ProcessLostError

__all__ = [
    "DataParallel",
    "ProcessLostError",
    "Setting",
    "check_distributed",
    "data_parallel",
    "wanted",
]

#: Keys of the dict form of the ``distributed`` parameter.
_OPTIONS = ("timeout",)
#: Seconds between two pulses of a process in the rendezvous store.
_PULSE_S = 0.5
#: How long survivors watch the pulses before naming the lost processes.
_WATCH_S = 4 * _PULSE_S
# A torchrun worker leaves its pid here for the processes it starts: a
# search's worker processes inherit torchrun's environment but are not
# members of the group (see _refuse_pool_worker).
_PID_MARKER = "_SKWEIGHT_TORCHRUN_PID"


class Setting(NamedTuple):
    """The checked ``distributed`` parameter."""

    mode: object  # "auto", True or False
    timeout: object  # None (PyTorch's default) or seconds


def _check_timeout(value):
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        seconds = float(value)
    else:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"distributed['timeout'] must be a positive number of seconds (or a "
            f"datetime.timedelta), got {value!r}."
        )
    return seconds


def check_distributed(distributed):
    """Validate the ``distributed`` parameter.

    Parameters
    ----------
    distributed : "auto", bool, dict or Setting
        ``"auto"``: data-parallel when launched by torchrun with several
        processes; ``True``: insist on it; ``False``: never. A dict is
        ``"auto"`` with options; its one key, ``"timeout"``, is the number
        of seconds a collective may wait for the other processes.

    Returns
    -------
    setting : Setting
        ``(mode, timeout)``.
    """
    if isinstance(distributed, Setting):
        return distributed
    if isinstance(distributed, str) and distributed == "auto":
        return Setting("auto", None)
    if isinstance(distributed, (bool, np.bool_)):
        return Setting(bool(distributed), None)
    if isinstance(distributed, dict):
        unknown = [key for key in distributed if key not in _OPTIONS]
        if unknown:
            raise ValueError(
                f"distributed={distributed!r} has unknown key(s) "
                f"{', '.join(map(repr, unknown))}; the dict form takes 'timeout' "
                f"(seconds a collective may wait for the other processes)."
            )
        timeout = distributed.get("timeout")
        return Setting("auto", None if timeout is None else _check_timeout(timeout))
    raise ValueError(
        f"distributed must be 'auto' (data-parallel under torchrun), True, False or "
        f"a dict such as {{'timeout': 60}}, got {distributed!r}."
    )


def _env_world_size():
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


if _env_world_size() > 1:
    os.environ.setdefault(_PID_MARKER, str(os.getpid()))


def wanted(distributed):
    """Whether ``fit`` trains data-parallel for this ``distributed`` setting.

    Parameters
    ----------
    distributed : "auto", bool, dict or Setting
        The ``distributed`` parameter.

    Returns
    -------
    wanted : bool
    """
    setting = check_distributed(distributed)
    if setting.mode is False or not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if _env_world_size() > 1:
        return True
    if setting.mode is True:
        raise ValueError(
            "distributed=True needs several processes: launch the script with "
            "torchrun --nproc_per_node=K (or create a torch.distributed process "
            "group first), or use distributed='auto'."
        )
    return False


class DataParallel:
    """The process group of one data-parallel ``fit``.

    Parameters
    ----------
    rank, world_size : int
        This process's rank and the number of processes.
    created : bool
        Whether skweight created the default group (rather than the script).
    group : None or ProcessGroup
        The group the collectives run in; None for the default group.
    """

    def __init__(self, rank, world_size, created, group=None):
        self.rank = rank
        self.world_size = world_size
        self.created = created
        self.group = group

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
        """Return this process's part of a global batch's rows (a 1-D index tensor).

        A process whose part is empty (a global batch smaller than the
        number of processes) gets the batch's first row instead, which
        :meth:`loss_scale` weighs 0: every process must take part in each
        step's all-reduce of the gradients, a DataLoader cannot serve an
        empty batch, and the mean loss of no rows would be NaN.
        """
        part = torch.tensor_split(rows, self.world_size)[self.rank]
        return part if len(part) or not len(rows) else rows[:1]

    def own_rows(self, n_global):
        """Return how many rows of a global batch of ``n_global`` are this process's."""
        # tensor_split gives the first n_global % K processes one row more.
        base, extra = divmod(n_global, self.world_size)
        return base + (self.rank < extra)

    def loss_scale(self, n_local, n_global):
        """Return the factor that makes DDP's gradient average the global batch mean.

        ``n_local`` rows were served; a padding row (see :meth:`share`)
        counts for nothing.
        """
        return self.world_size * min(n_local, self.own_rows(n_global)) / n_global

    def broadcast_object(self, value):
        """``value`` as process 0 has it."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def sum(self, tensor):
        """Sum a tensor over the processes (in place; the tensor is returned)."""
        held = _holders([tensor])
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        _settle([tensor], held)
        return tensor

    def broadcast_module(self, module):
        """Copy process 0's parameters and buffers into every process."""
        with torch.no_grad():
            tensors = [t.data for t in list(module.parameters()) + list(module.buffers())]
            held = _holders(tensors)
            for t in tensors:
                dist.broadcast(t, src=0, group=self.group)
            _settle(tensors, held)

    def wrap(self, module, device):
        """Wrap the network for training (gradients averaged over processes)."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids,
                                       process_group=self.group)


def _holders(tensors):
    """Return how many references each tensor has in C++ (None where unknown)."""
    return [t._use_count() if hasattr(t, "_use_count") else None for t in tensors]


def _settle(tensors, held, limit_s=5.0):
    """Wait until the collectives' worker threads have let go of ``tensors``.

    Collectives return when their work is done, and the worker thread
    that did it drops its references a moment later, taking the GIL for
    that: it must not still be doing so when the interpreter finalises
    (see the module docstring). Sleeping hands it the GIL. ``held`` are the
    reference counts before the collectives; after ``limit_s`` seconds the
    wait is abandoned rather than blocking a fit.
    """
    deadline = time.monotonic() + limit_s
    pairs = [(t, n) for t, n in zip(tensors, held, strict=True) if n is not None]
    while any(t._use_count() > n for t, n in pairs):
        if time.monotonic() > deadline:
            return
        time.sleep(1e-4)


# -- the groups of the process -------------------------------------------------


class _Groups:
    """What skweight keeps about process groups, for the life of the process."""

    def __init__(self):
        self.created = None  # the default group skweight created
        self.created_timeout = None
        self.generation = 0  # groups skweight created, for their key prefix
        self.world = None  # the default group the timed subgroups belong to
        self.timed = {}  # timeout -> subgroup with that timeout
        self.fits = 0  # data-parallel fits, numbering their failure records
        self.exit_hook = False
        self.busy = threading.Lock()


_GROUPS = _Groups()


def _timedelta(seconds):
    return None if seconds is None else datetime.timedelta(seconds=seconds)


def _create_group(device, timeout):
    """Create the default group from torchrun's environment (see the module docstring)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    kwargs = {} if timeout is None else {"timeout": _timedelta(timeout)}
    store, rank, world_size = next(dist.rendezvous("env://", **kwargs))
    if timeout is not None:
        store.set_timeout(_timedelta(timeout))
    _GROUPS.generation += 1
    store = dist.PrefixStore(f"{_key_prefix()}/{_GROUPS.generation}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            **kwargs)
    _GROUPS.created = dist.group.WORLD
    _GROUPS.created_timeout = timeout


def _release_at_exit():
    """At exit: destroy the group skweight created, and drop this module's references.

    A group the script created and destroyed is then no longer held by
    skweight either.
    """
    created, _GROUPS.created = _GROUPS.created, None
    if (created is not None and dist.is_initialized()
            and dist.group.WORLD is created):
        with contextlib.suppress(Exception):  # a broken group cannot fail the exit
            dist.destroy_process_group()
    del created
    _GROUPS.world, _GROUPS.timed = None, {}


def _backend_serves(backend, device):
    """Whether a group with ``backend`` (gloo, cpu:gloo,cuda:nccl...) serves ``device``."""
    backend = str(backend).lower()
    if ":" in backend:
        served = {part.split(":", 1)[0] for part in backend.split(",")}
        return device.type in served
    # NCCL reduces CUDA tensors only; gloo, MPI and UCC take CPU tensors.
    return not (backend == "nccl" and device.type != "cuda")


def _check_backend(device):
    backend = dist.get_backend()
    if not _backend_serves(backend, device):
        ours = _GROUPS.created is not None and dist.group.WORLD is _GROUPS.created
        whose = "an earlier fit created" if ours else "this script created"
        raise ValueError(
            f"device={str(device)!r} cannot train data-parallel in the process group "
            f"{whose} with backend {backend!r}, which cannot reduce {device.type} "
            f"tensors. Use the group's device (device='cuda' for NCCL), or create "
            f"the group with a backend for both, e.g. "
            f"init_process_group('cpu:gloo,cuda:nccl'), before the first fit."
        )


def _group_for(timeout):
    """Return the group for a collective ``timeout`` (None: the default group)."""
    world = dist.group.WORLD
    if _GROUPS.world is not world:
        # The script destroyed the default group (and its subgroups with it).
        _GROUPS.world, _GROUPS.timed = world, {}
    if timeout is None or (world is _GROUPS.created
                           and timeout == _GROUPS.created_timeout):
        return None
    if timeout not in _GROUPS.timed:
        # A group's timeout is fixed when it is created: a fit asking for
        # another one gets a group of the same processes with it.
        _GROUPS.timed[timeout] = dist.new_group(timeout=_timedelta(timeout))
    return _GROUPS.timed[timeout]


def _refuse_pool_worker():
    marker = os.environ.get(_PID_MARKER)
    if dist.is_initialized() or marker is None or marker == str(os.getpid()):
        return
    raise ValueError(
        "distributed='auto' under torchrun: this fit runs in a worker process that "
        "a torchrun process started (a search or cross-validation with n_jobs > 1, "
        "or a Dask worker), which is not a member of the process group. Run the "
        "search with n_jobs=1 (its fits then train data-parallel, and every process "
        "runs the same search), or pass distributed=False to the estimator to fit "
        "each model in one worker."
    )


# -- noticing a lost process ---------------------------------------------------


def _store_client(timeout_s):
    """Connect to the rendezvous store at ``MASTER_ADDR:MASTER_PORT`` (None if none)."""
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port:
        return None
    try:
        return dist.TCPStore(host, int(port), is_master=False,
                             timeout=_timedelta(timeout_s), wait_for_workers=False)
    except Exception:  # noqa: BLE001 - no store, no names
        return None


class _Pulse:
    """The pulse of a process in the rendezvous store, while a data-parallel fit runs.

    The store lives in torchrun's agent (or, for processes launched by hand,
    in rank 0's), so it outlives a lost worker: a pulse that stops is a
    process that died or froze, one that goes on is a process that is
    merely slow or waiting.
    """

    def __init__(self, rank, world_size, fit):
        self.rank, self.world_size, self.fit = rank, world_size, fit
        self._stop = threading.Event()
        self._thread = None
        store = _store_client(timeout_s=5.0)
        if store is not None:
            self._thread = threading.Thread(target=self._beat, args=(store,),
                                            name="skweight-pulse", daemon=True)
            self._thread.start()

    def _beat(self, store):
        key = _pulse_key(self.rank)
        with contextlib.suppress(Exception):  # the store went away: stop beating
            store.add(key, 1)
            while not self._stop.wait(_PULSE_S):
                store.add(key, 1)

    def stop(self):
        """Stop beating (waits for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def lost(self):
        """Tell which other processes did not fail with this one, and why.

        This process first records that it saw the failure, so that a
        survivor that has stopped beating already is not taken for lost.

        Returns
        -------
        stopped, stuck : list of int, or None
            The ranks whose pulse stopped (dead or frozen), and those still
            beating that did not see the failure (waiting elsewhere); None
            when there is no store to ask.
        """
        if self._thread is None:
            return None
        store = _store_client(timeout_s=5.0)
        if store is None:
            return None if _agent_store() else ([0], [])
        others = [r for r in range(self.world_size) if r != self.rank]
        try:
            store.set(self._failed_key(self.rank), "1")
            before = {r: store.add(_pulse_key(r), 0) for r in others}
            time.sleep(_WATCH_S)
            after = {r: store.add(_pulse_key(r), 0) for r in others}
            failed = {r for r in others if store.check([self._failed_key(r)])}
        except Exception:  # noqa: BLE001 - the store died with its host
            return None if _agent_store() else ([0], [])
        silent = [r for r in others if r not in failed]
        return ([r for r in silent if after[r] == before[r]],
                [r for r in silent if after[r] != before[r]])

    def _failed_key(self, rank):
        return f"{_key_prefix()}/failed/{self.fit}/{rank}"


def _pulse_key(rank):
    return f"{_key_prefix()}/pulse/{rank}"


def _key_prefix():
    """Return the prefix of skweight's keys in the store for this torchrun attempt."""
    return f"skweight/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _agent_store():
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)


def _collective_failure(exc):
    """Whether ``exc`` comes from a collective that another process left unanswered."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection closed",
                                  "Connection reset", "Timed out", "timed out")
    )


def _ranks(ranks):
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def _lost_message(verdict, rank, world_size, timeout):
    limit = ("PyTorch's default (30 minutes for gloo, 10 for NCCL)" if timeout is None
             else f"{timeout:g} s")
    head = f"Data-parallel fit on rank {rank} of {world_size}: "
    if verdict is None:
        head += (f"a collective failed or waited longer than the timeout ({limit}); "
                 f"which process was lost is unknown (no rendezvous store at "
                 f"MASTER_ADDR:MASTER_PORT to ask).")
    else:
        stopped, stuck = verdict
        parts = []
        if stopped:
            parts.append(f"lost the process of {_ranks(stopped)}, which stopped (it "
                         f"died, was killed or froze; see its own output for why)")
        if stuck:
            parts.append(f"the process of {_ranks(stuck)} still runs but did not take "
                         f"part in the collective within the timeout ({limit}); it is "
                         f"stuck elsewhere (for example in rank-dependent code)")
        if not parts:
            parts.append("a collective failed in every process at once")
        head += "; ".join(parts) + "."
    return (f"{head} The collective timeout is distributed={{'timeout': seconds}}. "
            f"Under torchrun --max-restarts=N, a Checkpoint with LoadInitState "
            f"resumes the fit from its last epoch.")


# -- the context of a fit --------------------------------------------------------


@contextlib.contextmanager
def data_parallel(distributed, device):
    """Yield a :class:`DataParallel` for a data-parallel fit, or None.

    Creates the default process group from torchrun's environment when there
    is none and keeps it for the life of the process; an existing group is
    used as it is.

    Parameters
    ----------
    distributed : "auto", bool, dict or Setting
        The ``distributed`` parameter.
    device : torch.device
        The resolved device the fit trains on.

    Yields
    ------
    dp : None or DataParallel
    """
    setting = check_distributed(distributed)
    if not wanted(setting):
        yield None
        return
    _refuse_pool_worker()
    if not _GROUPS.exit_hook:
        atexit.register(_release_at_exit)
        _GROUPS.exit_hook = True
    if not _GROUPS.busy.acquire(blocking=False):
        raise RuntimeError(
            "Another data-parallel fit is running in this process (a search with "
            "n_jobs > 1 on threads?): two fits cannot share the process group. Run "
            "the search with n_jobs=1, or pass distributed=False."
        )
    try:
        created = False
        if not dist.is_initialized():
            _create_group(device, setting.timeout)
            created = True
        _check_backend(device)
        group = _group_for(setting.timeout)
        _GROUPS.fits += 1
        dp = DataParallel(dist.get_rank(), dist.get_world_size(), created, group)
        pulse = _Pulse(dp.rank, dp.world_size, _GROUPS.fits)
        try:
            yield dp
        except Exception as exc:
            if not _collective_failure(exc):
                raise
            verdict = pulse.lost()
            raise ProcessLostError(
                _lost_message(verdict, dp.rank, dp.world_size, setting.timeout),
                lost=() if verdict is None else verdict[0] + verdict[1],
            ) from exc
        finally:
            pulse.stop()
    finally:
        _GROUPS.busy.release()
