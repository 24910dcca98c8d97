"""BraTS release on disk -> nnU-Net raw dataset; synthetic BraTS-like phantoms."""
from brats_plugin.dataset_conversion.convert import ConversionResult, convert_release
from brats_plugin.dataset_conversion.synthetic import synthesize_case, write_synthetic_release

__all__ = ["ConversionResult", "convert_release", "synthesize_case", "write_synthetic_release"]
