"""The one exception type for mistakes in what a user gave us (files, folders, options)."""


class BratsInputError(Exception):
    """Bad input: the message names the file or option and says what is wrong, in one line.

    The ``brats`` command prints it without a traceback and exits with status 2.
    """
