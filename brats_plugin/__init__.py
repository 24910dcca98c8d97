"""brats_plugin: BraTS brain-tumour segmentation on nnU-Net v2.

The public Python API, re-exported from the modules that define it. The inference names
(``Segmenter``, ``Segmentation``, ``predict_case``) are imported on first use, so that ``import
brats_plugin`` (and ``brats --help``) does not load PyTorch.
"""
import importlib

from brats_plugin.cases import Case, check_case, find_case, find_cases
from brats_plugin.dataset_conversion import (
    ConversionResult,
    convert_release,
    synthesize_case,
    write_synthetic_release,
)
from brats_plugin.errors import BratsInputError
from brats_plugin.releases import RELEASES, SEQUENCES, Release, get_release
from brats_plugin.version import __version__

_LAZY = {"Segmenter": "brats_plugin.inference", "Segmentation": "brats_plugin.inference",
         "predict_case": "brats_plugin.inference"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'brats_plugin' has no attribute {name!r}")


__all__ = [
    "Case", "check_case", "find_case", "find_cases",
    "ConversionResult", "convert_release", "synthesize_case", "write_synthetic_release",
    "BratsInputError", "RELEASES", "SEQUENCES", "Release", "get_release", "__version__",
    "Segmenter", "Segmentation", "predict_case",
]
