"""``nnUNetTrainerGDL``: nnU-Net's trainer with the generalised Dice loss (Sudre et al. 2017).

Everything else is nnU-Net's: the planned 3D U-Net, deep supervision (nnU-Net's own weights: this
trainer only swaps the loss inside nnU-Net's wrapper), augmentation, mixed precision and
``torch.compile`` on GPU, the schedule. One addition: the output layers start from each region's (or class's)
share of the training patches (see ``_start_from_prior``), without which a Dice-type loss alone barely
moves at first.
Each validation epoch also logs the Dice of every class or
region and the generalised Dice score, in the training log and in ``validation_metrics.csv`` beside
nnU-Net's ``progress.png``.
"""
from __future__ import annotations

import csv
import os

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch import distributed, nn
from torch.nn.parallel import DistributedDataParallel

from brats_plugin.devices import default_device
from brats_plugin.trainers.generalized_dice import (
    GeneralizedDiceLoss,
    WeightType,
    generalized_dice_score_from_counts,
)

METRICS_FILE = "validation_metrics.csv"
#: Smallest probability of a region or class the untrained network starts from (see ``_start_from_prior``).
FOREGROUND_PRIOR = 0.01
#: Training batches whose voxels give the output prior (drawn once, before the first epoch).
PRIOR_BATCHES = 4


class nnUNetTrainerGDL(nnUNetTrainer):
    """nnU-Net training with the generalised Dice loss alone (as in the original BraTS project)."""

    #: Class weights of the loss: 1/V^2 as in Sudre et al. (variants may choose "simple" or "uniform").
    weight_type: WeightType = "square"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = default_device()):  # noqa: B008 (nnU-Net passes a device; a default fits this machine)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._prior_pending = True  # set once the data loaders exist; a checkpoint's weights cancel it

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._prior_pending = False

    def on_train_start(self):
        super().on_train_start()
        if self._prior_pending:
            self._start_from_prior(self._training_shares())
            self._prior_pending = False

    def _training_shares(self) -> torch.Tensor:
        """Each output channel's share of the voxels of :data:`PRIOR_BATCHES` training batches (augmented
        patches, as the network sees them), averaged over the ranks under DDP so that they all start alike."""
        channels = self.label_manager.num_segmentation_heads
        shares = torch.zeros(channels)
        for _ in range(PRIOR_BATCHES):
            target = next(self.dataloader_train)["target"]
            shares += channel_shares(target[0] if isinstance(target, list) else target,
                                     self.label_manager.has_regions, channels)
        shares /= PRIOR_BATCHES
        if self.is_ddp:
            shares = shares.to(self.device)
            distributed.all_reduce(shares)
            shares = shares.cpu() / distributed.get_world_size()
        return shares

    def _start_from_prior(self, shares: torch.Tensor) -> None:
        """Bias the output layers so that the untrained network gives every voxel each region's (or
        foreground class's) share of the training patches, clamped as :func:`prior_bias` says.

        A Dice-type loss alone learns very slowly from nnU-Net's default start, where every voxel is
        foreground with probability 1/2 (sigmoid) or 1/C (softmax): the false-positive volume swamps
        the denominator and the gradients are tiny. Starting from a small prior (RetinaNet's
        initialisation for the focal loss) lets the loss see the tumour at once. One small prior for
        every region starves the larger ones instead, as the gradient through the sigmoid is about the
        prior: in a run on the demo's data (AdamW at lr 1e-3, 150 iterations), a whole-tumour output started
        at 1 % (its share of the patches: 2.3 %) was still below 0.1 everywhere at the end. Checkpoints
        overwrite the bias as usual. Other architectures are left alone.
        """
        heads = output_layers(self.network)
        if heads is None:
            self.print_to_log_file("network has no decoder.seg_layers: output bias left at nnU-Net's init")
            return
        bias = prior_bias(shares, self.label_manager.has_regions)
        self.print_to_log_file("output prior (share of the training patches): "
                               + ", ".join(f"{v:.4f}" for v in shares.tolist()))
        with torch.no_grad():
            for head in heads:
                head.bias.copy_(bias.to(head.bias))

    def generalized_dice_loss(self) -> GeneralizedDiceLoss:
        """The loss for this dataset: softmax without background for labels, sigmoid for regions."""
        regions = self.label_manager.has_regions
        loss = GeneralizedDiceLoss(apply_nonlin=torch.sigmoid if regions else softmax_helper_dim1,
                                   include_background=regions, batch=self.configuration_manager.batch_dice,
                                   weight_type=self.weight_type, ddp=self.is_ddp)
        return torch.compile(loss) if self._do_i_compile() else loss

    def _build_loss(self):
        if self.label_manager.has_ignore_label:
            raise RuntimeError(f"{type(self).__name__} does not support an ignore label; use nnUNetTrainerGDLCE")
        loss = super()._build_loss()
        if isinstance(loss, DeepSupervisionWrapper):  # keep nnU-Net's deep-supervision weights
            loss.loss = self.generalized_dice_loss()
            return loss
        return self.generalized_dice_loss()

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        super().on_validation_epoch_end(val_outputs)
        tp, fp, fn = self._validation_counts(val_outputs)
        score = generalized_dice_score_from_counts(tp, fp, fn)
        dice = self.logger.get_value("dice_per_class_or_region", step=-1)
        self.print_to_log_file(f"Generalised Dice score {score:.4f}; Dice per "
                               f"{'region' if self.label_manager.has_regions else 'class'}: "
                               + ", ".join(f"{name} {value:.4f}" for name, value in zip(self._class_names(), dice)))
        if self.local_rank == 0:
            self._append_metrics_row([self.current_epoch, *dice, score])

    def _validation_counts(self, val_outputs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Summed true/false positives and false negatives per class of this epoch, over all ranks."""
        collated = collate_outputs(val_outputs)
        counts = [np.sum(collated[key], 0) for key in ("tp_hard", "fp_hard", "fn_hard")]
        if self.is_ddp:
            gathered = [None] * distributed.get_world_size()
            distributed.all_gather_object(gathered, counts)
            counts = [np.sum([rank[i] for rank in gathered], 0) for i in range(3)]
        return counts[0], counts[1], counts[2]

    def _class_names(self) -> list[str]:
        labels = self.dataset_json["labels"]
        return [name for name in labels if name not in ("background", "ignore")]

    def _append_metrics_row(self, row: list) -> None:
        path = f"{self.output_folder}/{METRICS_FILE}"
        new = self.current_epoch == 0 or not os.path.exists(path)
        with open(path, "w" if self.current_epoch == 0 else "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["epoch", *(f"dice_{n.replace(' ', '_')}" for n in self._class_names()),
                                 "generalized_dice_score"])
            writer.writerow([row[0], *(f"{v:.6f}" for v in row[1:])])


def output_layers(network: nn.Module) -> nn.ModuleList | None:
    """The output (segmentation) layers of nnU-Net's U-Nets, one per deep-supervision scale, through a
    DDP or ``torch.compile`` wrapper; None for an architecture without ``decoder.seg_layers``."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    network = getattr(network, "_orig_mod", network)  # under torch.compile
    return getattr(getattr(network, "decoder", None), "seg_layers", None)


def channel_shares(target: torch.Tensor, regions: bool, channels: int) -> torch.Tensor:
    """Each of ``channels`` output channels' share of the annotated voxels of a training target: per region
    of (b, regions[, ignore], ...) masks, or per class (background first) of a (b, 1, ...) label map.
    Voxels of nnU-Net's ignore label (an extra last region mask; the label above every class) are not
    counted."""
    if regions:
        target = target.float().cpu()
        ignored = target[:, channels:channels + 1] if target.shape[1] > channels else torch.zeros_like(target[:, :1])
        annotated = 1 - ignored
        axes = [d for d in range(target.ndim) if d != 1]
        return (target[:, :channels] * annotated).sum(dim=axes) / annotated.sum().clamp_min(1)
    counts = torch.bincount(target.long().flatten().cpu(), minlength=channels)[:channels].float()
    return counts / counts.sum().clamp_min(1)


def prior_bias(shares: torch.Tensor, regions: bool) -> torch.Tensor:
    """Output biases with which an untrained network predicts ``shares`` on every voxel: sigmoid(bias) for
    regions, softmax(bias) for classes (background first). Regions and foreground classes are clamped to
    [:data:`FOREGROUND_PRIOR`, 1/2]; foreground classes that then add up to more than 1/2 are scaled down
    together to 1/2 (with many classes, below :data:`FOREGROUND_PRIOR` each)."""
    if regions:
        prior = shares.clamp(FOREGROUND_PRIOR, 0.5)
        return torch.log(prior / (1 - prior))
    foreground = shares[1:].clamp(FOREGROUND_PRIOR, 0.5)
    foreground = foreground * min(1.0, 0.5 / float(foreground.sum()))
    return torch.log(torch.cat([(1 - foreground.sum()).reshape(1), foreground]))
