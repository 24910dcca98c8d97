"""One network pass over the whole cropped brain instead of nnU-Net's overlapping sliding-window tiles.

nnU-Net predicts with tiles of the planned patch size at half-patch steps. A BraTS brain is usually a
little larger than the patch along every axis, so it takes 2 x 2 x 2 = 8 overlapping tiles: about
twice the network voxels of one pass over the brain padded to the network's strides (and 8 separate
instance-norm contexts). The U-Net is fully convolutional, so here the patch is set, per case, to the
cropped volume rounded up to a multiple of the network's total stride per axis, and nnU-Net's own
sliding-window code runs that single tile.

Measured (benchmarks/predict.py): on held-out synthetic cases the single pass kept or raised Dice
against nnU-Net's tiles, while the fewest *smaller-than-planned* tiles lost much of it at their seams
(so tiles are never made smaller than planned). Memory grows with the tile: see
:mod:`brats_plugin.inference.lean_unet`, which keeps it near the tiled run's.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager


class WholeBrainPredictor(nnUNetPredictor):
    """nnU-Net's predictor whose one tile is the whole (cropped, stride-padded) input."""

    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        planned = self.configuration_manager
        tile = whole_tile(input_image.shape[1:], total_strides(planned))
        self.configuration_manager = ConfigurationManager({**planned.configuration, "patch_size": tile})
        try:
            return super().predict_sliding_window_return_logits(input_image)
        finally:
            self.configuration_manager = planned


def whole_tile(shape: tuple[int, ...], divisors: list[int]) -> list[int]:
    """``shape`` rounded up, per axis, to a multiple of the network's total stride."""
    return [math.ceil(size / d) * d for size, d in zip(shape, divisors)]


def total_strides(configuration: ConfigurationManager) -> list[int]:
    """Per axis, the product of the network's down-sampling strides (input sizes must divide by it)."""
    strides = configuration.network_arch_init_kwargs["strides"]
    return [int(v) for v in np.prod(np.array(strides, dtype=np.int64), axis=0)]
