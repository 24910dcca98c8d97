"""Tumour volumes in millilitres: per release label and per evaluation region (WT/TC/ET).

The voxel volume comes from the image's affine (|det| of its linear part), so anisotropic, oblique
and non-1-mm images are measured correctly.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np

from brats_plugin import files
from brats_plugin.geometry import voxel_volume_ml
from brats_plugin.releases import Release, get_release


@dataclass(frozen=True)
class Volumes:
    """Volumes (mL) of each label value and each region of a release, for one segmentation."""

    release: Release
    labels: dict[int, float]
    regions: dict[str, float]

    def columns(self) -> dict[str, float]:
        """Flat ``column name -> mL`` (``label 4 ET (mL)``, ``WT (mL)``, ...), for tables and summaries."""
        named = {f"label {v} {self.release.label(v).abbreviation} (mL)": ml for v, ml in self.labels.items()}
        return {**named, **{f"{abbreviation} (mL)": ml for abbreviation, ml in self.regions.items()}}

    def to_json(self) -> dict:
        return {
            "release": self.release.key,
            "labels": {str(v): {"name": self.release.label(v).name, "mL": ml} for v, ml in self.labels.items()},
            "regions": {abbreviation: {"mL": ml} for abbreviation, ml in self.regions.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> Volumes:
        """The inverse of :meth:`to_json`."""
        return cls(get_release(data["release"]), {int(v): entry["mL"] for v, entry in data["labels"].items()},
                   {abbreviation: entry["mL"] for abbreviation, entry in data["regions"].items()})

    def summary(self) -> str:
        """``WT 41.2 mL, TC 12.0 mL, ET 5.3 mL``."""
        return ", ".join(f"{abbreviation} {ml:.1f} mL" for abbreviation, ml in self.regions.items())


def measure_volumes(labels: np.ndarray, release: Release, affine: np.ndarray) -> Volumes:
    """Volumes of a uint8 label map in ``release``'s labels."""
    counts = np.bincount(labels.ravel(), minlength=256)
    voxel = voxel_volume_ml(affine)
    return Volumes(
        release,
        {label.value: float(counts[label.value]) * voxel for label in release.labels},
        {region.abbreviation: float(counts[list(region.labels)].sum()) * voxel for region in release.regions},
    )


#: How the columns of volumes on the patient's own (native) grid are told apart in tables.
NATIVE_COLUMN_SUFFIX = " native clinical (mL)"


def native_columns(volumes: Volumes) -> dict[str, float]:
    """:meth:`Volumes.columns` of a mask on the patient's own grid: ``WT native clinical (mL)``, ..."""
    return {name.removesuffix(" (mL)") + NATIVE_COLUMN_SUFFIX: ml for name, ml in volumes.columns().items()}


def write_volumes_csv(rows: dict[str, Volumes], path: str | os.PathLike,
                      native: dict[str, Volumes] | None = None) -> None:
    """One row per case (sorted by case id), written atomically.

    ``native``: volumes of the same cases on the patient's own grid (cases that came from a scanner study
    through ``brats preprocess``), in extra columns named as the clinical figures; empty for other cases.
    """
    if not rows:
        return
    native = native or {}
    header = ["case_id", *next(iter(rows.values())).columns()]
    if native:
        header += list(native_columns(next(iter(native.values()))))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for case_id in sorted(rows):
        values = rows[case_id].columns()
        if case_id in native:
            values.update(native_columns(native[case_id]))
        writer.writerow([case_id, *(f"{values[c]:.3f}" if c in values else "" for c in header[1:])])
    files.write_bytes_atomic(text.getvalue().encode(), path)
