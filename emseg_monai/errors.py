"""The exceptions ``emseg`` reports as one line: bad input, and training stopped by a signal."""


class InputError(ValueError):
    """Bad input from the user: a file, a value or an option that cannot be used.

    The message names the problem and the offending value, so the command line can show it on one
    line without a traceback.
    """


class TrainingInterrupted(RuntimeError):
    """Training stopped by a signal (SIGINT, SIGTERM); the message says how to continue.

    ``signum`` is the signal's number; ``emseg`` exits with ``128 + signum`` like a shell.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class EnvironmentFault(RuntimeError):
    """The machine or cluster failed under a job (lost worker, scheduler gone, disk full).

    The message names the fault; ``emseg`` shows it on one line (``--debug``: the traceback).
    Work already finished is kept (block-wise runs resume from their markers).
    """


ONE_LINE_ERRORS = (InputError, EnvironmentFault, FileNotFoundError, PermissionError, IsADirectoryError)


def find_cause(exc: BaseException | None, kind: type | tuple[type, ...]) -> BaseException | None:
    """``exc`` or the first exception of type ``kind`` in its cause/context chain, or None.

    MONAI wraps what a config expression raises in ``RuntimeError: Failed to evaluate ...`` (and
    transforms in ``applying transform ...``); the error that names the problem is in the chain.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
