"""The arithmetic precision of the network pass: nnU-Net's, float32, or bfloat16.

nnU-Net evaluates the network under float16 autocast on CUDA and in float32 elsewhere (autocast on a
CPU without bfloat16 instructions is slow). bfloat16 keeps float32's range with an 8-bit mantissa;
on a CPU with AVX-512 BF16 or AMX, oneDNN runs the convolutions about twice as fast and the pass's
activations take half the memory (docs/benchmarks.md, "Prediction speed"). The network's outputs are
returned in float32 either way, so nnU-Net's tile blending and mirroring sums are unchanged.

bfloat16 is a choice, not part of ``--fast``: against float32 its label maps kept Dice 0.997-1.000 per
region with a trained model, short of the 0.999 we ask of a speed-up that claims the same result.
"""
from __future__ import annotations

import torch
from torch import nn

from brats_plugin.errors import BratsInputError
from brats_plugin.inference.settings import PRECISIONS


def bfloat16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (a CPU with AVX-512 BF16 or AMX; a CUDA GPU that
    has it); elsewhere torch emulates it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` checked against the device: "bfloat16" on a device without it is refused."""
    if precision not in PRECISIONS:
        raise BratsInputError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16" and not bfloat16_supported(device):
        raise BratsInputError(f"--precision bfloat16: the {device.type} device here has no bfloat16 arithmetic "
                              "(it would run emulated, slower than float32)")
    return precision


def in_precision(network: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """``network`` set to run in a resolved ``precision`` on ``device``: itself when that is what nnU-Net
    does anyway, else wrapped in :class:`AutocastNetwork`."""
    if precision == "auto" or (precision == "float32" and device.type != "cuda"):
        return network
    return AutocastNetwork(network, torch.bfloat16 if precision == "bfloat16" else None)


class AutocastNetwork(nn.Module):
    """Runs the wrapped network under autocast to ``dtype`` (None: autocast off, float32) and returns
    float32; weights load into the wrapped network (nnU-Net loads each fold's in turn)."""

    def __init__(self, network: nn.Module, dtype: torch.dtype | None):
        super().__init__()
        self.network = network
        self.dtype = dtype

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.network(x).float()
