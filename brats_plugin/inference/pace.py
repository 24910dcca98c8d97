"""The time left of a case's network work, from its pace so far (no heavy imports: the progress bar of
``brats predict`` and the app's job page both use it). The clock starts with the case, so its reading and
nnU-Net's preprocessing count as part of the first pass: the first estimates run a little high."""
from __future__ import annotations

import time
from collections.abc import Callable


def with_time_left(report: Callable[[int, int, float], None]) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` for one case (see :mod:`brats_plugin.inference.progress`) that calls
    ``report(done, total, seconds_left)``; the clock starts when this is called."""
    began = time.monotonic()

    def progress(done: int, total: int) -> None:
        report(done, total, (time.monotonic() - began) * (total - done) / done)
    return progress
