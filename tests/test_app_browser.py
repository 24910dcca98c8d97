"""The app in a real browser: the home page shows the preview, a case is uploaded through the form,
and the job page shows it with the tumour overlay and its downloads."""
from __future__ import annotations

import pytest
from app_support import JOB_TIMEOUT, serving
from browser_support import canvas_pixels, console_errors, drawn_canvas, tinted
from conftest import SMALL_SHAPE
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from brats_plugin import find_case, write_synthetic_release
from brats_plugin.app.service import build_app
from brats_plugin.inference import Segmenter
from brats_plugin.releases import SEQUENCES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2 * JOB_TIMEOUT)]


def test_upload_through_the_page_and_see_the_overlay(browser, trained_models, tmp_path):
    case = find_case(write_synthetic_release(tmp_path / "cases", "2023-MET", 1, shape=SMALL_SHAPE, seed=12,
                                             with_segmentation=False)[0])
    segmenter = Segmenter(trained_models["labels"], device="cpu", mirroring=False)  # masks with every label
    with serving(build_app(segmenter, tmp_path / "data")) as url:
        browser.get(f"{url}/")
        WebDriverWait(browser, JOB_TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview .brv-canvas"))
        assert tinted(canvas_pixels(drawn_canvas(browser))).sum() > 20  # the preview, segmented

        browser.find_element(By.ID, "files").send_keys("\n".join(str(case.sequences[s]) for s in SEQUENCES))
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "select.sequence")) == 4)
        chosen = [Select(s).first_selected_option.text for s in browser.find_elements(By.CSS_SELECTOR,
                                                                                       "select.sequence")]
        assert sorted(chosen) == sorted(SEQUENCES)  # recognised from the names, shown for correction
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 30).until(lambda d: "/jobs/" in d.current_url)
        WebDriverWait(browser, JOB_TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".brv-canvas, .error"))
        assert not browser.find_element(By.ID, "job-error").text
        canvas = drawn_canvas(browser)
        assert tinted(canvas_pixels(canvas)).sum() > 20  # label colours drawn on the uploaded case
        links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
        assert sorted(links) == ["dicom.zip", "mask.nii.gz", "montage.png", "viewer.html"]
        assert case.case_id in browser.find_element(By.ID, "job-title").text
        assert console_errors(browser) == []
