"""The one exception type that ``emseg`` reports as a one-line message."""


class InputError(ValueError):
    """Bad input from the user: a file, a value or an option that cannot be used.

    The message names the problem and the offending value, so the command line can show it on one
    line without a traceback.
    """
