"""The HTML slice viewer of a case: static assets plus a data payload, inlined into one file or served.

The viewer has two parts, so that the web app shows cases with the very same code:

- static assets in :data:`VIEWER_ASSETS`: ``viewer.js`` (a hand-written canvas viewer without
  dependencies), ``viewer.css``, and ``viewer.html``, the template of the self-contained file;
- a payload built from a case by :func:`viewer_payload` (format below).

:func:`viewer_html` and :func:`write_viewer` inline both into one HTML file that opens from ``file://``
in any modern browser without network. The app serves :data:`SERVED_ASSETS` from :data:`VIEWER_ASSETS`
and hands the same JavaScript the payload from a URL::

    <link rel="stylesheet" href="/static/viewer.css">
    <div id="viewer"></div>
    <script src="/static/viewer.js"></script>
    <script>BratsViewer.mount(document.getElementById("viewer"), {url: "/cases/42/viewer"});</script>

``BratsViewer.mount(element, source)`` replaces the element's content with the viewer and returns a
Promise. ``source`` is ``{base64: "..."}`` (what the self-contained file passes), ``{url: "..."}`` or
just the URL string (fetched; serve it as :data:`PAYLOAD_MEDIA_TYPE` *without* a ``Content-Encoding``
header: the page decompresses it itself), or ``{bytes: ArrayBuffer | Uint8Array}``. To write both the
self-contained file and a served payload, compute :func:`~brats_plugin.export.images.display_volume`
once and pass it to both (every function here takes a case or its display volume).

Payload format (version :data:`PAYLOAD_VERSION`), gzip-compressed as a whole (the browser's built-in
``DecompressionStream("gzip")`` opens it)::

    4 bytes   b"BRVW"
    4 bytes   format version, uint32 little-endian
    4 bytes   length N of the metadata, uint32 little-endian
    N bytes   metadata: UTF-8 JSON, see :func:`viewer_metadata`
    then      the volumes listed in metadata["volumes"] at their offsets, each shape[0]*shape[1]*shape[2]
              bytes: uint8, C order (x, y, z) on the display grid of
              :mod:`brats_plugin.export.images` (RAS, cropped to the head), stored as
              differences along z modulo 256 (about a fifth smaller once compressed than the plain bytes)
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import struct
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from brats_plugin import files
from brats_plugin.export.case import ExportCase
from brats_plugin.export.images import AXIAL, PICTURE_SEQUENCE, VIEWS, DisplayVolume, as_display
from brats_plugin.export.legend import legend
from brats_plugin.releases import SEQUENCES

#: The folder of the viewer's static files.
VIEWER_ASSETS = Path(__file__).with_name("viewer_assets")
#: The files the app serves beside its own page (the template is for the self-contained file only).
SERVED_ASSETS = ("viewer.js", "viewer.css")
PAYLOAD_MAGIC = b"BRVW"
PAYLOAD_VERSION = 1
PAYLOAD_MEDIA_TYPE = "application/octet-stream"
#: zlib level of the payload: level 9 is three times slower for 1% less.
PAYLOAD_COMPRESS_LEVEL = 6
#: The name of the label volume in the payload, beside the sequence names.
LABELS_VOLUME = "labels"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def viewer_metadata(display: DisplayVolume) -> dict:
    """The payload's JSON part: everything the page shows besides the voxels.

    ``views`` give, for each view, its :class:`~brats_plugin.export.images.ScreenLayout`
    (how its pixels lie in the volumes), the anatomical direction at each side of the screen, the start
    slice (most tumour) and each slice's index in the case's files. ``sequences`` give the intensities
    that bytes 0 and 255 stand for. ``to_source`` maps display voxels to the files' voxels.
    """
    volume_bytes = int(np.prod(display.shape))
    names = [*SEQUENCES, LABELS_VOLUME]
    return {
        "case_id": display.case_id,
        "release": {"key": display.release.key, "title": display.release.title},
        "shape": list(display.shape),
        "spacing": list(display.spacing),
        "convention": "radiological",
        "source_axes": display.source_axes,
        "oblique": display.oblique,
        "to_source": display.to_source.tolist(),
        "sequences": [{"name": s, "low": display.intensity_ranges[s][0], "high": display.intensity_ranges[s][1]}
                      for s in SEQUENCES],
        "start_sequence": PICTURE_SEQUENCE,
        "start_view": AXIAL.name,
        "views": [{"name": view.name, **asdict(display.layout(view)), "sides": display.layout(view).sides(view),
                   "start": display.tumour_slice(view),
                   "file_slices": [display.source_slice(view, i) for i in range(display.shape[view.slice_axis])]}
                  for view in VIEWS],
        "legend": [{"value": e.value, "name": e.name, "abbreviation": e.abbreviation, "colour": e.hex_colour,
                    "volume_ml": e.volume_ml} for e in legend(display.release, display.volumes)],
        "regions": [{"abbreviation": r.abbreviation, "name": r.name,
                     "volume_ml": display.volumes.regions[r.abbreviation]} for r in display.release.regions],
        "volumes": [{"name": name, "offset": n * volume_bytes} for n, name in enumerate(names)],
    }


def viewer_payload(case: ExportCase | DisplayVolume) -> bytes:
    """The case's viewer data in the payload format of this module (gzip-compressed bytes)."""
    display = as_display(case)
    metadata = json.dumps(viewer_metadata(display), separators=(",", ":")).encode()
    packer = zlib.compressobj(PAYLOAD_COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: gzip wrapper, mtime 0
    parts = [packer.compress(PAYLOAD_MAGIC + struct.pack("<II", PAYLOAD_VERSION, len(metadata)) + metadata)]
    for volume in [*(display.images[s] for s in SEQUENCES), display.labels]:
        parts.append(packer.compress(_differences_along_z(volume)))
    parts.append(packer.flush())
    return b"".join(parts)


def _differences_along_z(volume: np.ndarray) -> memoryview:
    """Each byte minus the one before it along the last axis, modulo 256 (the first kept), C order."""
    differences = np.array(volume, dtype=np.uint8, order="C")
    differences[..., 1:] -= volume[..., :-1]
    return memoryview(differences).cast("B")


def viewer_html(case: ExportCase | DisplayVolume) -> str:
    """The self-contained viewer page of a case: template, style, script and payload in one string."""
    display = as_display(case)
    values = {
        "title": html.escape(f"{display.case_id}: BraTS viewer"),
        "style": _asset("viewer.css"),
        "script": _asset("viewer.js"),
        "payload": base64.b64encode(viewer_payload(display)).decode("ascii"),
    }
    # one pass, so that nothing inserted is searched for placeholders again
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], _asset("viewer.html"))


def write_viewer(case: ExportCase | DisplayVolume, path: str | os.PathLike) -> Path:
    """Write the self-contained viewer page of a case to ``path`` atomically; return ``path``."""
    files.write_bytes_atomic(viewer_html(case).encode("utf-8"), path)
    return Path(path)


def _asset(name: str) -> str:
    return (VIEWER_ASSETS / name).read_text(encoding="utf-8")
