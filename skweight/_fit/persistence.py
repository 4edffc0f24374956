"""Saving and loading a fitted estimator's network and what fit learned.

skorch's ``save_params`` writes a network's ``state_dict``; to predict, a
fresh estimator also needs what ``fit`` learned besides the weights (the
input shape, and the target object with its classes or target scaling).
:func:`save_learned` stores those in the ``state_dict``'s ``_metadata`` (the
file stays a plain ``state_dict`` that ``torch.load`` and
``module.load_state_dict`` take) and :func:`restore_learned` puts them
back; the estimators' ``save_params``/``load_params`` call them.
"""

import numpy as np
import torch
from skorch.history import History

from .labels import LabelTargets, MultiLabelTargets
from .real import RealTargets

__all__ = ["load_files", "resolve_files", "restore_learned", "save_learned"]

# Version of the learned state stored with ``save_params`` (2: the target
# object's state instead of one entry per fitted attribute).
_STATE_VERSION = 2


def save_learned(net, f_params):
    """Write the network's ``state_dict`` with the fitted attributes in its metadata.

    Parameters
    ----------
    net : BaseCNN
        A fitted estimator.
    f_params : str or file
    """
    state = net.module_.state_dict()
    learned = {"version": _STATE_VERSION, "estimator": type(net).__name__}
    for name in net._learned_attributes:
        if name not in net.__dict__:
            continue
        value = net.__dict__[name]
        if name == "targets_":
            learned[name] = value.get_state()
        elif isinstance(value, np.ndarray):
            learned[name] = {"ndarray": value.tolist(), "dtype": value.dtype.str}
        elif isinstance(value, tuple):
            learned[name] = {"tuple": list(value)}
        else:
            learned[name] = value
    state._metadata["skweight"] = learned
    torch.save(state, f_params)


def restore_learned(net, weights):
    """Set the fitted attributes that :func:`save_learned` stored with ``weights``.

    Parameters
    ----------
    net : BaseCNN
    weights : dict
        A ``state_dict`` as ``torch.load`` returns it.
    """
    learned = getattr(weights, "_metadata", {}).get("skweight")
    if learned is None:
        return
    if learned.get("version") != _STATE_VERSION:
        raise ValueError(
            f"The parameters file was written by another version of skweight "
            f"(format {learned.get('version')!r}, this one reads "
            f"{_STATE_VERSION}); refit and save again."
        )
    for name in net._learned_attributes:
        if name not in learned:
            continue
        value = learned[name]
        if name == "targets_":
            value = targets_from_state(value)
        elif isinstance(value, dict) and "ndarray" in value:
            value = np.array(value["ndarray"], dtype=np.dtype(value["dtype"]))
        elif isinstance(value, dict) and "tuple" in value:
            value = tuple(value["tuple"])
        setattr(net, name, value)


def targets_from_state(state):
    """Rebuild the target object that :meth:`Targets.get_state` saved."""
    kinds = {kind.__name__: kind for kind in (LabelTargets, MultiLabelTargets, RealTargets)}
    return kinds[state["kind"]].from_state(state)


def load_files(f_params, device, torch_load_kwargs):
    """Load a ``state_dict`` onto ``device`` (weights only, unless told otherwise)."""
    return torch.load(f_params, map_location=device,
                      **(torch_load_kwargs or {"weights_only": True}))


def resolve_files(net, checkpoint, f_params, f_optimizer, f_criterion, f_history,
                  others):
    """Return skorch's ``f_*`` files to load, from the arguments or a checkpoint.

    A checkpoint's history is loaded first (its file names may be formatted
    from its last epoch); ``f_module`` is skorch's other name for
    ``f_params``.
    """
    files = {}
    if checkpoint is not None:
        if f_history is None and checkpoint.f_history is not None:
            net.history = History.from_file(checkpoint.f_history_)
        elif net.history_ is None:
            net.history_ = History()
        files.update(checkpoint.get_formatted_files(net))
        files.pop("f_history", None)
    files.update(others)
    for key, value in (("f_params", f_params), ("f_optimizer", f_optimizer),
                       ("f_criterion", f_criterion), ("f_history", f_history)):
        if value:
            files[key] = value
    if "f_module" in files:
        files["f_params"] = files.pop("f_module")
    return files
