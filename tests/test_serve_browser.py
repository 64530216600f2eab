"""The `jaxstyle serve` page in a real browser: Debian's headless Chromium driven by Selenium.

A real server process on 127.0.0.1 (tiny weights from the ``tiny_weights`` fixture), the
page's own file inputs, Start button, live preview and download link. The browser is the
system one (/usr/bin/chromium + /usr/bin/chromedriver from apt), never one Selenium fetches:
without them the test skips. Marked slow: a server start, a browser start and a compile.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import write_image, start_server
from PIL import Image

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"needs Debian's {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The page draws the preview <img> into a canvas: the pixels the browser actually shows.
# Returns [job status shown, preview src, pixels as a PNG data URL], read in one go.
SHOWN_PIXELS = """
const img = document.getElementById('preview');
if (!img.getAttribute('src') || !img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
c.getContext('2d').drawImage(img, 0, 0);
return [document.getElementById('job-status').textContent, img.src, c.toDataURL('image/png')];
"""


def chromium(tmp_path: Path, downloads: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1000,1400"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False,
                                           "safebrowsing.enabled": False})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def decode_data_url(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.mark.slow
def test_page_uploads_runs_previews_and_downloads(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
    content = write_image(tmp_path / "content.png", 48, 64, 1)  # h × w; at size 32 → 24 × 32
    style = write_image(tmp_path / "style.png", 40, 40, 2)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    proc, url, server_log = start_server(tmp_path / "serve", tiny_weights)
    driver = None
    try:
        driver = chromium(tmp_path, downloads)
        # Downloads in headless Chromium go where the DevTools protocol says (prefs alone are not
        # honoured by every headless mode).
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get(url + "/")
        assert driver.title == "jaxstyle serve"
        driver.find_element(By.ID, "content").send_keys(str(content))
        driver.find_element(By.ID, "style").send_keys(str(style))
        # The thumbnails show the picked files: the page really read them.
        wait = WebDriverWait(driver, 30, poll_frequency=0.05)
        wait.until(lambda d: d.execute_script(
            "return ['content-thumb','style-thumb'].every(i => document.getElementById(i).naturalWidth > 0)"))
        # 4000 tiny steps: ~6 s on the loaded 2-core machine, still > 1 s idle, so the page
        # shows several previews (one per 0.5 s at most) before the result.
        for name, value in (("size", "32"), ("steps", "4000")):
            box = driver.find_element(By.ID, name)
            box.clear()
            box.send_keys(value)
        Select(driver.find_element(By.ID, "optimizer")).select_by_visible_text("adam")
        driver.find_element(By.ID, "start").click()

        # Two moments of the live preview while the job runs: the shown pixels must differ.
        long_wait = WebDriverWait(driver, 240, poll_frequency=0.05)
        status, first_src, first = long_wait.until(lambda d: d.execute_script(SHOWN_PIXELS))
        assert status == "running", (status, driver.find_element(By.ID, "message").text)

        def changed(d):
            shown = d.execute_script(SHOWN_PIXELS)
            return shown is not None and shown[2] != first and shown

        _, second_src, second = long_wait.until(changed)
        assert second_src != first_src
        a, b = decode_data_url(first), decode_data_url(second)
        assert a.shape == b.shape == (24, 32, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() > 0

        long_wait.until(lambda d: d.find_element(By.ID, "download").is_displayed())
        assert driver.find_element(By.ID, "job-status").text == "done"
        assert driver.find_element(By.ID, "job-step").text.startswith("4000/4000")
        # The loss curve has points: progress events carried losses.
        assert driver.find_element(By.ID, "curve-line").get_attribute("points").count(",") >= 2

        driver.find_element(By.ID, "download").click()
        saved = WebDriverWait(driver, 30, poll_frequency=0.1).until(
            lambda d: [p for p in downloads.iterdir() if p.suffix == ".png"] or False)
        job = driver.find_element(By.ID, "job-id").text  # the job id's first 8 characters
        assert len(job) == 8 and [p.name for p in saved] == [f"jaxstyle-{job}.png"], saved
        data = saved[0].read_bytes()
        assert data[:8] == PNG_MAGIC
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.format == "PNG" and im.size == (32, 24)  # (width, height): long side 32

        # The queue table lists the job as done.
        # Read the rows' text in one script: the page redraws the table on every poll, so a row
        # element found in one call may be gone by the next (a stale element failed CI once).
        rows = WebDriverWait(driver, 10).until(lambda d: [
            t for t in d.execute_script(
                "return [...document.querySelectorAll('#queue tbody tr')].map(r => r.innerText)")
            if " done " in f" {' '.join(t.split())} "])
        assert len(rows) == 1 and "4000/4000" in rows[0]

        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert shot.read_bytes()[:8] == PNG_MAGIC and pixels.shape[0] >= 400 and pixels.shape[1] >= 400
        # Not blank: many colours (text, thumbnails, the result) and real contrast.
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50 and pixels.std() > 10
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), "".join(server_log)
