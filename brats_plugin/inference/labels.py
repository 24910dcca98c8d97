"""From the labels a model predicts (nnU-Net's) back to a BraTS release's label values.

A model converted by ``brats convert`` records its release in the ``"brats"`` block of its
``dataset.json``; its nnU-Net labels mean that release's tissues. Output labels may be asked in
another release: each nnU-Net label goes to the output release's label for the same tissue (2021's
enhancing tumour 4 is 2023's 3, 2024 PED's 1). A tissue the output release has no label for is an
error, not a silent loss.

A model without the block (a stock nnU-Net BraTS dataset such as ``Dataset137_BraTS2021``) is taken
to use nnU-Net's BraTS convention (edema 1, non-enhancing core 2, enhancing tumour 3) when its
label table has that shape, which :data:`brats_plugin.releases` shares for 2017-2022.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from brats_plugin.errors import AssumedConventionWarning, BratsInputError, IncompatibleModelError
from brats_plugin.releases import DEFAULT_RELEASE, Release, get_release


@dataclass(frozen=True)
class LabelMap:
    """nnU-Net label -> output release label, as a lookup table."""

    table: np.ndarray  # uint8, indexed by nnU-Net label

    def apply(self, nnunet_labels: np.ndarray) -> np.ndarray:
        """Release labels (uint8) for an array of nnU-Net labels."""
        return self.table[nnunet_labels]


def model_release(dataset_json: dict, source: str) -> Release:
    """The release whose nnU-Net labels the model predicts (see the module docstring)."""
    block = dataset_json.get("brats")
    if isinstance(block, dict) and block.get("release"):
        return get_release(str(block["release"]))
    if not _has_nnunet_brats_labels(dataset_json):
        raise IncompatibleModelError(f"{source}: dataset.json names no BraTS release (no \"brats\" block) and its "
                                     f"labels {dataset_json.get('labels')} are not nnU-Net's BraTS convention; "
                                     "convert the training data with brats convert")
    warnings.warn(f"{source}: dataset.json names no BraTS release; assuming nnU-Net's BraTS convention "
                  f"(edema 1, non-enhancing core 2, enhancing 3), output in BraTS {DEFAULT_RELEASE} labels",
                  AssumedConventionWarning, stacklevel=2)
    return get_release(DEFAULT_RELEASE)


def _has_nnunet_brats_labels(dataset_json: dict) -> bool:
    """Whether the label table (and region order) is nnU-Net's BraTS one, whatever the names."""
    reference = get_release(DEFAULT_RELEASE)
    given = _values(dataset_json.get("labels", {}))
    for regions in (False, True):
        labels, order = reference.nnunet_labels(regions)
        if given == _values(labels) and dataset_json.get("regions_class_order") == order:
            return True
    return False


def _values(labels: dict) -> list:
    return [sorted(v) if isinstance(v, list) else v for v in labels.values()]


def label_map(trained: Release, output: Release) -> LabelMap:
    """The lookup from the trained release's nnU-Net labels to the output release's labels."""
    table = np.zeros(256, dtype=np.uint8)
    for label in trained.labels:
        target = output.label_of_tissue(label.tissue)
        if target is None:
            raise BratsInputError(f"--release {output.key}: BraTS {output.key} has no label for "
                                  f"{label.name}, which this model ({trained.title}) predicts")
        table[label.nnunet] = target.value
    return LabelMap(table)
