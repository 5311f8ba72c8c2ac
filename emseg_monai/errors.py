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


def one_line_errors(debug: object = False) -> None:
    """In a ``python -m monai.bundle`` command, report emseg's errors as one line on stderr.

    Bundle configs call this in ``initialize``. For an uncaught exception whose chain holds an
    input error, a fault of the machine or a stopped training, the command prints
    ``error: <message>`` instead of MONAI's nested tracebacks (the exit status stays 1); other
    exceptions keep their traceback. ``debug`` true (``--debug true``) keeps every traceback. Only
    the bundle command line is changed: Python programs that load the bundle (``create_workflow``,
    apps) get the exceptions as they are.
    """
    import sys

    from emseg_monai.options import as_bool

    if (
        as_bool(debug, "debug")
        or not sys.argv
        or not sys.argv[0].replace("\\", "/").endswith("monai/bundle/__main__.py")
    ):
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        if isinstance(exc, KeyboardInterrupt):
            print("interrupted (Ctrl-C); outputs written so far are complete, none is half-written", file=sys.stderr)
            return
        found = find_cause(exc, ONE_LINE_ERRORS + (TrainingInterrupted,))
        if found is None:
            previous(kind, exc, tb)
        else:
            print(f"error: {found}", file=sys.stderr)

    sys.excepthook = hook
