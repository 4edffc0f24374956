"""Saving and loading a fitted estimator's network and what fit learned.

skorch's ``save_params`` writes a network's ``state_dict``; to predict, a
fresh estimator also needs what ``fit`` learned besides the weights (classes,
input shape, target scaling). :class:`PersistenceMixin` stores those in the
``state_dict``'s ``_metadata`` (the file stays a plain ``state_dict`` that
``torch.load`` and ``module.load_state_dict`` take), restores them in
``load_params``, and resolves ``device="auto"`` where skorch needs a device
name. Pickling keeps ``device="auto"`` as it was given.
"""

import numpy as np
import torch
from skorch.history import History

from ._training import resolve_device

__all__ = ["PersistenceMixin"]

# Version of the learned state stored with ``save_params``.
_STATE_VERSION = 1



class PersistenceMixin:
    """``save_params``/``load_params`` and pickling of the estimators."""

    def _learned_state(self):
        """Return what ``fit`` learned besides the network's weights, in plain types."""
        state = {"version": _STATE_VERSION, "estimator": type(self).__name__}
        for name in self._learned_attributes:
            if name in self.__dict__:
                state[name] = _to_plain(self.__dict__[name])
        return state

    def _restore_learned_state(self, state):
        for name in self._learned_attributes:
            if name in state:
                setattr(self, name, _from_plain(state[name]))

    def save_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, use_safetensors=False, **kwargs):
        """Save the network's weights, and what fit learned besides them.

        As skorch's ``save_params``; the ``f_params`` file is a plain
        ``state_dict`` (loadable into the module by ``torch.load``) that also
        carries the fitted attributes prediction needs (classes, input shape,
        target scaling) in its ``_metadata``, so that ``load_params`` on a
        fresh estimator restores a model that predicts exactly as this one.
        With ``use_safetensors=True`` only the weights are stored.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : None, str or file
        use_safetensors : bool, default=False
        **kwargs
            Other ``f_*`` files, as in skorch.
        """
        if f_params is None:
            # skorch's own callers (e.g. Checkpoint) name it f_module.
            f_params = kwargs.pop("f_module", None)
        if f_params is not None and not use_safetensors:
            self.check_is_fitted(["module_"])
            state = self.module_.state_dict()
            state._metadata["skweight"] = self._learned_state()
            torch.save(state, f_params)
            f_params = None
        return super().save_params(
            f_params=f_params, f_optimizer=f_optimizer, f_criterion=f_criterion,
            f_history=f_history, use_safetensors=use_safetensors, **kwargs,
        )

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, checkpoint=None, use_safetensors=False, **kwargs):
        """Load what ``save_params`` saved (skorch's ``load_params``).

        The fitted attributes stored with the weights are restored too; an
        estimator that is not initialised yet is then initialised from them
        (which builds the default network), so that ``load_params`` on a
        fresh estimator gives back the saved model. ``device="auto"`` is
        resolved as in ``fit``.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : None, str or file
        checkpoint : None or skorch.callbacks.Checkpoint
        use_safetensors : bool, default=False
        **kwargs
            Other ``f_*`` files, as in skorch.
        """
        files = {}
        if checkpoint is not None:
            # The history first: the checkpoint's file names may be formatted
            # from its last epoch.
            if f_history is None and checkpoint.f_history is not None:
                self.history = History.from_file(checkpoint.f_history_)
            elif self.history_ is None:
                self.history_ = History()
            files.update(checkpoint.get_formatted_files(self))
            files.pop("f_history", None)
        files.update(kwargs)
        for key, value in (("f_params", f_params), ("f_optimizer", f_optimizer),
                           ("f_criterion", f_criterion), ("f_history", f_history)):
            if value:
                files[key] = value
        if "f_module" in files:  # skorch's other name for f_params
            files["f_params"] = files.pop("f_module")
        device = resolve_device(self.device)
        weights = None
        if files.get("f_params") and not use_safetensors:
            weights = torch.load(files.pop("f_params"), map_location=device,
                                 **(self.torch_load_kwargs or {"weights_only": True}))
            learned = getattr(weights, "_metadata", {}).get("skweight")
            if learned is not None:
                self._restore_learned_state(learned)
        if not self.initialized_:
            self.initialize()
        if weights is not None:
            self.module_.load_state_dict(weights)
        if files:
            requested = self.device
            # skorch maps the files onto ``self.device``, which must be a
            # real device name for that.
            self.device = str(self.device_)
            try:
                super().load_params(use_safetensors=use_safetensors, **files)
            finally:
                self.device = requested
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("grad_scaler_", None)
        state.pop("_loop_", None)
        return state

    def __setstate__(self, state):
        requested = state.get("device", "auto")
        if requested is None or requested == "auto":
            state = dict(state)
            state["device"] = "cuda" if torch.cuda.is_available() else "cpu"
            super().__setstate__(state)
            self.device = requested
        else:
            super().__setstate__(state)
        if "module_" in self.__dict__:
            self.device_ = resolve_device(self.device)
            self.grad_scaler_ = self._make_grad_scaler()


def _to_plain(value):
    """Convert a fitted attribute to types ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"tuple": [_to_plain(v) for v in value]}
    return value


def _from_plain(value):
    if isinstance(value, dict) and "ndarray" in value:
        return np.array(value["ndarray"], dtype=np.dtype(value["dtype"]))
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_from_plain(v) for v in value["tuple"])
    return value
