"""Starting from a pretrained network: a copy, its head, its input channels, freezing.

A network given as ``module=`` instance is a starting point: each fit
trains a copy of it (:func:`starting_copy`), so the caller's object, a
clone's and every search fold's start from the same weights. The layer
that outputs the logits (the head, :func:`find_head`) is replaced by a
fresh one when it has the wrong number of outputs (:func:`replace_head`);
a first convolution made for three channels takes one-channel images (and
the reverse) by :func:`adapt_input_channels`, as timm adapts ``in_chans``;
and ``freeze=`` keeps some parameters as they are (:func:`frozen_parameters`),
their BatchNorm statistics included (:func:`frozen_norm_layers`).

Two decoupled long-tail recipes (Kang et al., ICLR 2020) act on the head:
learnable weight scaling (:class:`LearnedScale`) and tau-normalisation
(:func:`tau_normalize`).
"""

import copy
import fnmatch
import numbers
import warnings

import numpy as np
import torch
from torch import nn

from .optim import NORM_LAYERS

__all__ = [
    "DECOUPLED",
    "HEAD_LAYERS",
    "TAU_GRID",
    "check_decoupled",
    "LearnedScale",
    "adapt_input_channels",
    "check_channels_stats",
    "check_pretrained_params",
    "find_head",
    "frozen_norm_layers",
    "frozen_parameters",
    "replace_head",
    "starting_copy",
    "tau_normalize",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: Layers a head can be: their output size is the number of classes.
HEAD_LAYERS = (nn.Linear, *_CONVS, *_TRANSPOSED)


def starting_copy(module):
    """Return the network a fit trains: a copy of the caller's instance.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    module : nn.Module
        A deep copy; the caller's object is never trained.
    """
    return copy.deepcopy(module)


def _outputs_of(layer):
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def find_head(module, head, spatial=False):
    """Return the name and layer of the network's head (the layer of the logits).

    Parameters
    ----------
    module : nn.Module
    head : "auto" or str
        ``"auto"``: the module's ``get_classifier()`` where it has one
        (timm's networks), else its last ``nn.Linear`` (in the order of
        ``named_modules``), else, for maps (``spatial``), its last
        convolution or transposed convolution. A name is a submodule's
        dotted path (``"fc"``, ``"classifier.1"``).
    spatial : bool, default=False
        Whether the outputs are maps (a segmenter's): only then may
        ``"auto"`` take a convolution for the head.

    Returns
    -------
    name : str
    layer : nn.Module
    """
    named = dict(module.named_modules())
    if head != "auto":
        if head not in named or head == "":
            raise ValueError(
                f"head={head!r} is not a submodule of the network; use 'auto' or one "
                f"of the names of its layers, e.g. "
                f"{[n for n, m in named.items() if isinstance(m, HEAD_LAYERS)][-3:]}."
            )
        layer = named[head]
        if not isinstance(layer, HEAD_LAYERS):
            raise ValueError(
                f"head={head!r} is a {type(layer).__name__}; the head must be an "
                f"nn.Linear or a convolution (its outputs are the logits)."
            )
        return head, layer
    get_classifier = getattr(module, "get_classifier", None)
    if callable(get_classifier):
        layer = get_classifier()
        for name, candidate in named.items():
            if candidate is layer and isinstance(layer, HEAD_LAYERS):
                return name, layer
        # A headless network (timm's num_classes=0: an Identity): its last
        # layer is a feature layer, which must not be replaced.
        raise ValueError(
            f"head='auto': the network's get_classifier() is a "
            f"{type(layer).__name__}, not a layer of logits (a network without a "
            f"head, e.g. timm's num_classes=0). Create it with num_classes set, or "
            f"pass head=None to take its outputs as they are."
        )
    kinds = [(nn.Linear,)] + ([_CONVS + _TRANSPOSED] if spatial else [])
    for kind in kinds:
        found = [(n, m) for n, m in named.items() if isinstance(m, kind)]
        if found:
            return found[-1]
    what = "nn.Linear or convolution" if spatial else "nn.Linear"
    raise ValueError(
        f"head='auto' found no {what} in the network to take for its head; name "
        f"the layer of the logits (head='...'), or pass head=None to use the "
        f"network's outputs as they are."
    )


def replace_head(module, name, n_outputs):
    """Replace the head by a fresh layer of ``n_outputs`` outputs (torch's initialisation).

    Parameters
    ----------
    module : nn.Module
    name : str
        The head's dotted path.
    n_outputs : int

    Returns
    -------
    layer : nn.Module
        The new head (already in place).
    """
    old = module.get_submodule(name)
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, n_outputs, bias=old.bias is not None)
    elif isinstance(old, _TRANSPOSED):
        new = type(old)(old.in_channels, n_outputs, old.kernel_size, stride=old.stride,
                        padding=old.padding, output_padding=old.output_padding,
                        groups=1, bias=old.bias is not None, dilation=old.dilation)
    else:
        new = type(old)(old.in_channels, n_outputs, old.kernel_size, stride=old.stride,
                        padding=old.padding, dilation=old.dilation, groups=1,
                        bias=old.bias is not None, padding_mode=old.padding_mode)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child, new)
    return new


def adapt_input_channels(module, n_channels):
    """Let the network's first convolution take ``n_channels`` channels, as timm does.

    One-channel images into a convolution made for three: its weights are
    summed over the three input channels, so the network computes exactly
    what it would on the grey image repeated three times. Three-channel
    images into a one-channel convolution: its weights are repeated and
    divided by three (the network sees the mean of the channels).

    Parameters
    ----------
    module : nn.Module
    n_channels : int
        The images' channels.

    Returns
    -------
    note : None or str
        What was adapted (None: nothing to adapt, or no convolution found).
    """
    first = next(((n, m) for n, m in module.named_modules() if isinstance(m, _CONVS)),
                 None)
    if first is None:
        return None
    name, conv = first
    expected = conv.in_channels
    if expected == n_channels:
        return None
    if conv.groups != 1 or (expected, n_channels) not in ((3, 1), (1, 3)):
        raise ValueError(
            f"The images have {n_channels} channel(s), but the network's first "
            f"convolution {name!r} takes {expected}; only 1 <-> 3 channels are "
            f"adapted (grey images into an RGB network and the reverse). Convert "
            f"the images, or pass a network made for {n_channels} channel(s)."
        )
    with torch.no_grad():
        if n_channels == 1:
            weight = conv.weight.sum(dim=1, keepdim=True)
        else:
            weight = conv.weight.repeat(1, 3, *([1] * (conv.weight.ndim - 2))) / 3
        conv.weight = nn.Parameter(weight)
    conv.in_channels = n_channels
    how = "summed over its 3 input channels" if n_channels == 1 else (
        "repeated over 3 input channels and divided by 3")
    return (f"{name}: {expected} -> {n_channels} input channel(s), its weights {how} "
            f"(timm's in_chans adaptation)")


def frozen_parameters(module, freeze, head_name):
    """Return the names of the parameters ``freeze`` keeps as they are.

    Parameters
    ----------
    module : nn.Module
    freeze : None, "backbone" or list of str
        ``"backbone"``: the module's ``backbone_patterns`` where it defines
        them (the default U-Net: its encoder), else every parameter outside
        the head. A list: ``fnmatch`` patterns of parameter names
        (``"layer1.*"``, ``"*.bn*"``), each of which must match.
    head_name : None or str
        The head's dotted path.

    Returns
    -------
    names : list of str
    """
    if freeze is None:
        return []
    names = [n for n, _ in module.named_parameters()]
    if isinstance(freeze, str):
        patterns = getattr(module, "backbone_patterns", None)
        if patterns is None:
            prefix = None if head_name is None else head_name + "."
            return [n for n in names if prefix is None or not n.startswith(prefix)]
        freeze = list(patterns)
    frozen = []
    for pattern in freeze:
        matched = [n for n in names if fnmatch.fnmatch(n, pattern)]
        if not matched:
            raise ValueError(
                f"freeze pattern {pattern!r} matches no parameter of the network; "
                f"its parameters are named like {names[:4]}."
            )
        frozen += [n for n in matched if n not in frozen]
    return frozen


def frozen_norm_layers(module):
    """Return the normalisation layers whose parameters are all frozen.

    They stay in inference mode while training (their running statistics
    unchanged), as Keras keeps a frozen BatchNorm.
    """
    return [m for m in module.modules() if isinstance(m, NORM_LAYERS)
            and any(True for _ in m.parameters(recurse=False))
            and not any(p.requires_grad for p in m.parameters(recurse=False))]


class LearnedScale(nn.Module):
    """One learned factor per output of the head (LWS: learnable weight scaling).

    Registered on the head as a forward hook holder: the head's outputs are
    multiplied by ``scale``. :meth:`fold` multiplies the head's weights and
    bias by it and removes it, leaving a plain network.

    Parameters
    ----------
    n_outputs : int
    """

    def __init__(self, n_outputs):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n_outputs))

    def attach(self, head):
        """Multiply the outputs of ``head`` by ``scale`` from now on."""
        head.lws = self
        self._handle = head.register_forward_hook(_scaled_output)

    def fold(self, head):
        """Fold ``scale`` into the head's weights and bias; detach from the head."""
        with torch.no_grad():
            shape = (-1,) + (1,) * (head.weight.ndim - 1)
            head.weight.mul_(self.scale.reshape(shape).to(head.weight.dtype))
            if head.bias is not None:
                head.bias.mul_(self.scale.to(head.bias.dtype))
        self._handle.remove()
        del head.lws


def _scaled_output(head, inputs, output):
    scale = head.lws.scale
    return output * scale.reshape((1, -1) + (1,) * (output.ndim - 2)).to(output.dtype)


def tau_normalize(weight, tau):
    """Divide each row of a head's weight (one class) by its norm to the power ``tau``.

    Parameters
    ----------
    weight : torch.Tensor of shape (n_classes, ...)
    tau : float

    Returns
    -------
    weight : torch.Tensor
        ``w_k / ||w_k|| ** tau`` (rows of norm 0 unchanged).
    """
    norms = weight.detach().flatten(1).norm(dim=1).double()
    factor = torch.where(norms > 0, norms ** -float(tau), torch.ones_like(norms))
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * factor.to(weight.dtype).reshape(shape)


#: The tau values ``decoupled="tau_norm"`` tries (Kang et al. search [0, 2]).
TAU_GRID = np.round(np.linspace(0.0, 2.0, 21), 2)

#: The decoupled long-tail recipes of ``CNNClassifier(decoupled=...)``.
DECOUPLED = ("crt", "lws", "tau_norm")


def check_decoupled(decoupled, reweight_from_epoch, train_split, head):
    """Validate ``decoupled`` against the settings its recipe needs."""
    if decoupled is None:
        return None
    if not isinstance(decoupled, str) or decoupled not in DECOUPLED:
        raise ValueError(
            f"decoupled must be None or one of {list(DECOUPLED)}, got {decoupled!r}."
        )
    if head is None:
        raise ValueError(
            f"decoupled={decoupled!r} acts on the head; it needs head='auto' or the "
            f"head's name, not None."
        )
    if decoupled in ("crt", "lws") and reweight_from_epoch is None:
        raise ValueError(
            f"decoupled={decoupled!r} is a second stage of training: set "
            f"reweight_from_epoch to the epoch it starts (with sampler='balanced' or "
            f"class_weight='balanced' for its balance)."
        )
    if decoupled == "tau_norm" and train_split is None:
        raise ValueError(
            "decoupled='tau_norm' chooses its tau on the validation split: set "
            "train_split (e.g. 0.2)."
        )
    return decoupled


def check_pretrained_params(net):
    """Validate the pretrained-network parameters (``head``, ``freeze``, ...).

    Parameters
    ----------
    net : BaseCNN
    """
    head = net.head
    if not (head is None or isinstance(head, str)):
        raise TypeError(
            f"head must be 'auto', None or the name of a layer, got {head!r}."
        )
    freeze = net.freeze
    if not (freeze is None or (isinstance(freeze, str) and freeze == "backbone") or (
        isinstance(freeze, (list, tuple)) and freeze
        and all(isinstance(p, str) for p in freeze)
    )):
        raise ValueError(
            f"freeze must be None, 'backbone' or a non-empty list of parameter name "
            f"patterns (e.g. ['conv1.*', 'layer1.*']), got {freeze!r}."
        )
    start = net.unfreeze_from_epoch
    if start is not None:
        if isinstance(start, bool) or not isinstance(start, numbers.Integral) or start < 1:
            raise ValueError(
                f"unfreeze_from_epoch must be None or an int >= 1, got {start!r}."
            )
        if freeze is None:
            raise ValueError(
                f"unfreeze_from_epoch={start!r} unfreezes what freeze keeps; set "
                f"freeze (e.g. 'backbone')."
            )
        if start > net.max_epochs:
            warnings.warn(
                f"unfreeze_from_epoch={start} is beyond max_epochs={net.max_epochs}: "
                f"the frozen parameters stay frozen in this fit.", UserWarning,
                stacklevel=3,
            )
    lr = net.backbone_lr
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real)
                           or not (np.isfinite(lr) and lr > 0)):
        raise ValueError(f"backbone_lr must be None or a positive number, got {lr!r}.")
    if lr is not None and head is None:
        raise ValueError(
            "backbone_lr is the learning rate of everything but the head; with "
            "head=None there is no head to tell apart."
        )
    for name in ("input_mean", "input_std"):
        value = getattr(net, name)
        if value is not None and (isinstance(value, str) or np.ndim(value) > 1):
            raise ValueError(
                f"{name} must be None or one number per channel, got {value!r}."
            )


def check_channels_stats(values, name, n_channels):
    """Validate ``input_mean`` / ``input_std``: one finite number per channel."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != n_channels:
        raise ValueError(
            f"{name} has {arr.size} value(s), but the images have {n_channels} "
            f"channel(s); pass one per channel (for grey images into an RGB network, "
            f"one value)."
        )
    if not np.all(np.isfinite(arr)) or (name == "input_std" and np.any(arr == 0)):
        raise ValueError(
            f"{name} must hold finite numbers"
            f"{' other than 0' if name == 'input_std' else ''}, got {arr.tolist()}."
        )
    return arr
