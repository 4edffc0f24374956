"""Checks of constructor parameters shared by the losses."""

import math
import numbers

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction, allowed=REDUCTIONS):
    """Return `reduction` if it is one of `allowed`, else raise ValueError."""
    if not isinstance(reduction, str) or reduction not in allowed:
        options = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"reduction must be one of {options}; got {reduction!r}.")
    return reduction


def check_real(value, name, *, low=None, high=None):
    """Return `value` as a float after checking it is finite and in [low, high]."""
    # bool is an Integral, but True as a gamma or smoothing is surely a bug.
    valid = isinstance(value, numbers.Real) and not isinstance(value, bool)
    valid = valid and math.isfinite(value)
    valid = valid and (low is None or value >= low)
    valid = valid and (high is None or value <= high)
    if not valid:
        if low is not None and high is not None:
            expected = f"in [{low}, {high}]"
        elif low is not None:
            expected = f">= {low}"
        else:
            expected = "finite"
        raise ValueError(f"{name} must be a finite real number {expected}; got {value!r}.")
    return float(value)


def check_ignore_index(ignore_index):
    """Return `ignore_index` as an int, or None."""
    if ignore_index is None:
        return None
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index must be an int or None; got {ignore_index!r}.")
    return int(ignore_index)


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
