"""Reductions shared by the losses."""


def reduce_elementwise(loss, weight, n_valid, reduction):
    """Weight per-element losses and reduce them.

    "mean" divides by the number of non-ignored elements, not by the sum of
    weights: the estimator normalises weights once over the training set, so
    the plain mean of a mini-batch is an unbiased estimate of the weighted
    training loss. An all-ignored batch gives 0 rather than NaN.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "mean" and isinstance(n_valid, int) and n_valid == loss.numel():
        return loss.mean()  # one kernel where nothing is ignored
    total = loss.sum()
    if reduction == "sum":
        return total
    if isinstance(n_valid, int):
        return total / max(n_valid, 1)
    return total / n_valid.clamp_min(1)


def reduce_terms(terms, reduction):
    """Reduce per-class (and per-image) terms such as ``1 - Dice``."""
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    return terms.mean()
