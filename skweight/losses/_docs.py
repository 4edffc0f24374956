"""Parameter docs shared by the element-wise classification losses."""

from .._docstrings import fill_doc

_ENTRIES = {
    "class_weight": """\
    class_weight : array-like of shape (K,), default=None
        Non-negative weight of each class. It acts exactly as the per-element
        sample weight ``class_weight[target]``; both multiply when given.""",
    "ignore_index": """\
    ignore_index : int, default=None
        Target value of elements that are left out of the loss and of the
        count used by ``reduction="mean"``. It may lie outside [0, K).""",
    "reduction": """\
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted per-element losses with the target's shape
        (0 on ignored elements); "sum" their sum; "mean" their sum divided by
        the number of non-ignored elements (not by the sum of weights).""",
    "binary_reduction": """\
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the weighted per-element losses with the input's shape;
        "sum" their sum; "mean" their sum divided by the number of elements
        (samples times labels, times pixels; not by the sum of weights).""",
}

#: Decorator filling ``%(class_weight)s``, ``%(ignore_index)s``,
#: ``%(reduction)s`` and ``%(binary_reduction)s`` (0/1 targets, nothing
#: ignored) in a loss's docstring.
fill_loss_doc = fill_doc(_ENTRIES)
