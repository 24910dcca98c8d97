"""Inference settings shared by the library and the command line (plain constants: no heavy imports)."""

#: ``tiling`` choices: nnU-Net's sliding window of planned patches, or the whole brain in one pass
#: (:mod:`brats_plugin.inference.whole_brain`).
TILINGS = ("nnunet", "whole")
#: The largest tile ``tiling="whole"`` takes, in full-resolution feature voxels (tile voxels x the network's
#: first-stage features): memory grows with it. Measured with a BraTS-sized plan (32 features) on 2 CPU
#: cores (docs/benchmarks.md): ``brats predict --fast`` peaked at 3.0 GiB over the sample case's whole
#: cropped brain (2.7 M voxels) and one pass over 4.4 M voxels at 3.4 GiB; this budget (4.7 M voxels at 32
#: features) keeps a BraTS brain whole under 4 GiB with nnU-Net's default U-Net (run by the lean forward;
#: other architectures run their own forward, which takes more). The same in bfloat16 (half the memory) on
#: purpose: a larger tile changes the labels more than the precision does, so ``--precision`` changes the
#: arithmetic only.
WHOLE_BRAIN_FEATURE_VOXELS = 150_000_000
#: ``precision`` choices (:mod:`brats_plugin.inference.precision`): nnU-Net's own (float16 autocast on CUDA,
#: float32 elsewhere), float32, or bfloat16 (on a device that computes it natively).
PRECISIONS = ("auto", "float32", "bfloat16")
#: What ``--fast`` changes (measured: docs/benchmarks.md, "Prediction speed").
FAST_SETTINGS = {"mirroring": False, "tiling": "whole"}
#: nnU-Net's own prediction: 2^3 mirrored passes over overlapping planned tiles.
NNUNET_SETTINGS = {"mirroring": True, "tiling": "nnunet"}
#: The default off CUDA: the images and their left-right mirror (voxel axis 0, left-right in BraTS space),
#: each over whole-brain tiles: 2 network passes per tile instead of nnU-Net's 8 over 2-4x the voxels
#: (measured: docs/benchmarks.md, "The default on a CPU").
CPU_DEFAULT_SETTINGS = {"mirroring": (0,), "tiling": "whole"}
#: ``brats app --settings``: ``auto`` is fast on a CPU (or mps), nnU-Net's own on CUDA.
APP_SETTINGS = ("auto", "fast", "nnunet")


def prediction_settings(choice: str, device_type: str) -> dict:
    """The Segmenter options of an :data:`APP_SETTINGS` choice on a device type ("cuda", "cpu", "mps").
    On a CPU nnU-Net's own settings take 8 network passes per tile: minutes per case instead of one pass."""
    fast = choice == "fast" or (choice == "auto" and device_type != "cuda")
    return dict(FAST_SETTINGS if fast else NNUNET_SETTINGS)


def default_settings(device_type: str) -> dict:
    """``brats predict``'s settings where none is chosen, by device type: nnU-Net's own on CUDA, where its
    8 mirrored passes take seconds; elsewhere :data:`CPU_DEFAULT_SETTINGS`: about 30 s instead of about 10
    minutes for a BraTS-sized model on 2 CPU cores (docs/benchmarks.md)."""
    return dict(NNUNET_SETTINGS if device_type == "cuda" else CPU_DEFAULT_SETTINGS)


def describe_settings(settings: dict) -> str:
    """One line for a run's header from :attr:`Segmenter.settings`, e.g. "mirroring along voxel axes 0,
    whole-brain tiles, float32"."""
    axes = settings["mirroring_voxel_axes"]
    mirroring = f"mirroring along voxel axes {', '.join(map(str, axes))}" if axes else "no mirroring"
    tiles = "whole-brain tiles" if settings["tiling"] == "whole" else "nnU-Net's tiles"
    return f"{mirroring}, {tiles}, {settings['precision']}"
