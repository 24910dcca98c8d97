"""The HTML viewer: its payload, its self-contained page, and the page in a real (headless) Chromium.

The browser tests open the written file from ``file://`` (and, as the app will, the served assets with
the payload fetched from a loopback HTTP server), take screenshots of the canvas and compare them with
the label map cut by the Python display code.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import re
import shutil
import struct
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from browser_support import canvas_pixels, console_errors, open_page, tinted
from conftest import SAMPLE_CASE
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.mouse_button import MouseButton
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from brats_plugin import find_case, write_synthetic_release
from brats_plugin.export import load_export_case
from brats_plugin.export.images import AXIAL, VIEWS, display_volume, screen_slice
from brats_plugin.export.legend import legend
from brats_plugin.export.viewer import (
    LABELS_VOLUME,
    PAYLOAD_MAGIC,
    PAYLOAD_VERSION,
    SERVED_ASSETS,
    VIEWER_ASSETS,
    viewer_html,
    viewer_payload,
    write_viewer,
)
from brats_plugin.releases import SEQUENCES
from brats_plugin.volumes import measure_volumes

pytestmark = pytest.mark.timeout(240)



@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small phantom on an anisotropic grid (0.9 x 1.0 x 2.0 mm), so proportions show in the pictures."""
    folder = write_synthetic_release(tmp_path_factory.mktemp("viewer-case"), "2021", 1, shape=(44, 48, 30),
                                     spacing=(0.9, 1.0, 2.0), seed=11)[0]
    found = find_case(folder)
    return load_export_case(found, found.segmentation, "2021")


def without_tumour(case):
    labels = np.zeros_like(case.labels)
    return dataclasses.replace(case, labels=labels, volumes=measure_volumes(labels, case.release, case.affine))


def decode_payload(payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The payload read back by the format its module documents (an independent reader)."""
    raw = gzip.decompress(payload)
    assert raw[:4] == PAYLOAD_MAGIC
    version, length = struct.unpack("<II", raw[4:12])
    assert version == PAYLOAD_VERSION
    metadata = json.loads(raw[12:12 + length])
    shape = tuple(metadata["shape"])
    size = int(np.prod(shape))
    volumes = {}
    for entry in metadata["volumes"]:
        differences = np.frombuffer(raw, np.uint8, size, 12 + length + entry["offset"]).reshape(shape)
        volumes[entry["name"]] = np.cumsum(differences, axis=2, dtype=np.uint8)  # uint8 sums wrap modulo 256
    assert 12 + length + len(metadata["volumes"]) * size == len(raw)
    return metadata, volumes


# ---- payload and page -------------------------------------------------------------------------------

def test_payload_holds_the_display_volumes_and_what_the_page_shows(case):
    display = display_volume(case)
    metadata, volumes = decode_payload(viewer_payload(case))
    assert metadata["case_id"] == case.case_id and metadata["shape"] == list(display.shape)
    assert metadata["spacing"] == pytest.approx(display.spacing)
    for sequence in SEQUENCES:
        np.testing.assert_array_equal(volumes[sequence], display.images[sequence])
    np.testing.assert_array_equal(volumes[LABELS_VOLUME], display.labels)
    assert [(s["name"], s["low"], s["high"]) for s in metadata["sequences"]] == [
        (s, *display.intensity_ranges[s]) for s in SEQUENCES]
    assert [(e["value"], e["colour"], e["volume_ml"]) for e in metadata["legend"]] == [
        (e.value, e.hex_colour, e.volume_ml) for e in legend(case.release, case.volumes)]
    assert {r["abbreviation"]: r["volume_ml"] for r in metadata["regions"]} == case.volumes.regions
    assert [v["start"] for v in metadata["views"]] == [display.tumour_slice(view) for view in VIEWS]


def test_payload_view_numbers_cut_the_same_slices_as_python(case):
    """The page cuts slices with the payload's numbers: they must give screen_slice's pixels."""
    metadata, volumes = decode_payload(viewer_payload(case))
    flat = volumes[LABELS_VOLUME].ravel()
    for view, numbers in zip(VIEWS, metadata["views"]):
        for index in (0, numbers["start"], numbers["slices"] - 1):
            rows = np.arange(numbers["rows"])[:, None] * numbers["row_step"]
            columns = np.arange(numbers["columns"])[None, :] * numbers["column_step"]
            cut = flat[numbers["first"] + index * numbers["slice_step"] + rows + columns]
            np.testing.assert_array_equal(cut, screen_slice(volumes[LABELS_VOLUME], view, index))


def test_page_is_self_contained(case, tmp_path):
    page = viewer_html(case)
    assert "{{" not in page and not re.search(r"(src|href)\s*=", page)
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    for asset in SERVED_ASSETS:
        text = (VIEWER_ASSETS / asset).read_text()
        assert "</script" not in text.lower() and "</style" not in text.lower()  # safe to inline
    path = write_viewer(case, tmp_path / "viewer.html")
    assert path.read_text(encoding="utf-8") == page and [p.name for p in tmp_path.iterdir()] == ["viewer.html"]


# ---- in the browser ---------------------------------------------------------------------------------

def control(browser, selector: str):
    return browser.find_element(By.CSS_SELECTOR, selector)


def slice_index(browser) -> int:
    return int(control(browser, ".brv-slice").get_attribute("value"))


def press(browser, keys: str) -> None:
    ActionChains(browser).send_keys(keys).perform()


def test_overlay_colours_lie_on_the_tumour_in_every_view(browser, case, tmp_path):
    """With a white window and an opaque overlay, the canvas is the label map itself: compare it."""
    display = display_volume(case)
    canvas = open_page(browser, write_viewer(case, tmp_path / "viewer.html").as_uri())
    control(browser, ".brv-opacity").send_keys(Keys.END)  # opacity 100%
    control(browser, ".brv-window").send_keys(Keys.HOME)  # narrowest window...
    control(browser, ".brv-level").send_keys(Keys.HOME)   # ...below every intensity: the slice turns white
    colours = {entry.value: entry.colour for entry in legend(case.release)}
    for view in VIEWS:
        press(browser, view.name[0])
        assert slice_index(browser) == display.tumour_slice(view)
        pixels = canvas_pixels(canvas)
        shown = np.zeros(pixels.shape[:2], np.int16) - 1  # -1: not the image
        shown[np.all(pixels == 255, axis=-1)] = 0
        for value, colour in colours.items():
            shown[np.all(pixels == colour, axis=-1)] = value
        rows, columns = np.nonzero(shown >= 0)
        top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
        layout = display.layout(view)
        assert (right - left) / (bottom - top) == pytest.approx(
            layout.columns * layout.column_mm / (layout.rows * layout.row_mm), rel=0.03)
        centres_y = (top + (np.arange(layout.rows) + 0.5) * (bottom - top) / layout.rows).astype(int)
        centres_x = (left + (np.arange(layout.columns) + 0.5) * (right - left) / layout.columns).astype(int)
        sampled = shown[np.ix_(centres_y, centres_x)]
        expected = screen_slice(display.labels, view, display.tumour_slice(view))
        assert (expected > 0).sum() > 20
        assert np.mean(sampled == expected) > 0.99, view.name
    assert console_errors(browser) == []


def test_slice_sequence_overlay_and_window_controls_change_the_picture(browser, case, tmp_path):
    display = display_volume(case)
    canvas = open_page(browser, write_viewer(case, tmp_path / "viewer.html").as_uri())
    start = display.tumour_slice(AXIAL)
    first = canvas_pixels(canvas)
    assert tinted(first).sum() > 50

    press(browser, Keys.ARROW_UP)
    assert slice_index(browser) == start + 1
    after_key = canvas_pixels(canvas)
    assert not np.array_equal(after_key, first)
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, 120).perform()
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, 120).perform()
    assert slice_index(browser) == start - 1  # wheel towards the user: back through the slices
    assert not np.array_equal(canvas_pixels(canvas), after_key)
    press(browser, Keys.ARROW_DOWN + Keys.ARROW_UP + Keys.ARROW_UP)
    assert slice_index(browser) == start and np.array_equal(canvas_pixels(canvas), first)

    pictures = {}
    for n, sequence in enumerate(SEQUENCES, start=1):
        press(browser, str(n))
        button = control(browser, f'button[data-sequence="{sequence}"]')
        assert button.get_attribute("aria-pressed") == "true"
        pictures[sequence] = canvas_pixels(canvas)
    assert len({p.tobytes() for p in pictures.values()}) == len(SEQUENCES)
    control(browser, 'button[data-sequence="T2"]').click()
    assert np.array_equal(canvas_pixels(canvas), pictures["T2"])

    press(browser, "o")
    assert not control(browser, ".brv-overlay").is_selected() and tinted(canvas_pixels(canvas)).sum() == 0
    press(browser, "o")
    assert tinted(canvas_pixels(canvas)).sum() > 50

    window_text = control(browser, ".brv-window + .brv-number").text
    drag = ActionBuilder(browser)
    drag.pointer_action.move_to(canvas).pointer_down(MouseButton.RIGHT).move_by(-80, 40) \
        .pointer_up(MouseButton.RIGHT)
    drag.perform()
    assert control(browser, ".brv-window + .brv-number").text != window_text
    assert not np.array_equal(canvas_pixels(canvas), pictures["T2"])
    press(browser, "r")
    assert control(browser, ".brv-window + .brv-number").text == window_text
    assert np.array_equal(canvas_pixels(canvas), pictures["T2"])
    assert console_errors(browser) == []


def test_hovering_names_the_files_voxel_and_its_label(browser, case, tmp_path):
    canvas = open_page(browser, write_viewer(case, tmp_path / "viewer.html").as_uri())
    pixels = canvas_pixels(canvas)
    rows, columns = np.nonzero(tinted(pixels))
    middle = len(rows) // 2
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(columns[middle]) - pixels.shape[1] // 2, int(rows[middle]) - pixels.shape[0] // 2).perform()
    readout = control(browser, ".brv-readout").text
    found = re.match(r"voxel \((\d+), (\d+), (\d+)\) · FLAIR ≈ [\d.]+ · (\S+) ", readout)
    assert found, readout
    value = case.labels[tuple(int(v) for v in found.groups()[:3])]
    assert case.release.label(int(value)).abbreviation == found.group(4)


def test_an_empty_mask_starts_in_the_middle_without_colours(browser, case, tmp_path):
    empty = without_tumour(case)
    canvas = open_page(browser, write_viewer(empty, tmp_path / "viewer.html").as_uri())
    assert slice_index(browser) == display_volume(empty).shape[AXIAL.slice_axis] // 2
    pixels = canvas_pixels(canvas)
    assert tinted(pixels).sum() == 0 and pixels.max() > 100
    legend_text = control(browser, ".brv-legend").text
    assert all(f"{entry.abbreviation}" in legend_text for entry in legend(case.release))
    assert "0.0 mL" in legend_text


@pytest.mark.parametrize("source", ['{url: "case.payload"}', '"case.payload"'])
def test_the_app_can_serve_the_assets_and_the_payload(browser, case, tmp_path, source):
    """The app's way: its own page, the assets served as files, the payload fetched from a URL."""
    for asset in SERVED_ASSETS:
        shutil.copy(VIEWER_ASSETS / asset, tmp_path / asset)
    (tmp_path / "case.payload").write_bytes(viewer_payload(case))
    (tmp_path / "index.html").write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="stylesheet" href="viewer.css"></head>'
        '<body><div id="here"></div><script src="viewer.js"></script><script>'
        f'BratsViewer.mount(document.getElementById("here"), {source});</script></body></html>')

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        canvas = open_page(browser, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert slice_index(browser) == display_volume(case).tumour_slice(AXIAL)
        assert tinted(canvas_pixels(canvas)).sum() > 50
        assert console_errors(browser) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_real_case_opens(browser, tmp_path):
    """A real 240x240x155 case: a file of a few MB (the head only, 8 bits, compressed) that renders."""
    sample = find_case(SAMPLE_CASE)
    case = load_export_case(sample, sample.segmentation, "2021")
    path = write_viewer(case, tmp_path / "viewer.html")
    canvas = open_page(browser, path.as_uri())
    assert path.stat().st_size / 1e6 < 8
    assert slice_index(browser) == display_volume(case).tumour_slice(AXIAL)
    assert tinted(canvas_pixels(canvas)).sum() > 500
    assert console_errors(browser) == []
