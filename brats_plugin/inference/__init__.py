"""Inference: trained nnU-Net model + BraTS case -> labelled NIfTI mask in BraTS labels, with volumes."""
from brats_plugin.inference.model import TrainedModel, open_model
from brats_plugin.inference.segmenter import Segmentation, Segmenter, predict_case
from brats_plugin.inference.volumes import Volumes, measure_volumes

__all__ = ["TrainedModel", "open_model", "Segmentation", "Segmenter", "predict_case", "Volumes", "measure_volumes"]
