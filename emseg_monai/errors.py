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
