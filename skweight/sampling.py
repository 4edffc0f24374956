"""Samplers for what imbalanced-learn does not cover: several labels per sample.

imbalanced-learn's samplers take one label per sample. An image with
several findings (a multilabel-indicator ``y`` of shape ``(N, C)``) needs a
sampler that looks at every label at once:
:class:`MultiLabelRandomOverSampler` clones samples that carry rare labels
(ML-ROS, Charte et al., 2015). Pass it as ``CNNClassifier(sampler=...)``: it
then runs on the training split only, is drawn afresh every epoch, and the
sample weights follow the rows it serves.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ._validation import is_zero_one

__all__ = ["MultiLabelRandomOverSampler"]


class MultiLabelRandomOverSampler(BaseEstimator):
    """Random over-sampling of the samples that carry rare labels (ML-ROS).

    The imbalance ratio of label ``c`` is ``IRLbl(c) = max_k n_k / n_c``,
    with ``n_c`` the number of samples that carry it; labels whose ratio
    exceeds the mean ratio are the minority labels. ML-ROS (Charte, Rivera,
    del Jesus and Herrera, 2015) clones randomly chosen samples of each
    minority label in turn, a label leaving the round as soon as its ratio
    falls to the mean, until ``percentage`` per cent of the samples have
    been added (or no minority label is left). A clone carries every label
    of its sample, frequent ones included: multi-label data cannot be
    balanced exactly, only made less skewed.

    Parameters
    ----------
    percentage : float, default=25
        The number of clones, as a percentage of the number of samples, in
        (0, 100]. Charte et al. try 10 to 40.
    random_state : None, int or RandomState, default=None
        Seeds the draws. Inside ``CNNClassifier(sampler=...)`` it is replaced
        by seeds drawn from the estimator's ``random_state``, a fresh one per
        epoch.

    Attributes
    ----------
    sample_indices_ : ndarray of shape (n_resampled,)
        The rows of ``X`` that make up the resampled data: every row once,
        then the clones.
    imbalance_ratio_ : ndarray of shape (n_labels,)
        ``IRLbl`` of each label before resampling (``inf`` for a label that
        no sample carries).

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.sampling import MultiLabelRandomOverSampler
    >>> Y = np.array([[1, 0]] * 8 + [[1, 1]] * 2)
    >>> X = np.arange(10).reshape(-1, 1)
    >>> X_res, Y_res = MultiLabelRandomOverSampler(percentage=40,
    ...                                            random_state=0).fit_resample(X, Y)
    >>> len(Y_res), Y_res.sum(axis=0).tolist()
    (12, [12, 4])
    """

    def __init__(self, percentage=25, random_state=None):
        self.percentage = percentage
        self.random_state = random_state

    def fit_resample(self, X, y):
        """Resample ``X`` and the label indicator ``y`` together.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            The samples (only their rows are taken).
        y : array-like of shape (n_samples, n_labels)
            A 0/1 multilabel indicator.

        Returns
        -------
        X_resampled : ndarray of shape (n_resampled, ...)
            ``X`` with the clones appended.
        y_resampled : ndarray of shape (n_resampled, n_labels)
            Their labels.
        """
        p = self.percentage
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not (0 < p <= 100):
            raise ValueError(
                f"percentage must be a number in (0, 100], got {p!r}."
            )
        X = np.asarray(X)
        Y = np.asarray(y)
        if Y.ndim != 2 or not is_zero_one(Y):
            raise ValueError(
                f"y must be a multilabel indicator of 0/1 of shape (n_samples, "
                f"n_labels), got an array of shape {Y.shape}."
            )
        if len(X) != len(Y):
            raise ValueError(
                f"X has {len(X)} samples, but y has {len(Y)}."
            )
        rng = check_random_state(self.random_state)
        counts = Y.sum(axis=0).astype(np.float64)
        with np.errstate(divide="ignore"):
            ratio = counts.max() / counts
        self.imbalance_ratio_ = ratio
        mean_ratio = ratio[np.isfinite(ratio)].mean()
        to_add = int(round(len(Y) * p / 100))
        bags = [c for c in np.flatnonzero(ratio > mean_ratio) if counts[c] > 0]
        members = {c: np.flatnonzero(Y[:, c]) for c in bags}
        clones = []
        while len(clones) < to_add and bags:
            for c in list(bags):
                if len(clones) >= to_add:
                    break
                i = int(rng.choice(members[c]))
                clones.append(i)
                counts += Y[i]
                # The ratio of c falls as it gains clones (a clone may also
                # raise the most frequent label's count, and so every ratio).
                if counts.max() / counts[c] <= mean_ratio:
                    bags.remove(c)
        self.sample_indices_ = np.concatenate(
            [np.arange(len(Y)), np.asarray(clones, dtype=np.int64)]
        ).astype(np.int64)
        return X[self.sample_indices_], Y[self.sample_indices_]
