"""Re-exports for nnU-Net's ``nnUNet_extTrainer`` lookup (``nnUNetv2_train ... -tr nnUNetTrainerGDL``).

nnU-Net imports every module in this folder as a top-level name and then drops it from
``sys.modules``; the classes themselves live in :mod:`brats_plugin.trainers`, where checkpoints and
spawned workers import them from.
"""
from brats_plugin.trainers import *  # noqa: F401,F403  (the point of this module)
from brats_plugin.trainers import __all__  # noqa: F401
