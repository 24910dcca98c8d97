"""Post-processing rules for a label mask, their meaning, and the file a model keeps them in.

Three kinds of rule, each tuned on a model's cross-validation (:mod:`brats_plugin.postprocessing.tuning`):

0. **Region probability thresholds** (WT, TC, ET; as NVIDIA's BraTS 2021/2022 entries): a region holds
   the voxels whose probability of it is above the region's threshold instead of the network's own
   decision (0.5 of a sigmoid, or the argmax of a softmax, whose region probability is the sum of its
   labels' probabilities). Voxels entering a region take its own tissue (WT edema, TC necrosis, ET
   enhancing), voxels leaving it the tissue just outside it (as rule 2); WT, then TC, then ET. Needs
   the network's probabilities (``brats predict`` computes them when the rules ask for them).
1. **Enhancing-tumour volume rule** (nnU-Net's BraTS 2020 winner, nnU-Net v1 ``apply_brats_threshold``):
   when the whole enhancing tumour of a case is smaller than ``enhancing_min_volume_mm3``, every
   enhancing voxel becomes the release's necrosis (non-enhancing core) label. The tumour core is
   unchanged; the ET region becomes empty. The winner counted voxels on BraTS's 1 mm grid; here the
   threshold is a volume, so voxels are counted times their volume (on a 1 mm grid: the same numbers).
2. **Minimum component size per region** (WT, TC, ET): each 26-connected component of the region's
   mask smaller than the region's ``min_component_mm3`` leaves that region. Its voxels take the label
   they would have just outside it: leaving ET makes them necrosis (as rule 1), leaving TC makes them
   edema, leaving WT makes them background. Regions are cleaned from the largest (WT) inwards.

Rules 1 and 2 compare with "smaller than" (strictly), as the winner's rule did; rule 0 with "above".
Rules speak of regions and tissues, not label values, so they apply to a mask in any release's labels
(a model's output asked in another release with ``--release``). They run in the order 0, 1, 2.

The rules of a model live in ``brats_postprocessing.json`` in its results folder, beside ``plans.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cc3d
import numpy as np

from brats_plugin.errors import BratsInputError
from brats_plugin.files import write_bytes_atomic
from brats_plugin.geometry import nonzero_box, voxel_volume_ml
from brats_plugin.releases import Release, get_release
from brats_plugin.version import __version__

#: The file in a model's results folder that holds its post-processing rules.
RULES_FILE = "brats_postprocessing.json"
#: Marks our rules files (and tells them from nnU-Net's own ``postprocessing.json``).
RULES_KIND = "brats_plugin postprocessing"
#: Components are 26-connected, as the BraTS 2023 lesion-wise evaluation counts lesions.
COMPONENT_CONNECTIVITY = 26
#: Regions whose small components a rule may remove, cleaned in this order (outermost first).
COMPONENT_REGIONS = ("WT", "TC", "ET")
#: The tissue a voxel leaving a region becomes (None: background): the label just outside the region.
TISSUE_OUTSIDE = {"WT": None, "TC": "edema", "ET": "necrosis"}
#: The tissue a voxel entering a region becomes: the label the region holds that no inner region does.
TISSUE_INSIDE = {"WT": "edema", "TC": "necrosis", "ET": "enhancing"}


@dataclass(frozen=True)
class PostprocessingRules:
    """A model's post-processing: which rules are on and their thresholds (mm^3); see the module.

    ``tuning`` records how the rules were found (metric, folds, cases, scores before and after); it
    does not change what :meth:`apply` does.
    """

    enhancing_min_volume_mm3: float = 0.0  # 0: the enhancing-tumour volume rule is off
    min_component_mm3: dict[str, float] = field(default_factory=dict)  # region abbreviation -> size; absent: off
    region_thresholds: dict[str, float] = field(default_factory=dict)  # region -> probability; absent: as predicted
    tuning: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.min_component_mm3) | set(self.region_thresholds)) - set(COMPONENT_REGIONS))
        if unknown:
            raise ValueError(f"rules for unknown regions {unknown}; regions: {COMPONENT_REGIONS}")
        if not all(0 <= t < 1 for t in self.region_thresholds.values()):
            raise ValueError("probability thresholds must lie in [0, 1)")

    @property
    def needs_probabilities(self) -> bool:
        """Whether :meth:`apply` needs the network's region probabilities (a probability threshold is on)."""
        return any(t > 0 for t in self.region_thresholds.values())

    @property
    def empty(self) -> bool:
        """Whether no rule is on (applying changes nothing)."""
        return (self.enhancing_min_volume_mm3 <= 0 and not any(v > 0 for v in self.min_component_mm3.values())
                and not self.needs_probabilities)

    def describe(self) -> list[str]:
        """One line per rule that is on, e.g. ``"ET below 250 mm3 -> necrosis"``."""
        lines = [f"{region} where its probability is above {self.region_thresholds[region]:g}"
                 for region in COMPONENT_REGIONS if self.region_thresholds.get(region, 0) > 0]
        if self.enhancing_min_volume_mm3 > 0:
            lines.append(f"enhancing tumour below {self.enhancing_min_volume_mm3:g} mm3 in all -> necrosis")
        for region in COMPONENT_REGIONS:
            size = self.min_component_mm3.get(region, 0)
            if size > 0:
                lines.append(f"{region} components below {size:g} mm3 removed")
        return lines

    def apply(self, labels: np.ndarray, release: Release, affine: np.ndarray,
              probabilities: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """``labels`` (a mask in ``release``'s labels on the grid of ``affine``) with the rules applied.

        ``probabilities``: the network's probabilities of WT, TC and ET, shape ``(3, *labels.shape)``
        (:func:`region_probabilities`); needed when a probability threshold is on.
        Returns the new mask (the input is never changed) and one line per change made, e.g.
        ``"ET 180 mm3 < 250 mm3: 180 voxels -> necrosis"`` (empty when nothing changed).
        """
        result = np.array(labels, copy=True)
        changes: list[str] = []
        if self.needs_probabilities:
            if probabilities is None or probabilities.shape != (len(COMPONENT_REGIONS), *result.shape):
                raise BratsInputError("these post-processing rules threshold the network's region probabilities: "
                                      "predict the case with brats predict (it computes them)")
            changes += _threshold_regions(result, release, probabilities, self.region_thresholds)
        box = nonzero_box(result)
        if box is None or self.empty:
            return result, changes
        labels = result[box]  # a view: every rule works inside the tumour's box (components cannot leave it)
        voxel_mm3 = voxel_volume_ml(affine) * 1000.0
        if self.enhancing_min_volume_mm3 > 0:
            enhancing = in_labels(labels, release.region("ET").labels)
            volume = np.count_nonzero(enhancing) * voxel_mm3
            if 0 < volume < self.enhancing_min_volume_mm3:
                labels[enhancing] = _tissue_value(release, "necrosis")
                changes.append(f"ET {volume:g} mm3 < {self.enhancing_min_volume_mm3:g} mm3: "
                               f"{np.count_nonzero(enhancing)} voxels -> necrosis")
        for abbreviation in COMPONENT_REGIONS:
            size = self.min_component_mm3.get(abbreviation, 0)
            if size > 0:
                removed = remove_small_components(labels, release, abbreviation, size / voxel_mm3)
                if removed:
                    changes.append(f"{abbreviation}: {removed} component(s) below {size:g} mm3 removed")
        return result, changes

    def to_json(self, release: Release) -> dict:
        """The rules file's content; ``release``: the labels the rules were tuned in (for the record)."""
        return {"kind": RULES_KIND, "plugin_version": __version__, "release": release.key,
                "rules": {"region_probability_thresholds": dict(self.region_thresholds),
                          "enhancing_min_volume_mm3": self.enhancing_min_volume_mm3,
                          "min_component_mm3": dict(self.min_component_mm3)},
                "description": self.describe() or ["no rule: post-processing did not improve the metric"],
                "tuning": self.tuning}

    @classmethod
    def from_json(cls, data: object, source: str | os.PathLike) -> PostprocessingRules:
        """Rules read from a rules file's content; a malformed file is a :class:`BratsInputError`."""
        try:
            if not isinstance(data, dict) or data.get("kind") != RULES_KIND:
                raise ValueError(f"not a {RULES_KIND} file")
            get_release(str(data["release"]))
            rules = data["rules"]
            maps = ("min_component_mm3", "region_probability_thresholds")
            if not isinstance(rules, dict) or not all(isinstance(rules.get(key, {}), dict) for key in maps):
                raise ValueError(f'"rules" and its {" and ".join(maps)} must be objects')
            volume = float(rules.get("enhancing_min_volume_mm3", 0.0))
            components, thresholds = ({str(k): float(v) for k, v in rules.get(key, {}).items()} for key in maps)
            if volume < 0 or any(v < 0 for v in components.values()):
                raise ValueError("negative threshold")
            return cls(volume, components, thresholds, dict(data.get("tuning") or {}))
        except (KeyError, TypeError, ValueError, BratsInputError) as error:
            raise BratsInputError(f"{source}: not a valid post-processing rules file ({error})") from None


def in_labels(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """The boolean mask of voxels holding one of ``values``: a lookup table for uint8 masks (many times
    faster than :func:`numpy.isin`, which the tuning's thousands of candidate masks would feel)."""
    if labels.dtype != np.uint8:
        return np.isin(labels, values)
    table = np.zeros(256, dtype=bool)
    table[list(values)] = True
    return table[labels]


def _threshold_regions(labels: np.ndarray, release: Release, probabilities: np.ndarray,
                       thresholds: dict[str, float]) -> list[str]:
    """Rule 0 (see the module), in place on ``labels``; one line per region changed."""
    changes = []
    for index, region in enumerate(COMPONENT_REGIONS):
        threshold = thresholds.get(region, 0)
        if threshold <= 0:
            continue
        inside, wanted = in_labels(labels, release.region(region).labels), probabilities[index] > threshold
        gained, lost = wanted & ~inside, inside & ~wanted
        if gained.any():
            labels[gained] = _tissue_value(release, TISSUE_INSIDE[region])
        if lost.any():
            outside = TISSUE_OUTSIDE[region]
            labels[lost] = 0 if outside is None else _tissue_value(release, outside)
        if gained.any() or lost.any():
            changes.append(f"{region} probability above {threshold:g}: {np.count_nonzero(gained)} voxels in, "
                           f"{np.count_nonzero(lost)} out")
    return changes


def region_probabilities(channels: np.ndarray, release: Release, region_based: bool) -> np.ndarray:
    """The probabilities of WT, TC and ET, shape ``(3, ...)``, from a model's output channels (channel first).

    Region-based models (sigmoids) have one channel per training region, the evaluation regions first;
    label-based models (softmax over nnU-Net labels, background first) give a region the sum of its
    labels' channels. ``release``: the release the model was trained on.
    """
    if region_based:
        return np.asarray(channels[:len(COMPONENT_REGIONS)])
    return np.stack([sum(channels[release.to_nnunet[value]] for value in release.region(region).labels)
                     for region in COMPONENT_REGIONS])


def region_components(labels: np.ndarray, release: Release, region: str) -> tuple[np.ndarray, np.ndarray]:
    """(component image, voxels per component) of a region's mask; entry 0 of the sizes is the background."""
    mask = in_labels(labels, release.region(region).labels)
    if not mask.any():
        return np.zeros(labels.shape, np.uint32), np.zeros(1, np.int64)
    components = cc3d.connected_components(mask, connectivity=COMPONENT_CONNECTIVITY)
    return components, np.bincount(components.ravel())


def remove_small_components(labels: np.ndarray, release: Release, region: str, min_voxels: float) -> int:
    """Move every component of ``region`` with fewer than ``min_voxels`` voxels out of it, in place.

    The voxels take :data:`TISSUE_OUTSIDE`'s label for the region. Returns how many components moved.
    """
    components, sizes = region_components(labels, release, region)
    small = sizes < min_voxels
    small[0] = False  # the background
    if small.any():
        outside = TISSUE_OUTSIDE[region]
        labels[small[components]] = 0 if outside is None else _tissue_value(release, outside)
    return int(np.count_nonzero(small))


def _tissue_value(release: Release, tissue: str) -> int:
    label = release.label_of_tissue(tissue)
    if label is None:  # every release has necrosis and edema labels; a guard for future tables
        raise BratsInputError(f"BraTS {release.key} has no {tissue} label for the post-processing rules")
    return label.value


def rules_path(model_folder: str | os.PathLike) -> Path:
    """Where a model's rules file lives."""
    return Path(model_folder) / RULES_FILE


def load_rules(model_folder: str | os.PathLike) -> PostprocessingRules | None:
    """The rules kept in a model's results folder, or None when it has no rules file."""
    path = rules_path(model_folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BratsInputError(f"{path}: unreadable post-processing rules ({error})") from None
    return PostprocessingRules.from_json(data, path)


def save_rules(rules: PostprocessingRules, release: Release, model_folder: str | os.PathLike) -> Path:
    """Write the rules file into a model's results folder (atomically); return its path."""
    path = rules_path(model_folder)
    write_bytes_atomic((json.dumps(rules.to_json(release), indent=2) + "\n").encode(), path)
    return path
