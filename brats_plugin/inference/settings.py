"""Inference settings shared by the library and the command line (plain constants: no heavy imports)."""

#: ``tiling`` choices: nnU-Net's sliding window of planned patches, or the whole brain in one pass
#: (:mod:`brats_plugin.inference.whole_brain`).
TILINGS = ("nnunet", "whole")
#: The largest tile ``tiling="whole"`` takes, in planned patches' voxels. Memory grows with the tile;
#: measured with a BraTS-sized plan on the sample case (whole brain 4.4 M voxels, 1.9 patches):
#: ``brats predict --fast`` peaked at 4.4 GiB with the whole brain, 3.8 GiB with 1.6 patches. The same
#: in bfloat16 (half the memory) on purpose: a larger tile changes the labels more than the precision
#: does (docs/benchmarks.md), so ``--precision`` changes the arithmetic and nothing else.
WHOLE_BRAIN_BUDGET = 1.6
#: ``precision`` choices (:mod:`brats_plugin.inference.precision`): nnU-Net's own (float16 autocast on CUDA,
#: float32 elsewhere), float32, or bfloat16 (on a device that computes it natively).
PRECISIONS = ("auto", "float32", "bfloat16")
#: What ``--fast`` changes (measured: docs/benchmarks.md, "Prediction speed").
FAST_SETTINGS = {"mirroring": False, "tiling": "whole"}
#: nnU-Net's own prediction: 2^3 mirrored passes over overlapping planned tiles.
NNUNET_SETTINGS = {"mirroring": True, "tiling": "nnunet"}
#: ``brats app --settings``: ``auto`` is fast on a CPU (or mps), nnU-Net's own on CUDA.
APP_SETTINGS = ("auto", "fast", "nnunet")


def prediction_settings(choice: str, device_type: str) -> dict:
    """The Segmenter options of an :data:`APP_SETTINGS` choice on a device type ("cuda", "cpu", "mps").
    On a CPU nnU-Net's own settings take 8 network passes per tile: minutes per case instead of one pass."""
    fast = choice == "fast" or (choice == "auto" and device_type != "cuda")
    return dict(FAST_SETTINGS if fast else NNUNET_SETTINGS)
