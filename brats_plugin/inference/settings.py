"""Prediction settings shared by the library and the command line (plain constants: no PyTorch import)."""

#: ``tiling`` choices: nnU-Net's sliding window of planned patches, or the whole brain in one pass
#: (:mod:`brats_plugin.inference.whole_brain`).
TILINGS = ("nnunet", "whole")
#: What ``--fast`` changes (measured: README, "Prediction speed").
FAST_SETTINGS = {"mirroring": False, "tiling": "whole"}
