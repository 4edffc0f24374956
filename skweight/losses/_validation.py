"""Checks of constructor parameters shared by the losses.

The generic checks (real numbers, ``ignore_index``, per-class masses) are
the package's own, from :mod:`skweight._validation`.
"""

import torch

from .._validation import check_class_mass, check_ignore_index, check_real

__all__ = ["check_class_mass", "check_class_weight", "check_ignore_index", "check_real",
           "check_reduction"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction, allowed=REDUCTIONS):
    """Return `reduction` if it is one of `allowed`, else raise ValueError."""
    if not isinstance(reduction, str) or reduction not in allowed:
        options = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"reduction must be one of {options}; got {reduction!r}.")
    return reduction


def check_class_weight(value, name="class_weight", scalar_hint=""):
    """Return per-class weights as a 1-D float32 tensor, or None.

    Accepts a list, tuple, numpy array or tensor of non-negative finite
    numbers. The length is checked against the number of classes at forward
    time, when it is known.
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        weight = value.detach().to(dtype=torch.float32).clone()
    else:
        try:
            weight = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"{name} must be a 1-D sequence of per-class weights; got {value!r}."
            ) from exc
    if weight.ndim == 0:
        raise ValueError(
            f"{name} must be a 1-D sequence with one weight per class; got the "
            f"scalar {value!r}.{scalar_hint}"
        )
    if weight.ndim != 1 or weight.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence with one weight per class; "
            f"got shape {tuple(weight.shape)}."
        )
    if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise ValueError(
            f"{name} must contain finite non-negative numbers; got {weight.tolist()}."
        )
    return weight
