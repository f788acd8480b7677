"""The web page of `gazeclip serve` in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium): pick an image, wait for the answer, check that the verdict
and a face box are shown, save a screenshot. `.ci/run` installs Chromium when it is missing; where
it cannot, this test skips and says why.

GAZECLIP_BROWSER_RUN=RUN uses that run instead of a tiny untrained one, and GAZECLIP_SCREENSHOT=PNG
copies the screenshot there (that is how docs/images/serve-page.png is made)."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from helpers import make_run


def _browser() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("browser test skipped: Chromium or chromedriver not found "
                    "(install with `apt-get install chromium chromium-driver`; .ci/run does it as root)")
    pytest.importorskip("selenium", reason="browser test skipped: selenium is not installed (pip install selenium)")
    return chrome, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread, on 127.0.0.1 only."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def _chrome(chrome: str, driver_path: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,860", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def _wait_done(browser, seconds: int = 240) -> str:
    """Wait for the page's answer; the status line."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds).until(
        lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    status = browser.find_element(By.ID, "status").text
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", status
    return status


@pytest.mark.real
def test_page_shows_verdict_and_face_box(real_weights, tmp_path):
    chrome, driver_path = _browser()
    from selenium.webdriver.common.by import By

    import gazeclip
    from gazeclip.serve.app import create_app
    from gazeclip.weights import asset_path

    run = os.environ.get("GAZECLIP_BROWSER_RUN")
    if not run:
        run = tmp_path / "run"
        make_run(run, faces="detect")
    app = create_app(gazeclip.load(run))
    photo = tmp_path / "astronaut.png"  # NASA, public domain (scikit-image's sample)
    shutil.copy(asset_path("photo-astronaut"), photo)

    with Server(app) as url:
        browser = _chrome(chrome, driver_path)
        try:
            browser.get(url)
            assert "gazeclip" in browser.title
            browser.find_element(By.ID, "file").send_keys(str(photo))
            status = _wait_done(browser)
            verdicts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .verdict")]
            assert verdicts and set(verdicts) <= {"REAL", "FAKE"}, verdicts
            assert "1 face(s)" in status and "astronaut.png" in status
            boxes = browser.find_elements(By.CSS_SELECTOR, "rect.face-box")
            assert len(boxes) == 1 and boxes[0].size["width"] > 20 and boxes[0].size["height"] > 20
            x = float(boxes[0].get_attribute("x"))
            assert 150 < x < 300  # the astronaut's face, in image pixels
            assert len(browser.find_elements(By.CSS_SELECTOR, "line.gaze-arrow")) == 2
            card = browser.find_element(By.CSS_SELECTOR, ".card").text
            for word in ("p_fake", "generator", "family", "unknown generator", "gaze", "head pose"):
                assert word in card
            shot = tmp_path / "serve-page.png"
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            if os.environ.get("GAZECLIP_SCREENSHOT"):
                Path(os.environ["GAZECLIP_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, os.environ["GAZECLIP_SCREENSHOT"])
        finally:
            browser.quit()


@pytest.mark.real
def test_page_shows_uncertain_with_its_reason_and_the_gradcam_overlay(real_weights, tmp_path):
    """A greyscale photo on a run whose limits need colour: UNCERTAIN, the reason, a grey dashed
    box; ticking the Grad-CAM box asks for the maps and lays them over the face, unticking hides them."""
    chrome, driver_path = _browser()
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import gazeclip
    from gazeclip.serve.app import create_app
    from gazeclip.weights import asset_path

    run = tmp_path / "run"
    make_run(run, faces="detect", min_face_px=64.0, min_chroma=8.0)
    photo = tmp_path / "astronaut-grey.png"
    Image.open(asset_path("photo-astronaut")).convert("L").save(photo)
    with Server(create_app(gazeclip.load(run))) as url:
        browser = _chrome(chrome, driver_path)
        try:
            browser.get(url)
            browser.find_element(By.ID, "file").send_keys(str(photo))
            status = _wait_done(browser)
            assert "1 face(s), 0 judged fake, 1 uncertain" in status, status
            assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .verdict")] == ["UNCERTAIN"]
            reason = browser.find_element(By.CSS_SELECTOR, ".card .reason").text
            assert reason.startswith("No verdict: greyscale: colour 0.0"), reason
            (box,) = browser.find_elements(By.CSS_SELECTOR, "rect.face-box")
            assert "uncertain" in box.get_attribute("class")
            box_x = float(box.get_attribute("x"))
            assert not browser.find_elements(By.CSS_SELECTOR, "image.cam")  # maps only when asked for
            browser.execute_script("document.body.dataset.state = 'busy'")
            browser.find_element(By.ID, "cam-toggle").click()  # re-sends the photo with explain=1
            _wait_done(browser)
            WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "image.cam"))
            (cam,) = browser.find_elements(By.CSS_SELECTOR, "image.cam")
            assert cam.is_displayed() and cam.get_attribute("href").startswith("data:image/png;base64,")
            assert float(cam.get_attribute("x")) < box_x  # the crop: a square around the face box
            assert "Grad-CAM" in browser.find_element(By.CSS_SELECTOR, ".card").text
            shot = tmp_path / "serve-uncertain.png"
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            browser.find_element(By.ID, "cam-toggle").click()
            assert not cam.is_displayed()
        finally:
            browser.quit()
