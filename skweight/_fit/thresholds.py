"""Decision thresholds of multi-label predictions: checked, or tuned per label.

``CNNClassifier(threshold=...)`` turns each label's probability into 0/1:
one threshold for every label, one per label, or ``"auto"``: tuned per
label on the internal validation split by :func:`tune_thresholds`, for the
metric ``threshold_metric``. A rare label's best threshold is usually far
below 0.5: its probabilities are calibrated to its prevalence.
"""

import numbers

import numpy as np

__all__ = ["THRESHOLD_METRICS", "check_threshold", "tune_thresholds"]

#: The metrics ``threshold="auto"`` can tune each label's threshold for.
THRESHOLD_METRICS = ("balanced_accuracy", "f1")


def check_threshold(threshold, n_labels=None):
    """Validate ``threshold``: a number in [0, 1], one per label, or "auto".

    Parameters
    ----------
    threshold : float, array-like or "auto"
    n_labels : None or int
        The number of labels an array must have (None: not checked yet).

    Returns
    -------
    threshold : "auto" or ndarray of shape (n_labels,) (or the float, when
        ``n_labels`` is None)
    """
    if isinstance(threshold, str):
        if threshold == "auto":
            return threshold
        raise ValueError(
            f"threshold must be a number in [0, 1], one per label, or 'auto', got "
            f"{threshold!r}."
        )
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool):
        values = np.array([float(threshold)])
    else:
        try:
            values = np.array(threshold, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"threshold must be a number in [0, 1], one per label, or 'auto', "
                f"got {threshold!r}."
            ) from exc
        if values.ndim != 1:
            raise ValueError(
                f"threshold must be a number or a 1-D array with one per label, got "
                f"shape {values.shape}."
            )
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(
            f"threshold must lie in [0, 1], got {np.asarray(threshold).tolist()}."
        )
    if n_labels is None:
        return values
    if values.size == 1:
        return np.full(n_labels, values[0])
    if values.size != n_labels:
        raise ValueError(
            f"threshold has {values.size} entries, but y has {n_labels} labels; pass "
            f"one number, or one per label."
        )
    return values


def tune_thresholds(Y, proba, weight=None, metric="f1"):
    """Choose each label's threshold that maximises ``metric`` on ``(Y, proba)``.

    Every cut between two distinct probabilities of a label is tried (at
    their midpoint); ties keep the cut closest to 0.5. A label with no
    positive or no negative (of positive weight) keeps 0.5.

    Parameters
    ----------
    Y : ndarray of shape (N, C)
        The 0/1 labels.
    proba : ndarray of shape (N, C)
        Predicted probabilities.
    weight : None or ndarray of shape (N,) or (N, C)
        Weights of the samples (or of each sample's label).
    metric : {"f1", "balanced_accuracy"}

    Returns
    -------
    threshold : ndarray of shape (C,)
    """
    Y = np.asarray(Y) > 0.5
    proba = np.asarray(proba, dtype=np.float64)
    n, n_labels = Y.shape
    w = np.ones((n, n_labels)) if weight is None else np.broadcast_to(
        np.asarray(weight, dtype=np.float64).reshape(n, -1), (n, n_labels)
    )
    thresholds = np.full(n_labels, 0.5)
    for c in range(n_labels):
        thresholds[c] = _best_cut(Y[:, c], proba[:, c], w[:, c], metric)
    return thresholds


def _best_cut(y, p, w, metric):
    pos, neg = np.sum(w * y), np.sum(w * ~y)
    if pos <= 0 or neg <= 0:
        return 0.5
    order = np.argsort(-p, kind="stable")
    p, y, w = p[order], y[order], w[order]
    # Predicting positive down to each distinct probability: cumulative
    # true and false positives at the last row of each run of equal values.
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    tp = np.cumsum(w * y)[last]
    fp = np.cumsum(w * ~y)[last]
    if metric == "f1":
        score = 2 * tp / (2 * tp + fp + (pos - tp))
    else:
        score = (tp / pos + (neg - fp) / neg) / 2
    # Each cut lies halfway to the next lower probability (0 below the last).
    lower = np.r_[p[last[1:]], 0.0]
    cuts = (p[last] + lower) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])
