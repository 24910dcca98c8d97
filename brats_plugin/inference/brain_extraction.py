"""Brain extraction with a trained nnU-Net v2 model, for ``brats preprocess --brain-model``.

Any nnU-Net v2 model whose foreground is the brain works: HD-BET 2.x's released parameters (one input
channel, labels background/brain) are one, a model trained with ``nnUNetv2_train`` on skull-on heads
another. The model is loaded by the same code as the tumour models (:func:`open_model`,
:func:`load_predictor`) and runs on the sequences after registration, on the atlas grid, so its mask
needs no further resampling. Every label above 0 counts as brain; holes are filled.

Which sequences go in: a model with one input channel gets the T1Gd (the image everything else is
registered to) unless that channel is named after another BraTS sequence; a model with several gets
the sequences its channel names say (``T1``, ``T1ce``, ``FLAIR``... as in file names).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from scipy import ndimage

from brats_plugin.cases import identify_file
from brats_plugin.devices import resolve_device
from brats_plugin.errors import BratsInputError, IncompatibleModelError
from brats_plugin.inference.model import TrainedModel, open_model
from brats_plugin.inference.segmenter import load_predictor, run_network
from brats_plugin.releases import SEQUENCES

#: The sequence a one-channel model gets when its channel name is not a BraTS sequence.
DEFAULT_SEQUENCE = "T1Gd"


class BrainExtractor:
    """A brain-extraction model loaded once: ``extractor(images, affine)`` -> brain mask on that grid.

    Args:
        model: nnU-Net results folder, dataset results folder holding one model, or exported zip.
        folds, checkpoint, device, mirroring, threads: as for :class:`~brats_plugin.inference.Segmenter`.
    """

    def __init__(self, model: str | os.PathLike, *, folds: list[str] | None = None, checkpoint: str = "final",
                 device: str | torch.device = "auto", mirroring: bool = True, threads: int | None = None):
        self.model: TrainedModel = open_model(model, folds, checkpoint)
        self.sequences = input_sequences(self.model.dataset_json, str(self.model.folder / "dataset.json"))
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(device) if isinstance(device, str) else device
        self._predictor = load_predictor(self.model, device, mirroring, 0.5, "nnunet")
        self._preprocessor = self._predictor.configuration_manager.preprocessor_class(verbose=False)

    @property
    def name(self) -> str:
        """How the mask was made, for reports: the model folder and the sequences it was given."""
        return f"nnU-Net model {self.model.folder} (folds {', '.join(self.model.folds)}) on {', '.join(self.sequences)}"

    def __call__(self, images: dict[str, np.ndarray], affine: np.ndarray) -> np.ndarray:
        """The brain (bool, x y z) of co-registered ``images`` (sequence -> x y z array on ``affine``'s grid)."""
        voxels = np.stack([np.asarray(images[s], np.float32) for s in self.sequences])
        labels, _ = run_network(self._predictor, self._preprocessor, voxels, affine)
        return ndimage.binary_fill_holes(labels > 0)


def input_sequences(dataset_json: dict, source: str) -> list[str]:
    """The BraTS sequence fed to each input channel of a brain-extraction model (see the module docstring)."""
    names = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    if not isinstance(names, dict) or not all(str(k).isdigit() for k in names):
        raise IncompatibleModelError(f"{source}: channel_names must map channel numbers to names, not {names!r}")
    ordered = [str(names[k]) for k in sorted(names, key=int)]
    sequences = [_sequence_named(name) for name in ordered]
    if len(ordered) == 1:
        return [sequences[0] or DEFAULT_SEQUENCE]
    if not ordered or None in sequences or len(set(sequences)) != len(sequences):
        raise IncompatibleModelError(f"{source}: input channels {ordered} are not distinct BraTS sequences "
                                     "(T1, T1Gd, T2, FLAIR): cannot tell which image goes where")
    return sequences


def _sequence_named(name: str) -> str | None:
    """The BraTS sequence a channel name stands for, or None (not a sequence, or ambiguous)."""
    try:
        found = identify_file(name)
    except BratsInputError:
        return None
    return found if found in SEQUENCES else None
