"""What the optimizer trains, at which rate, and skweight's decoupled weight decay.

:func:`parameter_groups` splits the trainable parameters into the
optimizer's groups: the network's, and the loss's own (e.g. Balanced MSE's
noise scale), which get no weight decay and may have their own learning
rate. Frozen parameters (``requires_grad=False``) stay in their groups
without a gradient: no step, no state, no decay until they are unfrozen.

``weight_decay`` (every estimator) is decoupled, as AdamW's (Loshchilov and
Hutter, 2019), whatever the optimizer: before each step every decayed
weight is multiplied by ``1 - lr * weight_decay``, with the learning rate
of its group. It applies to the network's weights only
(:func:`decayed_parameters`): not to biases, not to the parameters of
normalisation layers, not to the loss's parameters, not to frozen ones.
The optimizer's own ``optimizer__weight_decay`` is independent of it and
keeps torch's meaning (all parameters of the optimizer).
"""

import torch
from torch import nn

__all__ = ["NORM_LAYERS", "DecoupledDecay", "decayed_parameters", "parameter_groups"]

#: Layers whose parameters are never decayed: their scale and shift set the
#: statistics of the features, not the features themselves.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
               nn.LocalResponseNorm)


def decayed_parameters(module):
    """Return the parameters of ``module`` that weight decay applies to.

    Parameters with at least two dimensions (the weights of linear,
    convolutional and embedding layers) outside normalisation layers;
    frozen ones (``requires_grad=False``) excluded.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    params : list of nn.Parameter
    """
    in_norm = {id(p) for m in module.modules() if isinstance(m, NORM_LAYERS)
               for p in m.parameters(recurse=False)}
    return [p for p in module.parameters()
            if p.requires_grad and p.ndim >= 2 and id(p) not in in_norm]


def parameter_groups(groups, criterion, lr_of=None):
    """Split the optimizer's parameter groups: the loss's parameters apart.

    Parameters
    ----------
    groups : list of dict
        The groups skorch built (``optimizer__param_groups`` applied), each
        with ``"params"``.
    criterion : nn.Module or None
        The loss; its parameters go into a group of their own, without
        weight decay, at its ``sigma_lr`` when it has one.
    lr_of : None or callable
        ``lr_of(param) -> None or float``: a learning rate for some
        parameters (e.g. a backbone's), which then get groups of their own.

    Returns
    -------
    groups : list of dict
        The non-empty groups.
    """
    own = set()
    if isinstance(criterion, nn.Module):
        own = {id(p) for p in criterion.parameters()}
    out, loss_params = [], []
    for group in groups:
        # Frozen parameters stay in their groups: they get no gradient, so no
        # step and no optimizer state until they are unfrozen (and a
        # learning-rate schedule keeps acting on the one optimizer).
        params = list(group["params"])
        rest = {k: v for k, v in group.items() if k != "params"}
        loss_params += [p for p in params if id(p) in own]
        params = [p for p in params if id(p) not in own]
        by_lr = {}
        for p in params:
            lr = None if lr_of is None else lr_of(p)
            by_lr.setdefault(lr, []).append(p)
        for lr, members in by_lr.items():
            extra = {} if lr is None else {"lr": lr}
            out.append({"params": members, **rest, **extra})
    if loss_params:
        extra = {"weight_decay": 0.0}
        sigma_lr = getattr(criterion, "sigma_lr", None)
        if sigma_lr is not None:
            extra["lr"] = sigma_lr
        out.append({"params": loss_params, **extra})
    return [g for g in out if g["params"]]


class DecoupledDecay:
    """Decoupled weight decay of the decayed weights, at each group's learning rate.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    decayed : list of nn.Parameter
        The parameters to decay (:func:`decayed_parameters`).
    weight_decay : float
    """

    def __init__(self, optimizer, decayed, weight_decay):
        ids = {id(p) for p in decayed}
        self.weight_decay = weight_decay
        self.groups = [
            (group, [p for p in group["params"] if id(p) in ids])
            for group in optimizer.param_groups
        ]
        self.groups = [(g, ps) for g, ps in self.groups if ps]

    @torch.no_grad()
    def __call__(self):
        """Shrink each decayed weight by ``1 - lr * weight_decay`` (before the step)."""
        for group, params in self.groups:
            factor = 1.0 - group["lr"] * self.weight_decay
            torch._foreach_mul_(params, factor)
