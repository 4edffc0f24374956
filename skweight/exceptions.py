"""Warnings and errors raised by skweight."""

__all__ = ["PredictionCollapseWarning"]


class PredictionCollapseWarning(UserWarning):
    """A regressor's predictions barely vary: it has collapsed to the mean.

    Raised after ``fit`` when the spread of the predictions on the training
    data is tiny compared with the spread of the targets.

    Examples
    --------
    A warnings filter turns it into an error:

    >>> import warnings
    >>> from skweight.exceptions import PredictionCollapseWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", PredictionCollapseWarning)
    ...     try:
    ...         warnings.warn("the predictions barely vary", PredictionCollapseWarning)
    ...     except PredictionCollapseWarning as error:
    ...         print(f"error: {error}")
    error: the predictions barely vary
    """
