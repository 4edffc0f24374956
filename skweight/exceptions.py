"""Warnings and errors raised by skweight."""

__all__ = ["PredictionCollapseWarning", "ProcessLostError"]


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


class ProcessLostError(RuntimeError):
    """A data-parallel ``fit`` lost one of its processes.

    Raised under ``torchrun`` in the processes that survive, instead of
    waiting for ever in a collective, within the collective timeout
    (``distributed={"timeout": seconds}``) and a few seconds more.

    Parameters
    ----------
    message : str
        What happened, naming the ranks that were lost.
    lost : tuple of int, default=()
        The ranks of the processes that stopped or did not take part in the
        collective in time (empty when they cannot be told).

    Attributes
    ----------
    lost : tuple of int
        As given.

    Examples
    --------
    >>> from skweight.exceptions import ProcessLostError
    >>> error = ProcessLostError("rank 2 stopped", lost=[2])
    >>> isinstance(error, RuntimeError), error.lost
    (True, (2,))
    """

    def __init__(self, message, lost=()):
        super().__init__(message)
        self.lost = tuple(lost)
