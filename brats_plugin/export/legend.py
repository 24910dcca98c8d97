"""How each tumour label looks to people: one colour per tissue, shared by the viewer, the montages
and the DICOM exports, so that a label has the same colour everywhere.

Colours follow the habit of BraTS figures: necrotic core red, edema green, enhancing tumour yellow.
"""
from __future__ import annotations

from dataclasses import dataclass

from brats_plugin.releases import Release
from brats_plugin.volumes import Volumes

#: Display colour (sRGB, 0-255) of each tissue kind of :attr:`brats_plugin.releases.Label.tissue`.
TISSUE_COLOURS: dict[str, tuple[int, int, int]] = {
    "necrosis": (230, 40, 40),
    "edema": (40, 200, 60),
    "enhancing": (250, 220, 30),
    "cavity": (60, 140, 255),
    "cyst": (190, 80, 230),
}


@dataclass(frozen=True)
class LegendEntry:
    """One label of a segmentation as shown to people."""

    value: int  # the release's label value in the mask
    name: str
    abbreviation: str
    colour: tuple[int, int, int]
    volume_ml: float | None = None

    @property
    def hex_colour(self) -> str:
        """``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.colour)


def legend(release: Release, volumes: Volumes | None = None) -> list[LegendEntry]:
    """The release's labels in its own order, with colours and (if given) volumes."""
    return [LegendEntry(label.value, label.name, label.abbreviation, TISSUE_COLOURS[label.tissue],
                        volumes.labels.get(label.value) if volumes else None)
            for label in release.labels]


def colour_table(release: Release) -> list[tuple[int, int, int]]:
    """256 RGB colours indexed by label value (black where the release has no label)."""
    table = [(0, 0, 0)] * 256
    for entry in legend(release):
        table[entry.value] = entry.colour
    return table
