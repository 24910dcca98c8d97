"""brats_plugin: BraTS brain-tumour segmentation on nnU-Net v2.

The public Python API, re-exported from the modules that define it.
"""
from brats_plugin.cases import Case, check_case, find_case, find_cases
from brats_plugin.dataset_conversion import (
    ConversionResult, convert_release, synthesize_case, write_synthetic_release,
)
from brats_plugin.errors import BratsInputError
from brats_plugin.releases import RELEASES, SEQUENCES, Release, get_release
from brats_plugin.version import __version__

__all__ = [
    "Case", "check_case", "find_case", "find_cases",
    "ConversionResult", "convert_release", "synthesize_case", "write_synthetic_release",
    "BratsInputError", "RELEASES", "SEQUENCES", "Release", "get_release", "__version__",
]
