"""What can go wrong, in two families, and the one warning class.

- :class:`BratsInputError`: a mistake in what a user gave us (files, folders, options, a model that
  does not fit). The message names the file or option and says what is wrong, in one line; the
  ``brats`` command prints it and exits with status 2.
- :class:`BratsStepError`: a step we ran on the user's behalf failed for a reason outside our code
  (an nnU-Net command, a PACS). The message says where to look; the ``brats`` command prints it as
  one line and exits with status 1.

Anything else is a bug (or, e.g., a GPU out of memory): the ``brats`` command lets its traceback show.
Every warning we give is a :class:`BratsWarning`.
"""


class BratsError(Exception):
    """Base of the errors the ``brats`` command prints as one line."""


class BratsInputError(BratsError):
    """Bad input: the message names the file or option and says what is wrong, in one line (exit status 2)."""


class IncompatibleModelError(BratsInputError):
    """A trained model this package cannot run: a cascade stage, an unknown trainer, weights that do not fit."""


class BratsStepError(BratsError):
    """A step run on the user's behalf failed; the message says which and where to look (exit status 1)."""


class NnunetCommandError(BratsStepError):
    """An ``nnUNetv2_*`` command exited with an error; its log is named in the message."""


class PacsError(BratsStepError):
    """The PACS could not be reached, refused the association, or refused instances."""


class BratsWarning(UserWarning):
    """Something odd but understood in the input, or an assumption made for the user."""


class AssumedConventionWarning(BratsWarning):
    """A model's label convention was not recorded, so nnU-Net's BraTS convention was assumed."""
