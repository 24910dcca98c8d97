"""The arithmetic precision of the network pass: nnU-Net's, float32, or bfloat16.

nnU-Net evaluates the network under float16 autocast on CUDA and in float32 elsewhere (autocast on a
CPU without bfloat16 instructions is slow). bfloat16 keeps float32's range with an 8-bit mantissa;
on a CPU with AVX-512 BF16 or AMX, oneDNN ran a trained network's pass 3-4x faster, and a whole
``brats predict --fast`` run took 0.65x the time in 0.72x the memory over two tiles, 0.71-0.76x over
one unpadded tile (docs/benchmarks.md, "Prediction speed"). The wrapped network returns float32 logits;
nnU-Net then blends tiles as it always does (into float16 buffers, on every device). On CUDA,
``float32`` turns nnU-Net's float16 autocast off for the network (cuDNN may still use TF32 where torch
allows it).

bfloat16 is a choice, not part of ``--fast``: against float32 its label maps kept Dice 0.997-1.000 per
region with a trained model, short of the 0.999 we ask of a speed-up that claims the same result.
"""
from __future__ import annotations

import platform

import torch
from torch import nn

from brats_plugin.errors import BratsInputError
from brats_plugin.inference.settings import PRECISIONS


def bfloat16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: an x86 CPU with AVX-512 BF16 or AMX, an ARM CPU
    that oneDNN runs bfloat16 on, a CUDA GPU of compute capability 8 (Ampere) or later. Elsewhere torch
    emulates it, slower than float32 (oneDNN's own check says yes on any AVX-512 CPU, hence ours)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def arithmetic(precision: str, device: torch.device) -> str:
    """What a resolved ``precision`` computes in on ``device`` (for reports): "auto" is nnU-Net's."""
    if precision == "auto":
        return "float16 autocast" if device.type == "cuda" else "float32"
    return precision


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
