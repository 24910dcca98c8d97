"""A real headless Chromium for the viewer and app tests, and what they read off its pages."""
from __future__ import annotations

import io
import shutil

import numpy as np
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WAIT_SECONDS = 30


def start_chromium():
    """A headless Chromium driven by chromedriver (Debian's packages; root needs --no-sandbox)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "needs Debian's chromium and chromium-driver (make system-packages)"
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    return driver


def open_page(browser, url: str):
    """Load a viewer page; return its canvas once drawn (a failure message on the page fails the test)."""
    browser.get(url)
    return drawn_canvas(browser)


def drawn_canvas(browser):
    """The viewer's canvas once drawn on the current page (a failure message on the page fails the test)."""
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".brv-canvas, .brv-error"))
    errors = browser.find_elements(By.CSS_SELECTOR, ".brv-error")
    assert not errors, errors[0].text
    return browser.find_element(By.CSS_SELECTOR, ".brv-canvas")


def console_errors(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and "favicon" not in entry["message"]]


def canvas_pixels(canvas) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(int)


def tinted(pixels: np.ndarray) -> np.ndarray:
    """Where label colours (red, green, yellow, pure or blended with grey) show; not greys, not blue letters."""
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    return (spread > 30) & (pixels[..., 2] < pixels[..., :2].max(axis=-1))
