"""Which torch device to use when the user does not say: device-agnostic code asks here.

PyTorch is imported inside the functions, so that ``brats --help`` (which lists :data:`DEVICE_CHOICES`)
does not load it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from brats_plugin.errors import BratsInputError

if TYPE_CHECKING:
    import torch

#: What ``--device`` accepts.
DEVICE_CHOICES = ("auto", "cuda", "cpu", "mps")


def default_device() -> torch.device:
    """``cuda`` when there is a GPU, else ``mps`` on Apple silicon, else ``cpu``."""
    import torch
    for name in ("cuda", "mps"):
        if _available(name):
            return torch.device(name)
    return torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """The device for a ``--device`` choice; asking for one this machine lacks is a user error."""
    import torch
    if name == "auto":
        return default_device()
    if name not in DEVICE_CHOICES:
        raise BratsInputError(f"--device {name}: choose one of {', '.join(DEVICE_CHOICES)}")
    if not _available(name):
        raise BratsInputError(f"--device {name}: not available on this machine (use --device auto)")
    return torch.device(name)


def _available(name: str) -> bool:
    import torch
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True
