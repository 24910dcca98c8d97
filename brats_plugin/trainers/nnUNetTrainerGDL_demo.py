"""CPU-friendly variants for the demo and the tests: a slimmer planned 3D U-Net, short schedules, AdamW.

The network is nnU-Net's planned one (same stages, kernels, strides, deep supervision) with fewer
feature maps per stage: on 2 CPU cores the full-width network costs several seconds per iteration,
the slim one a fraction of that, which is what lets the demo model learn the synthetic task in
minutes. Not for real data: train real BraTS with ``nnUNetTrainerGDL`` on a GPU.

The optimiser is AdamW (lr 3e-3, nnU-Net's polynomial decay) instead of nnU-Net's SGD (lr 1e-2,
momentum 0.99), which is tuned for 250 000 iterations: in 150 it left a region's output dead in some
runs (seen: ET at Dice 0 after 15 epochs), because a sigmoid output far from the tumour gets tiny
gradients and SGD's step is proportional to them. Adam's steps are not; measured on the same 6
synthetic cases (72x72x56, 15 x 10 iterations, 2 CPU cores, 2026-12-03), held-out Dice WT/TC/ET
0.905/0.859/0.826 with SGD, 0.944/0.924/0.886 with AdamW. ``benchmarks/demo.py`` runs the demo over
several seeds.

The output layers learn :data:`OUTPUT_LEARNING_RATE_FACTOR` times faster than the rest. AdamW moves
each weight by about the learning rate per step, whatever its gradient, and in short runs a region's
output layer could stay behind while the features it needed were there: in a model whose whole-tumour
output never fired in 80 iterations (logits -4 to -5 everywhere, TC and ET at 0.98), a logistic
regression on the last 8 feature maps found the whole tumour at Dice 0.93; the pooled generalised Dice,
the other regions learnt, pushed that output down about half as hard as the BCE pushed it up. In runs cut
after 8 of the 25 epochs (2026-12-04, two data seeds), a region below Dice 0.3 after the second epoch in
7 of 10 runs and below 0.6 after the eighth in 3 of 10; with the faster output layers, 0 of 12 and 0
of 12. ``benchmarks/demo.py`` over seeds 0-9 the same day: 10 of 10 runs at held-out Dice >= 0.895 on
every region.

The schedule is 25 epochs of 10 iterations: with 15 (and one learning rate), a CI run of ``make demo``'s
job on 2026-12-03 ended with held-out WT 0.37, TC 0.93, ET 0.00; with 25, 1 run of 6 kept WT at 0.36
(docs/benchmarks.md).
"""
from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from brats_plugin.devices import default_device
from brats_plugin.trainers.nnUNetTrainerGDL import nnUNetTrainerGDL, output_layers
from brats_plugin.trainers.nnUNetTrainerGDLCE import nnUNetTrainerGDLCE

#: Feature maps per stage are the plan's divided by this (32..320 becomes 8..80).
SLIM_FACTOR = 4
#: AdamW's initial learning rate in the short schedules (decayed as nnU-Net's, polynomially).
ADAM_LEARNING_RATE = 3e-3
#: The output layers learn this many times faster than the rest of the network (see ``_SlimDemo``).
OUTPUT_LEARNING_RATE_FACTOR = 10


def build_slim_network(configuration_manager: ConfigurationManager, num_input_channels: int,
                       num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
    """nnU-Net's planned network with :data:`SLIM_FACTOR` times fewer features per stage."""
    arguments = dict(configuration_manager.network_arch_init_kwargs)
    arguments["features_per_stage"] = [max(4, f // SLIM_FACTOR) for f in arguments["features_per_stage"]]
    return get_network_from_plans(configuration_manager.network_arch_class_name, arguments,
                                  configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
                                  num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision)


class ScaledPolyLRScheduler(PolyLRScheduler):
    """nnU-Net's polynomial decay, times each parameter group's ``lr_scale`` (1 where it has none)."""

    def step(self, current_step=None):
        super().step(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class _SlimDemo:
    """Mixin: the slim network (in training and prediction), a short schedule and AdamW (output layers faster).

    ``schedule`` is (epochs, iterations per epoch, validation iterations per epoch).
    """

    schedule = (25, 10, 2)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = default_device()):  # noqa: B008 (as nnUNetTrainerGDL's)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = self.schedule
        self.initial_lr = ADAM_LEARNING_RATE

    def configure_optimizers(self):
        """AdamW with the output layers in a group of their own, at :data:`OUTPUT_LEARNING_RATE_FACTOR`
        times the learning rate, both decayed polynomially as nnU-Net's."""
        heads = output_layers(self.network)
        head_ids = {id(p) for p in heads.parameters()} if heads is not None else set()
        groups = [{"params": [p for p in self.network.parameters() if id(p) not in head_ids]}]
        if head_ids:
            groups.append({"params": list(heads.parameters()), "lr_scale": OUTPUT_LEARNING_RATE_FACTOR})
        optimizer = torch.optim.AdamW(groups, lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, ScaledPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        return build_slim_network(configuration_manager, num_input_channels, num_output_channels,
                                  enable_deep_supervision)


class nnUNetTrainerGDL_demo(_SlimDemo, nnUNetTrainerGDL):
    """The demo model: slim network, 25 epochs of 10 iterations (about 4 minutes on 2 CPU cores).

    Class weights 1/V instead of 1/V^2: on nested regions 1/V^2 makes the whole tumour, the largest
    region, count for little, and it is learnt last (measured on the synthetic demo data after 80
    iterations: whole-tumour Dice 0.41 with 1/V^2, 0.63 with 1/V; tumour core and enhancing tumour
    above 0.9 with both).
    """

    weight_type = "simple"


class nnUNetTrainerGDLCE_demo(_SlimDemo, nnUNetTrainerGDLCE):
    """GDL (1/V weights, as the demo) + cross-entropy on the slim demo network and schedule (benchmark)."""

    weight_type = "simple"


class nnUNetTrainerDCCE_demo(_SlimDemo, nnUNetTrainer):
    """Stock nnU-Net loss (Dice + CE) on the slim demo network, schedule and optimiser: the benchmark's baseline."""


class nnUNetTrainerGDL_demo_2epochs(_SlimDemo, nnUNetTrainerGDL):
    """For tests: slim network, 2 epochs of 2 iterations; proves the whole training path, learns nothing."""

    schedule = (2, 2, 1)


class nnUNetTrainerGDLCE_demo_2epochs(_SlimDemo, nnUNetTrainerGDLCE):
    """For tests: as ``nnUNetTrainerGDL_demo_2epochs`` with the GDL + cross-entropy loss."""

    schedule = (2, 2, 1)


class nnUNetTrainerDCCE_demo_6epochs(_SlimDemo, nnUNetTrainer):
    """For tests: stock loss, slim network, 6 epochs of 10 iterations; learns a brain-extraction model on
    skull-on phantoms at 2 mm (validation pseudo Dice 0.97 after 6 epochs with SGD, measured 2026-12-02;
    with AdamW the brain-extraction test's Dice > 0.9 held on 2026-12-03)."""

    schedule = (6, 10, 2)
