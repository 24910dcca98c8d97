"""Generalised Dice loss and score, and the nnU-Net trainers that use them.

``nnUNet_extTrainer`` must point at :data:`NNUNET_EXT_FOLDER` for nnU-Net's own commands to find the
trainers by name (``brats env`` prints the line; ``brats train`` sets it).
"""
from pathlib import Path

from brats_plugin.trainers.generalized_dice import (
    GeneralizedDiceLoss,
    generalized_dice_score,
    generalized_dice_score_from_counts,
)
from brats_plugin.trainers.nnUNetTrainerGDL import nnUNetTrainerGDL
from brats_plugin.trainers.nnUNetTrainerGDL_demo import (
    nnUNetTrainerDCCE_demo,
    nnUNetTrainerDCCE_demo_6epochs,
    nnUNetTrainerGDL_demo,
    nnUNetTrainerGDL_demo_2epochs,
    nnUNetTrainerGDLCE_demo,
    nnUNetTrainerGDLCE_demo_2epochs,
)
from brats_plugin.trainers.nnUNetTrainerGDLCE import nnUNetTrainerGDLCE

#: The folder to put in ``nnUNet_extTrainer``.
NNUNET_EXT_FOLDER = Path(__file__).resolve().parent / "nnunet_ext"

__all__ = [
    "GeneralizedDiceLoss", "generalized_dice_score", "generalized_dice_score_from_counts",
    "nnUNetTrainerGDL", "nnUNetTrainerGDLCE", "nnUNetTrainerGDL_demo", "nnUNetTrainerGDL_demo_2epochs",
    "nnUNetTrainerGDLCE_demo", "nnUNetTrainerGDLCE_demo_2epochs", "nnUNetTrainerDCCE_demo",
    "nnUNetTrainerDCCE_demo_6epochs", "NNUNET_EXT_FOLDER",
]
