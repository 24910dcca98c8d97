"""The web app with a scanner study: a DICOM zip uploaded, its series shown for correction when they
cannot be chosen, preprocessed, segmented, and shown on the study's own T1Gd (API and real browser)."""
from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from app_support import JOB_TIMEOUT, LOCAL, serving, wait_done
from browser_support import canvas_pixels, console_errors, drawn_canvas, tinted
from scanner_support import make_phantom, write_phantom_study
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from starlette.testclient import TestClient

from brats_plugin.app.service import build_app
from brats_plugin.inference import Segmenter
from brats_plugin.preprocess.scanner_study import default_specs
from brats_plugin.releases import get_release

pytestmark = [pytest.mark.integration, pytest.mark.timeout(4 * JOB_TIMEOUT)]


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict:
    """A phantom's atlas and study zips: complete, with two T1Gd candidates, without FLAIR, CT only."""
    root = tmp_path_factory.mktemp("app-studies")
    phantom = make_phantom(root)
    specs = default_specs()
    t1c = next(s for s in specs if s.sequence == "T1Gd")
    variants = {"complete": specs, "two_t1gd": specs + [replace(t1c, description="t1_vibe_post_tra")],
                "no_flair": [s for s in specs if s.sequence != "FLAIR"]}
    zips = {}
    for name, chosen in variants.items():
        write_phantom_study(phantom, root / "folders" / name, specs=chosen)
        zips[name] = Path(shutil.make_archive(str(root / f"{name}_upload"), "zip", root / "folders" / name))
    from pydicom import examples
    buffer = io.BytesIO()
    examples.ct.save_as(buffer)
    with zipfile.ZipFile(root / "ct_upload.zip", "w") as archive:
        archive.writestr("IMG0001", buffer.getvalue())
    zips["ct"] = root / "ct_upload.zip"
    with zipfile.ZipFile(root / "text_upload.zip", "w") as archive:
        archive.writestr("README.txt", "no images")
    zips["text"] = root / "text_upload.zip"
    return {"atlas": phantom[1], "zips": zips, "folders": root / "folders"}


@pytest.fixture(scope="module")
def segmenter(trained_models):
    """Initial weights of a region model: its masks hold every label somewhere."""
    return Segmenter(trained_models["regions_stock"], device="cpu", mirroring=False, tiling="whole")


def _upload(client, path: Path, **fields):
    return client.post("/api/jobs", files=[("files", (path.name, path.read_bytes(), "application/zip"))],
                       data=fields)


def test_a_study_zip_is_segmented_and_returned_on_its_own_t1gd(studies, segmenter, tmp_path):
    with TestClient(base_url=LOCAL, app=build_app(segmenter, tmp_path / "data", atlas=studies["atlas"])) as client:
        answer = _upload(client, studies["zips"]["complete"], case_id="patient7")
        assert answer.status_code == 202, answer.text
        status = wait_done(client, answer.json()["id"])
        assert status["state"] == "done", status
        assert status["space"] == "native T1Gd" and status["case_id"] == "patient7"
        assert any("approximate" in note for note in status["notes"])  # no brain extraction was given
        assert set(status["downloads"]) == {"mask.nii.gz", "native.nii.gz", "dicom.zip", "viewer.html",
                                            "montage.png", "viewer-data"}
        native_t1c = nib.load(next((tmp_path / "data").rglob("native_t1ce.nii.gz")))
        native = nib.Nifti1Image.from_bytes(gzip.decompress(client.get(status["downloads"]["native.nii.gz"]).content))
        assert native.shape == native_t1c.shape and np.allclose(native.affine, native_t1c.affine)
        whole = next(r for r in get_release(status["release"]).regions if r.abbreviation == "WT")
        voxel_ml = abs(np.linalg.det(native.affine[:3, :3])) / 1000
        assert status["volumes"]["regions"]["WT"]["mL"] == pytest.approx(
            np.isin(np.asarray(native.dataobj), whole.labels).sum() * voxel_ml, rel=1e-6)  # the clinical figure
        with zipfile.ZipFile(io.BytesIO(client.get(status["downloads"]["dicom.zip"]).content)) as archive:
            assert sorted(archive.namelist()) == ["SEG/seg.dcm", "SR/sr.dcm"]
            seg = pydicom.dcmread(io.BytesIO(archive.read("SEG/seg.dcm")))
        with zipfile.ZipFile(studies["zips"]["complete"]) as upload:
            first = next(name for name in upload.namelist() if name.endswith(".dcm"))
            study_uid = pydicom.dcmread(io.BytesIO(upload.read(first)), stop_before_pixels=True).StudyInstanceUID
        assert seg.StudyInstanceUID == study_uid  # back into the patient's own study


@pytest.mark.parametrize("name, message, why", [
    ("two_t1gd", "2 T1Gd series", None),
    ("no_flair", "no FLAIR series", None),
    ("ct", "no T1 series", "not MR (CT)"),
])
def test_a_study_whose_series_cannot_be_chosen_is_answered_with_its_series(studies, segmenter, tmp_path, name,
                                                                           message, why):
    with TestClient(base_url=LOCAL, app=build_app(segmenter, tmp_path / "data", atlas=studies["atlas"])) as client:
        answer = _upload(client, studies["zips"][name])
        assert answer.status_code == 400
        body = answer.json()
        assert message in body["error"] and body["choices"] == ["T1", "T1Gd", "T2", "FLAIR"]
        assert all({"uid", "number", "description", "images", "taken_as", "why"} <= set(row) for row in body["series"])
        if why:
            assert any(row["why"] == why for row in body["series"])
        assert "--t1c" not in body["error"] and "choose them in the table" in body["error"]  # no CLI flags here
        if name == "two_t1gd":  # the user's choice settles it, once per series
            vibe = next(row for row in body["series"] if row["description"] == "t1_vibe_post_tra")
            twice = _upload(client, studies["zips"][name], series_T1Gd=vibe["uid"], series_T1=vibe["uid"])
            assert twice.status_code == 400 and "chosen as both T1 and T1Gd" in twice.json()["error"]
            chosen = _upload(client, studies["zips"][name], series_T1Gd=vibe["uid"])
            assert chosen.status_code == 202, chosen.text


def test_a_zip_without_dicom_images_names_the_upload(studies, segmenter, tmp_path):
    with TestClient(base_url=LOCAL, app=build_app(segmenter, tmp_path / "data", atlas=studies["atlas"])) as client:
        answer = _upload(client, studies["zips"]["text"])
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error.startswith("text_upload.zip") and "no DICOM files found" in error
        assert str(tmp_path) not in error  # never our folders


def test_oversized_and_damaged_study_zips_are_answered_in_one_line(studies, segmenter, tmp_path, monkeypatch):
    from brats_plugin.preprocess import series
    with TestClient(base_url=LOCAL, app=build_app(segmenter, tmp_path / "data", atlas=studies["atlas"])) as client:
        monkeypatch.setattr(series, "MAX_MEMBERS", 50)  # a zip of more files than a study holds: refused at once
        answer = _upload(client, studies["zips"]["complete"])
        assert answer.status_code == 400 and "more than the 50 of a study" in answer.json()["error"]
        monkeypatch.undo()

        damaged = tmp_path / "damaged_upload.zip"  # one T1Gd image's pixels broken: found when they are read
        data = bytearray(studies["zips"]["complete"].read_bytes())
        with zipfile.ZipFile(studies["zips"]["complete"]) as archive:
            t1c = [m for m in archive.infolist() if m.filename.endswith(".dcm") and pydicom.dcmread(
                io.BytesIO(archive.read(m)), stop_before_pixels=True).SeriesDescription == "t1_mprage_sag_post"]
        member = t1c[len(t1c) // 2]
        end = member.header_offset + 30 + len(member.filename.encode()) + member.compress_size
        data[end - 64:end - 32] = bytes(32)
        damaged.write_bytes(bytes(data))
        answer = _upload(client, damaged)
        assert answer.status_code == 202, answer.text
        status = wait_done(client, answer.json()["id"])
        assert status["state"] == "failed" and "damaged_upload.zip" in status["error"]
        assert "cannot read" in status["error"] and str(tmp_path) not in status["error"]  # never our folders


#: A drop event as Chromium makes it for a dragged folder: entries (files and folders) to walk.
DROP_A_FOLDER = """
const file = (name, text) => ({isFile: true, isDirectory: false, name,
                               file: (ok) => ok(new File([text], name))});
const folder = (name, children) => {
  let given = false;
  return {isFile: false, isDirectory: true, name, createReader: () => ({
    readEntries: (ok) => { ok(given ? [] : children); given = true; }})};
};
const tree = folder("dropped", [file("a.dcm", "first"), folder("sub", [file("b.dcm", "second")])]);
const drop = new Event("drop", {bubbles: true, cancelable: true});
Object.defineProperty(drop, "dataTransfer", {value: {items: [{webkitGetAsEntry: () => tree}], files: []}});
document.getElementById("upload").dispatchEvent(drop);
"""


def test_the_page_lets_the_user_choose_the_series_and_shows_the_native_overlay(studies, segmenter, browser,
                                                                             tmp_path):
    with serving(build_app(segmenter, tmp_path / "data", atlas=studies["atlas"])) as url:
        browser.get(f"{url}/")
        # a dropped folder is packed in the page: two files below "dropped", one in a subfolder
        browser.execute_script(DROP_A_FOLDER)
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "upload-status").text.startswith("folder"))
        assert browser.find_element(By.ID, "upload-status").text == "folder dropped: 2 files, sent as dropped.zip"
        assert browser.find_element(By.CSS_SELECTOR, "#file-table td").text == "dropped.zip"
        # the study's folder, chosen whole (the page packs it into one zip, read by the server's zip path)
        browser.find_element(By.ID, "folder").send_keys(str(studies["folders"] / "two_t1gd"))
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element(By.ID, "upload-status").text.endswith("sent as two_t1gd.zip"))
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "series-table").is_displayed())
        assert "2 T1Gd series" in browser.find_element(By.ID, "upload-error").text
        rows = browser.find_elements(By.CSS_SELECTOR, "#series-table tbody tr")
        cells = {row.find_elements(By.TAG_NAME, "td")[1].text: row for row in rows}
        taken = {name: Select(row.find_element(By.CSS_SELECTOR, "select.taken-as")) for name, row in cells.items()}
        for candidate in ("t1_mprage_sag_post", "t1_vibe_post_tra"):  # neither taken: the user chooses
            assert taken[candidate].first_selected_option.text == "not used"
            assert "choose one" in cells[candidate].find_elements(By.TAG_NAME, "td")[4].text
            taken[candidate].select_by_visible_text("T1Gd")
        browser.find_element(By.ID, "submit").click()  # two series taken as T1Gd: refused in the page
        assert "several series are taken as T1Gd" in browser.find_element(By.ID, "upload-error").text
        taken["t1_vibe_post_tra"].select_by_visible_text("not used")
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 60).until(lambda d: "/jobs/" in d.current_url)
        WebDriverWait(browser, 2 * JOB_TIMEOUT).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".brv-canvas") or d.find_element(By.ID, "job-error").text)
        assert not browser.find_element(By.ID, "job-error").text
        assert "study's own T1Gd" in browser.find_element(By.ID, "job-about").text
        assert tinted(canvas_pixels(drawn_canvas(browser))).sum() > 20  # the labels drawn on the native T1Gd
        links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
        assert sorted(links) == ["dicom.zip", "mask.nii.gz", "montage.png", "native.nii.gz", "viewer.html"]
        refused = [e for e in console_errors(browser) if "/api/jobs - Failed to load resource" in e and "400" in e]
        assert len(refused) == 1  # the first submit, answered with the series table
        assert [e for e in console_errors(browser) if e not in refused] == []
