"""How errors reach a person running a bundle command: one line, not MONAI's nested tracebacks."""

from __future__ import annotations

import sys

from emseg_monai.errors import ONE_LINE_ERRORS, TrainingInterrupted, find_cause
from emseg_monai.options import as_bool


def one_line_errors(debug: object = False) -> None:
    """In a ``python -m monai.bundle`` command, report emseg's errors as one line on stderr.

    Bundle configs call this in ``initialize``. For an uncaught exception whose chain holds an
    input error, a fault of the machine or a stopped training, the command prints
    ``error: <message>`` instead of MONAI's nested tracebacks (the exit status stays 1); other
    exceptions keep their traceback. ``debug`` true (``--debug true``) keeps every traceback. Only
    the bundle command line is changed: Python programs that load the bundle (``create_workflow``,
    apps) get the exceptions as they are.
    """
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
