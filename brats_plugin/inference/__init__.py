"""Inference: trained nnU-Net model + BraTS case -> labelled NIfTI mask in BraTS labels, with volumes.

Names are imported on first use, so that the command line's option tables (``settings``) can be read
without loading PyTorch.
"""
import importlib

_DEFINED_IN = {
    "BrainExtractor": "brain_extraction",
    "TrainedModel": "model", "open_model": "model",
    "Segmentation": "segmenter", "Segmenter": "segmenter", "predict_case": "segmenter",
    "Volumes": "volumes", "measure_volumes": "volumes",
}


def __getattr__(name: str):
    if name in _DEFINED_IN:
        return getattr(importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_DEFINED_IN)
