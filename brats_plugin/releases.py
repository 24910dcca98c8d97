"""Every BraTS fact in one table: sequence names, case ids, label values, regions, nnU-Net label maps.

Nothing else in the package hard-codes a BraTS label value or a file token; it asks this module.

Each :class:`Release` describes one BraTS release (or sub-challenge): how its files are named, what
its label values mean, which evaluation regions (WT/TC/ET) it defines, and how its labels map to the
consecutive labels nnU-Net trains on (and back).

nnU-Net labels are chosen so that the nested regions are "label >= k" sets where possible, the same
choice as nnU-Net's own ``Dataset137_BraTS21`` conversion (edema 1, non-enhancing core 2, enhancing 3).
For 2017-2022 data our nnU-Net labels are therefore identical to nnU-Net's.

Region-based training uses the evaluation regions plus, where needed, extra regions that make the
regions -> label reconstruction lossless (2024 PED's cystic component, 2024 GLI's resection cavity).

Example:
    >>> release = get_release("2021")
    >>> release.to_nnunet
    {0: 0, 1: 2, 2: 1, 4: 3}
    >>> [r.abbreviation for r in release.regions]
    ['WT', 'TC', 'ET']
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from brats_plugin.errors import BratsInputError

#: The four MRI sequences, in nnU-Net channel order (``_0000`` .. ``_0003``) for every release.
SEQUENCES: tuple[str, ...] = ("T1", "T1Gd", "T2", "FLAIR")
#: The key used for the segmentation file beside the four sequences.
SEGMENTATION = "seg"

#: File-name tokens (lower case, separators removed) recognised for each sequence, in any release and
#: in naming seen in the wild (e.g. ``_t1_bet``, ``_t1c_bet``, ``_fla_bet``). Tokens are compared after
#: splitting names at ``_``, ``-``, ``.`` and spaces; two adjacent pieces may join (``T1-Gd`` -> ``t1gd``).
SEQUENCE_TOKENS: dict[str, frozenset[str]] = {
    "T1": frozenset({"t1", "t1n", "t1w", "t1native", "t1pre"}),
    "T1Gd": frozenset({"t1ce", "t1c", "t1gd", "t1post", "t1wce", "t1wgd", "t1contrast"}),
    "T2": frozenset({"t2", "t2w"}),
    "FLAIR": frozenset({"flair", "fla", "t2f", "t2flair", "t2wflair"}),
    SEGMENTATION: frozenset({"seg", "segmentation", "label", "labels", "mask", "gt"}),
}



@dataclass(frozen=True)
class Label:
    """One tumour label of a release: its value in the release's files and in nnU-Net's."""

    value: int
    name: str
    abbreviation: str
    tissue: str  # necrosis, edema, enhancing, cavity or cyst: what the synthetic phantoms draw
    nnunet: int


@dataclass(frozen=True)
class Region:
    """A union of release labels: an evaluation region (WT/TC/ET) or an extra training region."""

    name: str
    abbreviation: str
    labels: tuple[int, ...]


@dataclass(frozen=True)
class LesionwiseParameters:
    """A sub-challenge's settings for the BraTS 2023 lesion-wise Dice and HD95.

    As in the official BraTS-2023-Metrics script: reference lesions whose dilations touch count as
    one lesion, and a predicted component matches a reference lesion when it meets the lesion dilated
    by ``dilation_voxels`` iterations of the 18-neighbourhood. Reference lesions of
    ``volume_threshold_mm3`` or less (voxel count times voxel volume; voxels on BraTS's 1 mm grid)
    are left out of the score.
    """

    dilation_voxels: int
    volume_threshold_mm3: float


@dataclass(frozen=True, eq=False)
class Release:
    """A BraTS release: naming, label values, regions and the nnU-Net label maps.

    Releases are the table's singletons: they compare and hash by identity.
    """

    key: str
    title: str
    case_id_pattern: str
    file_tokens: dict[str, str]
    labels: tuple[Label, ...]
    regions: tuple[Region, ...]
    extra_training_regions: tuple[Region, ...] = ()
    layout_subfolders: tuple[str, ...] = ()
    file_separator: str = "_"
    case_id_format: str = "case_{index:05d}"
    file_ending: str = ".nii.gz"
    lesionwise: LesionwiseParameters | None = None  # None: no lesion-wise evaluation (before 2023)

    # ---- derived facts -------------------------------------------------------------------------
    def case_id(self, index: int) -> str:
        """The release's case id for a number, e.g. ``BraTS2021_00007``."""
        return self.case_id_format.format(index=index)

    @property
    def label_values(self) -> tuple[int, ...]:
        """The values allowed in a segmentation of this release, background (0) included."""
        return (0,) + tuple(label.value for label in self.labels)

    @property
    def to_nnunet(self) -> dict[int, int]:
        """Release label value -> nnU-Net label value (background 0 -> 0)."""
        return {0: 0, **{label.value: label.nnunet for label in self.labels}}

    @property
    def from_nnunet(self) -> dict[int, int]:
        """nnU-Net label value -> release label value."""
        return {nn: value for value, nn in self.to_nnunet.items()}

    @property
    def training_regions(self) -> tuple[Region, ...]:
        """Regions for nnU-Net region-based training, in ``regions_class_order``."""
        return self.regions + self.extra_training_regions

    def label(self, value: int) -> Label:
        """The :class:`Label` with this release value."""
        for label in self.labels:
            if label.value == value:
                return label
        raise KeyError(f"BraTS {self.key} has no label {value}")

    def region(self, abbreviation: str) -> Region:
        """The evaluation :class:`Region` with this abbreviation (``"WT"``, ``"TC"``, ``"ET"``)."""
        for region in self.regions:
            if region.abbreviation == abbreviation:
                return region
        raise KeyError(f"BraTS {self.key} has no region {abbreviation}")

    def label_of_tissue(self, tissue: str) -> Label | None:
        """The label standing for a tissue kind (see :attr:`Label.tissue`), or None if the release has none."""
        return next((label for label in self.labels if label.tissue == tissue), None)

    def nnunet_labels(self, regions: bool) -> tuple[dict[str, int | list[int]], list[int] | None]:
        """The ``labels`` entry of nnU-Net's ``dataset.json`` and its ``regions_class_order``.

        Label-based: one nnU-Net label per release label. Region-based: one region per training
        region, as lists of nnU-Net labels; ``regions_class_order`` gives, for each region, the nnU-Net
        label that voxels inside it (and inside no later region) receive when regions become labels.
        """
        if not regions:
            by_nnunet = sorted(self.labels, key=lambda label: label.nnunet)
            return {"background": 0, **{label.name: label.nnunet for label in by_nnunet}}, None
        entries: dict[str, int | list[int]] = {"background": 0}
        order: list[int] = []
        for region in self.training_regions:
            entries[region.name] = sorted(self.to_nnunet[v] for v in region.labels)
            order.append(self._region_class(region))
        return entries, order

    def _region_class(self, region: Region) -> int:
        """The nnU-Net label a region paints: the label in it that no later training region holds."""
        later = self.training_regions[self.training_regions.index(region) + 1:]
        owned = [v for v in region.labels if not any(v in r.labels for r in later)]
        if len(owned) != 1:
            raise ValueError(f"BraTS {self.key}: region {region.abbreviation} does not own one label")
        return self.to_nnunet[owned[0]]


def _regions(wt: tuple[int, ...], tc: tuple[int, ...], et: tuple[int, ...]) -> tuple[Region, ...]:
    return (
        Region("whole tumor", "WT", wt),
        Region("tumor core", "TC", tc),
        Region("enhancing tumor", "ET", et),
    )


_LEGACY_LABELS = (
    Label(1, "necrotic and non-enhancing tumor core", "NCR/NET", "necrosis", 2),
    Label(2, "peritumoral edema", "ED", "edema", 1),
    Label(4, "enhancing tumor", "ET", "enhancing", 3),
)
_LEGACY_TOKENS = {"T1": "t1", "T1Gd": "t1ce", "T2": "t2", "FLAIR": "flair", SEGMENTATION: "seg"}
_LEGACY_REGIONS = _regions((1, 2, 4), (1, 4), (4,))

_2023_LABELS = (
    Label(1, "non-enhancing tumor core", "NETC", "necrosis", 2),
    Label(2, "surrounding non-enhancing FLAIR hyperintensity", "SNFH", "edema", 1),
    Label(3, "enhancing tumor", "ET", "enhancing", 3),
)
_2023_TOKENS = {"T1": "t1n", "T1Gd": "t1c", "T2": "t2w", "FLAIR": "t2f", SEGMENTATION: "seg"}
_2023_REGIONS = _regions((1, 2, 3), (1, 3), (3,))


#: Lesion-wise settings of each BraTS 2023 sub-challenge (rachitsaluja/BraTS-2023-Metrics,
#: ``get_challenge_parameters``). The 2024 releases reuse their 2023 counterpart's settings here; the
#: official 2024 scripts differ (e.g. 2024 GLI: threshold 20, 10 for ET, lesions merged across tissues).
_LESIONWISE_2023 = {
    "GLI": LesionwiseParameters(dilation_voxels=3, volume_threshold_mm3=50.0),
    "SSA": LesionwiseParameters(dilation_voxels=3, volume_threshold_mm3=50.0),
    "MEN": LesionwiseParameters(dilation_voxels=1, volume_threshold_mm3=50.0),
    "MET": LesionwiseParameters(dilation_voxels=1, volume_threshold_mm3=2.0),
    "PED": LesionwiseParameters(dilation_voxels=3, volume_threshold_mm3=50.0),
}


def _release_2023(sub: str, title: str) -> Release:
    return Release(
        key=f"2023-{sub}",
        title=f"BraTS 2023 {title}",
        case_id_pattern=rf"BraTS-{sub}-\d{{5}}-\d{{3}}",
        file_tokens=_2023_TOKENS,
        labels=_2023_LABELS,
        regions=_2023_REGIONS,
        file_separator="-",
        case_id_format=f"BraTS-{sub}-{{index:05d}}-000",
        lesionwise=_LESIONWISE_2023[sub],
    )


RELEASES: dict[str, Release] = {
    release.key: release
    for release in (
        Release("2018", "BraTS 2018", r"Brats18_[A-Za-z0-9]+_[A-Za-z0-9]+_\d+", _LEGACY_TOKENS,
                _LEGACY_LABELS, _LEGACY_REGIONS, layout_subfolders=("HGG", "LGG"),
                case_id_format="Brats18_SYN_{index:03d}_1"),
        Release("2019", "BraTS 2019", r"BraTS19_[A-Za-z0-9]+_[A-Za-z0-9]+_\d+", _LEGACY_TOKENS,
                _LEGACY_LABELS, _LEGACY_REGIONS, layout_subfolders=("HGG", "LGG"),
                case_id_format="BraTS19_SYN_{index:03d}_1"),
        Release("2020", "BraTS 2020", r"BraTS20_(Training|Validation)_\d{3}", _LEGACY_TOKENS,
                _LEGACY_LABELS, _LEGACY_REGIONS, case_id_format="BraTS20_Training_{index:03d}",
                file_ending=".nii"),
        Release("2021", "BraTS 2021 (RSNA-ASNR-MICCAI)", r"BraTS2021_\d{5}", _LEGACY_TOKENS,
                _LEGACY_LABELS, _LEGACY_REGIONS, case_id_format="BraTS2021_{index:05d}"),
        _release_2023("GLI", "adult glioma"),
        _release_2023("SSA", "Sub-Saharan Africa glioma"),
        _release_2023("MEN", "meningioma"),
        _release_2023("MET", "brain metastases"),
        _release_2023("PED", "paediatric tumours"),
        Release(
            "2024-GLI", "BraTS 2024 post-treatment adult glioma", r"BraTS-GLI-\d{5}-\d{3}", _2023_TOKENS,
            _2023_LABELS + (Label(4, "resection cavity", "RC", "cavity", 4),),
            _2023_REGIONS,
            extra_training_regions=(Region("resection cavity", "RC", (4,)),),
            file_separator="-", case_id_format="BraTS-GLI-{index:05d}-000",
            lesionwise=_LESIONWISE_2023["GLI"],
        ),
        Release(
            "2024-PED", "BraTS 2024 paediatric tumours", r"BraTS-PED-\d{5}-\d{3}", _2023_TOKENS,
            (
                Label(1, "enhancing tumor", "ET", "enhancing", 4),
                Label(2, "non-enhancing tumor core", "NETC", "necrosis", 2),
                Label(3, "cystic component", "CC", "cyst", 3),
                Label(4, "peritumoral edema", "ED", "edema", 1),
            ),
            _regions((1, 2, 3, 4), (1, 2, 3), (1,)),
            extra_training_regions=(Region("cystic component", "CC", (3,)),),
            file_separator="-", case_id_format="BraTS-PED-{index:05d}-000",
            lesionwise=_LESIONWISE_2023["PED"],
        ),
    )
}

#: Releases we know of but cannot convert, with the reason given to the user.
UNSUPPORTED: dict[str, tuple[str, str]] = {
    # key: (case-id pattern, reason)
    "2024-MEN-RT": (r"BraTS-MEN-RT-\d{4}-\d+",
                    "BraTS 2024 MEN-RT ships a T1Gd image only (one gross tumour volume label), "
                    "not the four sequences this plugin segments from"),
}

#: The release assumed where nothing tells (a model without a "brats" block, a mask whose ids and labels
#: fit several releases): BraTS 2018-2022's labels, the commonest in use.
DEFAULT_RELEASE = "2021"

#: Keys accepted for ``--release`` / ``--labels`` besides the table's own keys.
ALIASES: dict[str, str] = {
    "2017": "2021",  # same labels and regions as 2018-2021 (label 3 was merged into 1 in 2017)
    "2022": "2021",  # BraTS 2022 reused the 2021 data and conventions
    "2023": "2023-GLI",
    "2024": "2024-GLI",
}


def release_keys() -> list[str]:
    """Every key :func:`get_release` accepts, table keys first."""
    return list(RELEASES) + list(ALIASES)


def get_release(key: str) -> Release:
    """The release for a key such as ``"2021"`` or ``"2023-MET"`` (case-insensitive).

    Raises :class:`BratsInputError` for an unknown or unsupported release.
    """
    wanted = key.strip().upper()
    for candidate in (wanted, ALIASES.get(wanted, "")):
        for release in RELEASES.values():
            if release.key.upper() == candidate:
                return release
    if wanted in UNSUPPORTED:
        raise BratsInputError(f"release {key}: not supported: {UNSUPPORTED[wanted][1]}")
    raise BratsInputError(f"release {key!r} is unknown; choose one of {', '.join(release_keys())}")


def releases_matching_case_id(case_id: str) -> list[Release]:
    """The releases whose case-id pattern matches ``case_id`` (several for shared namings).

    Raises :class:`BratsInputError` when the case id belongs to an unsupported release.
    """
    for key, (pattern, reason) in UNSUPPORTED.items():
        if re.fullmatch(pattern, case_id):
            raise BratsInputError(f"{case_id}: release {key} is not supported: {reason}")
    return [r for r in RELEASES.values() if re.fullmatch(r.case_id_pattern, case_id)]
