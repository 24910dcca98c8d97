"""Which torch device to use when the user does not say: device-agnostic code asks here."""
import torch


def default_device() -> torch.device:
    """``cuda`` when there is a GPU, else ``mps`` on Apple silicon, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
