"""Which torch device to use when the user does not say: device-agnostic code asks here."""
import torch

from brats_plugin.errors import BratsInputError


def default_device() -> torch.device:
    """``cuda`` when there is a GPU, else ``mps`` on Apple silicon, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


#: What ``--device`` accepts.
DEVICE_CHOICES = ("auto", "cuda", "cpu", "mps")


def resolve_device(name: str) -> torch.device:
    """The device for a ``--device`` choice; asking for one this machine lacks is a user error."""
    if name == "auto":
        return default_device()
    if name not in DEVICE_CHOICES:
        raise BratsInputError(f"--device {name}: choose one of {', '.join(DEVICE_CHOICES)}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available[name]:
        raise BratsInputError(f"--device {name}: not available on this machine (use --device auto)")
    return torch.device(name)
