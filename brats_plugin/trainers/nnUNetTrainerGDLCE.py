"""``nnUNetTrainerGDLCE``: generalised Dice loss + cross-entropy (+ binary cross-entropy for regions).

nnU-Net's own compound loss (Dice + CE for labels, Dice + BCE for regions, with its ignore-label
handling and deep supervision) with its Dice term replaced by the generalised Dice loss.
"""
from __future__ import annotations

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from brats_plugin.trainers.nnUNetTrainerGDL import nnUNetTrainerGDL


class nnUNetTrainerGDLCE(nnUNetTrainerGDL):
    """nnU-Net training with generalised Dice loss plus (binary) cross-entropy, weighted 1:1."""

    def _build_loss(self):
        loss = nnUNetTrainer._build_loss(self)  # nnU-Net's compound loss (GDL alone is the parent's)
        compound = loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss
        compound.dc = self.generalized_dice_loss()
        return loss
