"""Warnings and errors raised by skweight."""

__all__ = ["PredictionCollapseWarning"]


class PredictionCollapseWarning(UserWarning):
    """A regressor's predictions barely vary: it has collapsed to the mean.

    Raised after ``fit`` when the spread of the predictions on the training
    data is tiny compared with the spread of the targets.
    """
