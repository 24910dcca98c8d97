"""nnU-Net's planned U-Net, run for inference with fewer tensors alive at once and on inputs of any size.

Memory: the network's own forward keeps, while the last (full-resolution) decoder stage runs, the
encoder's skip tensor, the concatenated input of the stage and the outputs of the convolutions, norms
and activations inside it; and on a CPU oneDNN copies a convolution's whole input and output into its
blocked layout. Here the same modules run one after another from a flat list, each tensor dropped as
soon as the next exists, the concatenation is built in place, and on a CPU a large decoder stage's
first convolution (the largest: it reads the upsampled features and the skip together) runs in slabs
along the first spatial axis, each slab's input joined from the two and its output written into
place. Slab by slab the convolution computes the same sums: outputs identical, or within float32
rounding where oneDNN picks other kernels for thin slabs (6e-6 on logits up to 6 in the tests). One
pass over a whole padded BraTS brain (144x192x160) peaked at 3.40 GiB against nnU-Net's forward's
4.60 GiB, in 18.0 s against 16.8 s (docs/benchmarks.md).

Size: nnU-Net pads every input to a multiple of the network's total stride (32 voxels along most axes)
because its decoder concatenates each upsampled tensor with a skip of exactly twice the size. Here the
upsampled tensor is cropped to its skip instead (each strided convolution covers an odd edge with its
zero padding, as at any border), so a whole brain runs without the up to 31 voxels of padding per axis:
:mod:`brats_plugin.inference.whole_brain` uses this. On a stride multiple the output is the network's own.

Used for nnU-Net's ``PlainConvUNet`` (what nnU-Net plans by default) without deep supervision; any
other network runs its own forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU, StackedConvBlocks
from torch import nn

#: On a CPU, a decoder stage whose joined input would exceed this many bytes runs its first convolution in
#: slabs of about this size (the sample case's whole brain joins 0.65 GiB at full resolution: 50-plane slabs).
SLAB_BYTES = 256 * 2**20


class LeanUNet(nn.Module):
    """Wraps a :class:`PlainConvUNet` for inference; weights load into the wrapped network."""

    def __init__(self, network: PlainConvUNet):
        super().__init__()
        self.network = network

    @staticmethod
    def supports(network: nn.Module) -> bool:
        """Whether :class:`LeanUNet` reproduces this network's forward."""
        return type(network) is PlainConvUNet and not network.decoder.deep_supervision

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.network.encoder.stages:
            for layer in _layers(stage):
                x = layer(x)
            skips.append(x)
        del x
        decoder = self.network.decoder
        lower = skips.pop()
        for stage, upsample in zip(decoder.stages, decoder.transpconvs):
            first, *rest = _layers(stage)
            inputs = [lower, skips.pop()]
            del lower
            lower = _join_and_convolve(first, upsample, inputs)
            for layer in rest:
                lower = layer(lower)
        return decoder.seg_layers[-1](lower)


def _join_and_convolve(conv: nn.Module, upsample: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    """``conv(torch.cat((upsample(lower), skip), 1))`` for ``inputs = [lower, skip]``, the upsampled tensor
    cropped to the skip's size. Takes the tensors out of ``inputs`` so that each is freed once used; on a
    CPU in slabs along the first spatial axis when the joined input is large (module docstring)."""
    lower, skip = inputs
    inputs.clear()
    crop = (..., *(slice(0, size) for size in skip.shape[2:]))
    channels = upsample.out_channels + skip.shape[1]
    plane_bytes = channels * skip[0, 0, 0].numel() * skip.element_size()
    planes = max(1, SLAB_BYTES // plane_bytes)
    length = skip.shape[2]
    if skip.device.type != "cpu" or not _slabbable(conv) or planes >= length:
        joined = skip.new_empty((skip.shape[0], channels, *skip.shape[2:]))  # never three copies at once
        joined[:, upsample.out_channels:] = skip
        del skip
        joined[:, :upsample.out_channels] = upsample(lower)[crop]
        del lower
        return conv(joined)
    upsampled = upsample(lower)[crop]
    del lower
    halo = conv.kernel_size[0] // 2
    convolve = F.conv3d if skip.dim() == 5 else F.conv2d
    padding = (0, *conv.padding[1:])  # the first axis is padded by hand, slab by slab
    out = None
    for start in range(0, length, planes):
        stop = min(start + planes, length)
        low, high = max(start - halo, 0), min(stop + halo, length)
        joined = torch.cat((upsampled[:, :, low:high], skip[:, :, low:high]), 1)
        if low > start - halo or high < stop + halo:  # the volume's edge: zeros, as the whole convolution
            zeros = [0, 0] * (skip.dim() - 3)
            joined = F.pad(joined, (*zeros, low - (start - halo), stop + halo - high))
        slab = convolve(joined, conv.weight, conv.bias, 1, padding, conv.dilation, conv.groups)
        if out is None:
            out = slab.new_empty((slab.shape[0], slab.shape[1], length, *slab.shape[3:]))
        out[:, :, start:stop] = slab
    return out


def _slabbable(conv: nn.Module) -> bool:
    """Whether ``conv`` computes each output plane from its own neighbourhood of planes (stride 1, zero
    padding of half an odd kernel), so that slabs with that halo give the same planes."""
    return (isinstance(conv, (nn.Conv2d, nn.Conv3d)) and set(conv.stride) == {1} and conv.dilation[0] == 1
            and conv.padding_mode == "zeros" and conv.kernel_size[0] % 2 == 1
            and conv.padding[0] == conv.kernel_size[0] // 2)


def _layers(module: nn.Module) -> list[nn.Module]:
    """The modules a block applies one after another, flattened, so no caller frame keeps an input alive."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _layers(child)]
    if isinstance(module, StackedConvBlocks):
        return _layers(module.convs)
    if isinstance(module, ConvDropoutNormReLU):
        return _layers(module.all_modules)
    return [module]
