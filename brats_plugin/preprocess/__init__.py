"""From the scanner: a patient's study (DICOM or raw NIfTI, skull on) -> a BraTS-ready case folder.

Example:
    >>> from brats_plugin.preprocess import preprocess
    >>> result = preprocess("study_dicom/", "cases/patient1")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
"""
from brats_plugin.preprocess.identify import Decision, SeriesChoiceError, choose_series, format_table
from brats_plugin.preprocess.pipeline import PreprocessResult, preprocess
from brats_plugin.preprocess.series import Series, is_dicom_study, scan_study
from brats_plugin.preprocess.volume import read_series

__all__ = ["Decision", "SeriesChoiceError", "choose_series", "format_table", "PreprocessResult", "preprocess",
           "Series", "is_dicom_study", "scan_study", "read_series"]
