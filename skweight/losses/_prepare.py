"""Forward-time checks of input/target/sample_weight and per-element weights.

Every loss goes through :func:`prepare` (class-index targets) or
:func:`prepare_binary` (0/1 targets), so shapes, label ranges, weight
broadcasting, class-weight gathering and ``ignore_index`` masking follow one
convention: a per-class weight ``c`` acts exactly like the per-element sample
weight ``c[target]``, and ignored elements get weight 0.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from .._validation import SAMPLE_WEIGHT_VALUES_MESSAGE, sample_weight_shape_message


class Prepared(NamedTuple):
    """Validated forward arguments.

    input : logits in the compute dtype.
    target : class indices (long) or 0/1 values (compute dtype for binary
        targets); ignored entries are replaced by 0 so they can index safely.
    weight : per-element weight broadcastable to ``target`` (sample weight
        times class weight times the non-ignored mask), or None for all ones.
    n_valid : number of non-ignored elements (int, or a 0-d tensor when
        counting needs the data, to avoid a device sync).
    """

    input: Tensor
    target: Tensor
    weight: Tensor | None
    n_valid: Tensor | int


def compute_dtype(input):
    """float64 stays float64 (gradcheck); anything else is computed in float32.

    Half precision logits from autocast would lose the small differences that
    log-softmax, Dice ratios and the focal factor depend on.
    """
    return torch.float64 if input.dtype == torch.float64 else torch.float32


def _check_floating(input):
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor of logits; got {type(input)}.")
    if not input.is_floating_point():
        raise ValueError(
            f"input must be a floating point tensor of logits; got dtype {input.dtype}."
        )


def sample_weight_view(sample_weight, target, dtype):
    """Return `sample_weight` as a tensor broadcastable to `target`.

    One weight per sample ``(N,)`` or per element (the target's shape); the
    shared losses (classification, segmentation, regression) all use this.
    """
    weight = sample_weight
    if not isinstance(weight, Tensor) or weight.device != target.device:
        weight = torch.as_tensor(weight, device=target.device)
    if weight.dtype != dtype:
        weight = weight.to(dtype)
    shape = tuple(weight.shape)
    if shape == tuple(target.shape):
        return weight
    n_samples = target.shape[0]
    if shape == (n_samples,):
        # one weight per sample, repeated over its pixels
        return weight.reshape((n_samples,) + (1,) * (target.ndim - 1))
    raise ValueError(sample_weight_shape_message(
        "sample_weight", shape, n_samples,
        tuple(target.shape[1:]) if target.ndim > 1 else None,
    ))


def _raise_on_bad_values(bad_target, sample_weight, target_message):
    """Check data-dependent conditions with a single device sync.

    `target_message` is called only on failure, so building the error (which
    needs the offending values) costs nothing on the normal path.
    """
    flags = [bad_target.any()]
    if sample_weight is not None:
        # NaN fails `>= 0`, so this also rejects NaN weights.
        flags.append((~(sample_weight >= 0) | torch.isinf(sample_weight)).any())
    bad = torch.stack(flags).tolist()
    if bad[0]:
        raise ValueError(target_message())
    if len(bad) > 1 and bad[1]:
        raise ValueError(
            SAMPLE_WEIGHT_VALUES_MESSAGE.format(name="sample_weight") + "."
        )


def _offending_values(target, bad, limit=10):
    values = torch.unique(target[bad]).tolist()
    suffix = ", ..." if len(values) > limit else ""
    return ", ".join(str(v) for v in values[:limit]) + suffix


def prepare(
    input,
    target,
    sample_weight=None,
    class_weight=None,
    ignore_index=None,
    class_weight_name="class_weight",
    check_values=True,
):
    """Validate class-index targets and build per-element weights.

    Parameters
    ----------
    input : Tensor of shape (N, K) or (N, K, d1, d2, ...)
        Logits.
    target : integer Tensor of shape (N,) or (N, d1, d2, ...)
        Class indices in [0, K), or `ignore_index`.
    sample_weight : Tensor of shape (N,) or target's shape, default=None
        Non-negative weights.
    class_weight : Tensor of shape (K,), default=None
        Non-negative per-class weights, gathered as ``class_weight[target]``.
    ignore_index : int, default=None
        Target value whose elements get weight 0 and are not counted.
    class_weight_name : str, default="class_weight"
        Name of the class-weight parameter, for error messages.
    check_values : bool, default=True
        Check target values and weight signs (each a device sync on a GPU);
        callers that validated their data already pass False. Shapes are
        always checked.

    Returns
    -------
    prepared : Prepared
    """
    _check_floating(input)
    if input.ndim < 2:
        raise ValueError(
            "input must have shape (N, K) or (N, K, d1, d2, ...) with the classes "
            f"on dimension 1; got shape {tuple(input.shape)}. For one logit per "
            "element (binary or multi-label), use SigmoidFocalLoss."
        )
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target)}.")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            "target must hold integer class indices (e.g. torch.long); got dtype "
            f"{target.dtype}."
        )
    n_classes = input.shape[1]
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match input shape "
            f"{tuple(input.shape)}: expected target of shape {expected} (the input "
            "shape without the class dimension 1)."
        )
    if class_weight is not None and class_weight.numel() != n_classes:
        raise ValueError(
            f"{class_weight_name} has {class_weight.numel()} entries but input has "
            f"K={n_classes} classes (dimension 1); expected one weight per class."
        )

    dtype = compute_dtype(input)
    # Conversions only where needed: each is a dispatch on every step.
    x = input if input.dtype == dtype else input.to(dtype)
    if target.dtype != torch.long or target.device != x.device:
        target = target.to(device=x.device, dtype=torch.long)
    valid = None if ignore_index is None else target != ignore_index
    weight = None
    if sample_weight is not None:
        weight = sample_weight_view(sample_weight, target, dtype)

    if check_values:
        out_of_range = (target < 0) | (target >= n_classes)
        if valid is not None:
            out_of_range = out_of_range & valid

        def target_message():
            ignored = (
                "" if ignore_index is None else f" and not ignore_index={ignore_index}"
            )
            return (
                f"target contains class indices outside [0, K={n_classes}){ignored}: "
                f"{_offending_values(target, out_of_range)}."
            )

        _raise_on_bad_values(out_of_range, weight, target_message)

    if valid is not None:
        # ignored targets may be any value; 0 keeps gather/one-hot in range
        target = target.masked_fill(~valid, 0)
    if class_weight is not None:
        per_element = class_weight.to(device=x.device, dtype=dtype)[target]
        weight = per_element if weight is None else weight * per_element
    if valid is None:
        n_valid = target.numel()
    else:
        mask = valid.to(dtype)
        weight = mask if weight is None else weight * mask
        n_valid = valid.sum()
    return Prepared(x, target, weight, n_valid)


def prepare_checked(input, target, sample_weight=None):
    """:func:`prepare` for checked inputs without class weights or ``ignore_index``.

    The targets are class indices in range, on ``input``'s device, of the
    matching shape; ``sample_weight`` is None or a floating tensor of shape
    ``(N,)`` or the target's shape (checked: it costs no device sync). Only
    the compute dtype and the weight's broadcasting are dealt with.
    """
    dtype = compute_dtype(input)
    x = input if input.dtype == dtype else input.to(dtype)
    weight = sample_weight
    if weight is not None:
        if weight.shape != target.shape:
            # (N,) per sample, broadcast over the pixels; anything else is
            # refused with the usual message.
            weight = sample_weight_view(weight, target, dtype)
        elif weight.dtype != dtype:
            weight = weight.to(dtype)
    return Prepared(x, target, weight, target.numel())


def prepare_binary(
    input,
    target,
    sample_weight=None,
    check_values=True,
    ignore_index=None,
    loss_name="SigmoidFocalLoss",
):
    """Validate 0/1 targets of the same shape as `input` (one logit each).

    Parameters
    ----------
    input : Tensor of any shape (N, ...)
        Logits, one per binary decision.
    target : Tensor of the input's shape
        0/1 values of any dtype (float, integer or bool), or `ignore_index`.
    sample_weight : Tensor of shape (N,) or target's shape, default=None
        Non-negative weights.
    check_values : bool, default=True
        Check target values and weight signs (one device sync on a GPU).
    ignore_index : int, default=None
        Target value of elements that get weight 0 and are not counted.
    loss_name : str, default="SigmoidFocalLoss"
        The loss named in error messages.

    Returns
    -------
    prepared : Prepared
        With ``target`` as 0/1 values in the compute dtype (0 where ignored).
    """
    _check_floating(input)
    if input.ndim < 1:
        raise ValueError("input must have at least one dimension (N, ...); got a scalar.")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target)}.")
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match input shape "
            f"{tuple(input.shape)}: {loss_name} expects one 0/1 target per logit."
        )
    dtype = compute_dtype(input)
    x = input if input.dtype == dtype else input.to(dtype)
    if target.device != x.device:
        target = target.to(x.device)
    valid = None if ignore_index is None else target != ignore_index
    weight = None
    if sample_weight is not None:
        weight = sample_weight_view(sample_weight, target, dtype)

    if check_values:
        not_binary = (target != 0) & (target != 1)
        if valid is not None:
            not_binary = not_binary & valid

        def target_message():
            ignored = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
            return (
                f"target must contain only 0 and 1{ignored} for {loss_name}; got "
                f"{_offending_values(target, not_binary)}."
            )

        _raise_on_bad_values(not_binary, weight, target_message)

    if valid is None:
        return Prepared(x, target.to(dtype), weight, target.numel())
    # ignored targets may hold any value; 0 keeps the loss terms finite
    target = target.masked_fill(~valid, 0)
    mask = valid.to(dtype)
    weight = mask if weight is None else weight * mask
    return Prepared(x, target.to(dtype), weight, valid.sum())
