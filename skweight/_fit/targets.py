"""What an estimator's targets are: one object per kind, held as ``targets_``.

The fit template (:mod:`skweight._fit.base`) asks the estimator's target
object everything that depends on what ``y`` is:

===========================  ============================  ==========================
step                         :class:`LabelTargets`         :class:`RealTargets`
===========================  ============================  ==========================
learn (``learn``)            the classes                   the scaling of each target
encode / decode              labels <-> 0..K-1             standardise / unscale
stratify the split           by label (per image only)     no
class weights, priors        from the training rows        none
the loss and its prior       prior-aware losses learn it   per-target weights
check the network's output   ``(N, K[, H, W])``            ``(N, T)``
predict                      (log-)probabilities, labels   values in the user's units
===========================  ============================  ==========================

:class:`Targets` states the protocol with the defaults of a target kind
that has nothing to say at a step; the kinds override what differs: class
labels and overlapping labels in :mod:`skweight._fit.labels`
(:class:`~skweight._fit.labels.LabelTargets`,
:class:`~skweight._fit.labels.MultiLabelTargets`), real values in
:mod:`skweight._fit.real` (:class:`~skweight._fit.real.RealTargets`).
What a target object learns in ``fit`` is what the estimator exposes as
fitted attributes (``classes_``, ``class_weight_``, ``target_mean_``, ...,
see :class:`FittedAttribute`), and what ``save_params`` stores with the
network's weights (:meth:`Targets.get_state`).
"""

import numbers
import warnings

import numpy as np

from .._validation import check_class_mass

__all__ = ["PRIOR_FLOOR", "FittedAttribute", "Targets", "check_class_prior",
           "check_prior_tau", "check_prior_tau_setting"]

# Floor of a class prior wherever one enters a logarithm: a class that no
# training sample carries gets log(1e-12) = -27.6, finite.
PRIOR_FLOOR = 1e-12


class FittedAttribute:
    """A fitted attribute of an estimator, read from its target object.

    The target object (``targets_``) is the one place where what ``fit``
    learned about the targets lives; the estimator's attribute reads it,
    and raises ``AttributeError`` before ``fit`` as scikit-learn expects.

    Parameters
    ----------
    name : str
        The attribute of the target object.
    """

    def __init__(self, name):
        self.name = name

    def __set_name__(self, owner, public):
        self.public = public

    def __get__(self, estimator, owner=None):
        if estimator is None:
            return self
        targets = estimator.__dict__.get("targets_")
        if targets is None or not hasattr(targets, self.name):
            raise AttributeError(
                f"{type(estimator).__name__!r} object has no attribute {self.public!r}"
            )
        return getattr(targets, self.name)


class Targets:
    """The protocol of a target kind, with the defaults of one that has no classes.

    Every method is called by the fit template or the training loop; a
    target kind overrides those where it has something to do.
    """

    #: The fitted state, saved by ``get_state`` (attribute names).
    _state = ()

    @property
    def n_outputs(self):
        """The number of outputs the network needs (one per class or label)."""
        return len(self.classes)

    def encode(self, y):
        """Return the targets as the loss sees them, and a mask of the elements that count.

        Parameters
        ----------
        y : ndarray
            Checked targets of this kind.

        Returns
        -------
        target : torch.Tensor
        mask : None or ndarray of bool
        """
        raise NotImplementedError

    def decode(self, target, weight=None):
        """Return targets as the user gave them (callbacks compare them with ``predict``).

        Parameters
        ----------
        target : torch.Tensor
        weight : None or torch.Tensor
            The normalised weights of the same rows.

        Returns
        -------
        y : torch.Tensor or ndarray
        """
        return target

    def stratify(self, dataset):
        """Return the labels to stratify a hold-out split by (None: no stratification)."""
        return None

    def learn_class_weights(self, requested, served):
        """Learn and return per-class weights from the rows served (None: no classes)."""
        return None

    def learn_training_prior(self, split):
        """Learn the unweighted class frequencies of the training split (if any)."""

    def seen_prior(self, dataset, counts):
        """Return the class distribution the loss sees in ``dataset`` (None: no classes)."""
        return None

    def criterion_defaults(self, criterion_class, kwargs, prior):
        """Return the loss's settings with what the targets supply (e.g. a class prior)."""
        return kwargs

    def start_phase(self, criterion, prior, criterion_params):
        """Start a phase of training whose loss sees the class distribution ``prior``."""

    def end_training(self, criterion, prior):
        """End training: learn what the network's outputs are calibrated for."""

    def batch_target(self, target):
        """Return a batch's targets as transforms and losses take them (default: as stored).

        Called per batch, on the device: targets may be stored compactly
        (one byte per label or pixel) and widened here.
        """
        return target

    def element_weights(self, weight, target):
        """Return the weights the loss applies to a batch's elements (default: as given)."""
        return weight

    def weight_unit(self, unit):
        """Name what one weight is attached to, for messages (``unit``: a sample's)."""
        return unit

    def element_sample_weight(self, sample_weight, target_shape):
        """Return ``sample_weight`` in a shape the weight path folds (here: as given)."""
        return sample_weight

    def duplicated_weights(self, requested):
        """Return weights the estimator applies that the loss must not repeat.

        Returns None, or ``(setting, criterion attribute names, what)``.
        """
        return None

    def check_output(self, out, n_samples, spatial):
        """Check (and shape) the network's output for ``n_samples`` inputs."""
        return out

    def get_state(self):
        """Return the fitted state in types ``torch.load(weights_only=True)`` takes."""
        state = {"kind": type(self).__name__}
        for name in self._state:
            state[name] = _to_plain(getattr(self, name))
        return state

    @classmethod
    def from_state(cls, state):
        """Rebuild a target object from :meth:`get_state`'s output."""
        obj = cls.__new__(cls)
        for name in cls._state:
            setattr(obj, name, _from_plain(state.get(name)))
        return obj


def check_prior_tau(prior_tau):
    """Validate ``prior_tau``: a finite number >= 0 (the strength of ``class_prior``)."""
    if isinstance(prior_tau, bool) or not isinstance(prior_tau, numbers.Real) or not (
        np.isfinite(prior_tau) and prior_tau >= 0
    ):
        raise ValueError(
            f"prior_tau must be a finite number >= 0 (0: probabilities as trained, "
            f"1: Bayes' rule to class_prior), got {prior_tau!r}."
        )
    return float(prior_tau)


def check_prior_tau_setting(prior_tau, class_prior):
    """Validate ``prior_tau`` at fit, warning when it does nothing (no ``class_prior``)."""
    tau = check_prior_tau(prior_tau)
    if tau != 1.0 and class_prior is None:
        warnings.warn(
            f"prior_tau={prior_tau!r} does nothing without class_prior: it is the "
            f"strength of the correction of the probabilities to class_prior "
            f"(e.g. class_prior='train' or a deployment's class frequencies).",
            UserWarning, stacklevel=3,
        )
    return tau


def check_class_prior(prior, n_classes=None):
    """Validate ``class_prior``: None, "train" or non-negative frequencies.

    Parameters
    ----------
    prior : None, "train" or array-like
    n_classes : None or int
        The number of classes the frequencies must match (None: any).

    Returns
    -------
    prior : None, "train" or ndarray summing to 1
    """
    if prior is None or (isinstance(prior, str) and prior == "train"):
        return prior
    if isinstance(prior, str) or isinstance(prior, numbers.Number):
        raise ValueError(
            f"class_prior must be None, 'train' or an array of class frequencies "
            f"aligned with classes_, got {prior!r}."
        )
    values = check_class_mass(prior, "class_prior")
    if n_classes is not None and len(values) != n_classes:
        raise ValueError(
            f"class_prior has shape {values.shape}, but there are {n_classes} classes "
            f"(classes_); pass one frequency per class, in the order of classes_."
        )
    return values / values.sum()


# ---------------------------------------------------------------------------
# Plain types for save_params
# ---------------------------------------------------------------------------


def _to_plain(value):
    """Convert a fitted value to types ``torch.load(weights_only=True)`` accepts."""
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
