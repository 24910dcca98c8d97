"""One network pass over the whole cropped brain instead of nnU-Net's overlapping sliding-window tiles.

nnU-Net predicts with tiles of the planned patch size at half-patch steps. A BraTS brain is usually a
little larger than the patch along every axis, so it takes 2 x 2 x 2 = 8 overlapping tiles: about
twice the network voxels of one pass over the brain (and 8 separate instance-norm contexts). The U-Net
is fully convolutional, so here the patch is set, per case, to the cropped volume itself, and nnU-Net's
own sliding-window code runs that single tile. :class:`~brats_plugin.inference.lean_unet.LeanUNet`
takes any input size; another network gets the volume rounded up to a multiple of its total stride
per axis (zero padding: up to 61 % more voxels for the sample case, 144x192x160 for 131x162x129).

Memory grows with the tile. With ``max_tile_voxels`` the whole brain is taken only when it fits;
otherwise the tile is the one covering the brain with the fewest network voxels among tiles within
the budget that are no smaller than the planned patch along any axis, overlapping by half as in
nnU-Net.

Measured (benchmarks/predict.py): on held-out synthetic cases the single pass kept or raised Dice
against nnU-Net's tiles, while the fewest tiles *smaller* than planned lost much of it at their seams
(hence the lower bound). The unpadded tile's labels differ from the padded one's (Dice 0.93-0.997
between the two with the demo model: the instance norms see less zero background), within 0.003 of
its Dice against the references on synthetic heads (docs/benchmarks.md).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from brats_plugin.inference.progress import CountingPredictor


class WholeBrainPredictor(CountingPredictor):
    """nnU-Net's predictor whose tile is the whole (cropped) input, or as near as fits. One tile is not
    blended, so it is not weighted either: nnU-Net's Gaussian weights fall to 1e-6 at a tile's edges and
    its buffers are float16, which would round the logits at the brain's bounding box."""

    def __init__(self, *args, max_tile_voxels: int | None = None, any_size: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_tile_voxels = max_tile_voxels
        self.any_size = any_size

    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        planned = self.configuration_manager
        divisors = total_strides(planned)  # as many axes as the network convolves (2 for a 2d model)
        tile = choose_tile(input_image.shape[-len(divisors):], divisors, planned.patch_size, self.max_tile_voxels,
                           self.tile_step_size, self.any_size)
        weighted = self.use_gaussian
        self.configuration_manager = ConfigurationManager({**planned.configuration, "patch_size": tile})
        self.use_gaussian = weighted and any(t < n for t, n in zip(tile, input_image.shape[-len(divisors):]))
        try:
            return super().predict_sliding_window_return_logits(input_image)
        finally:
            self.configuration_manager = planned
            self.use_gaussian = weighted


def choose_tile(shape: tuple[int, ...], divisors: list[int], planned: list[int], max_voxels: int | None,
                step: float = 0.5, any_size: bool = False) -> list[int]:
    """The tile for a volume of ``shape`` (see the module docstring); ``step`` as nnU-Net's tile step.
    ``any_size``: the network takes any input size, so the whole volume is taken unpadded when it fits."""
    whole = [math.ceil(size / d) * d for size, d in zip(shape, divisors)]
    if any_size and (max_voxels is None or math.prod(shape) <= max_voxels):
        return list(shape)
    if max_voxels is None or math.prod(whole) <= max_voxels:
        return whole
    smallest = [min(w, max(d, math.ceil(p / d) * d)) for w, p, d in zip(whole, planned, divisors)]
    candidates = [range(s, w + 1, d) for s, w, d in zip(smallest, whole, divisors)]
    if any_size:  # no tile larger than the volume along any axis, and the volume's own size among them
        smallest = [min(s, n) for s, n in zip(smallest, shape)]
        candidates = [sorted({min(t, n) for t in sizes}) for sizes, n in zip(candidates, shape)]
    best: tuple[int, int, list[int]] | None = None
    for tile in itertools.product(*candidates):
        voxels = math.prod(tile)
        if voxels > max_voxels:
            continue
        tiles = math.prod(math.ceil((n - t) / (t * step)) + 1 if n > t else 1 for n, t in zip(shape, tile))
        if best is None or (tiles * voxels, tiles) < best[:2]:
            best = (tiles * voxels, tiles, list(tile))
    return best[2] if best else smallest


def total_strides(configuration: ConfigurationManager) -> list[int]:
    """Per axis, the product of the network's down-sampling strides (input sizes must divide by it)."""
    strides = configuration.network_arch_init_kwargs["strides"]
    return [int(v) for v in np.prod(np.array(strides, dtype=np.int64), axis=0)]
