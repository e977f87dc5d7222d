"""``omgclip serve`` used as a person uses it: a real Chromium uploads a real clip and reads
the table, and streams its (fake) camera through the webcam tab.

Set ``OMGCLIP_SCREENSHOT=docs/serve.png`` to refresh the README's screenshot of the page
(the committed copy has the video frame pixelated: no face from ../shared is committed).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from _browser import chromium, need_browser, need_ffmpeg, omgclip_server, get_json
from omgclip.labels import EMOTIONS

pytestmark = pytest.mark.slow


def _wait(driver, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(condition, message=what)


def test_page_upload_shows_table_video_timeline_and_downloads(shared_data, tmp_path):
    from selenium.webdriver.common.by import By

    need_browser()
    clip = shared_data / "unlabeled_faces" / "videos" / "pyfeat_single_face.mp4"  # 72 frames
    with omgclip_server() as base, chromium() as driver:
        driver.get(base + "/")
        assert driver.title == "omgclip"
        driver.find_element(By.ID, "file").send_keys(str(clip))
        driver.find_element(By.ID, "run").click()
        _wait(driver, lambda d: d.find_element(By.ID, "progress-box").is_displayed(), 10,
              "no progress shown")
        _wait(driver, lambda d: d.find_element(By.ID, "results").is_displayed()
              or d.find_element(By.ID, "error").is_displayed(), 300, "no result")
        assert not driver.find_element(By.ID, "error").is_displayed(), \
            driver.find_element(By.ID, "error").text
        cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                 for tr in driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr")]
        # 72 frames at 30 fps -> segments [0,20) [20,40) [40,60) [60,72), one face in each
        assert [c[0] for c in cells] == ["0", "1", "2", "3"]
        assert [c[1] for c in cells] == ["0.00", "0.67", "1.33", "2.00"]
        assert cells[-1][2] == "2.40"
        assert all(c[3] == "0" and c[4] == "P0" and c[5] in EMOTIONS and 0 < float(c[6]) <= 1
                   for c in cells)

        # the same rows as a download, and the same as the page's JSON
        href = driver.find_element(By.ID, "dl-csv").get_attribute("href")
        with urllib.request.urlopen(href, timeout=10) as r:
            table = list(csv.DictReader(io.StringIO(r.read().decode())))
        assert [row["label"] for row in table] == [c[5] for c in cells]
        assert table[0]["file"] == clip.name

        # the timeline picture and the annotated video load in the page
        _wait(driver, lambda d: d.execute_script(
            "return document.getElementById('timeline').naturalWidth") > 300, 30, "no timeline")
        _wait(driver, lambda d: d.execute_script(
            "const v = document.getElementById('annotated'); return v.readyState >= 2 && v.duration"),
              30, "the annotated video does not load")
        duration = driver.execute_script("return document.getElementById('annotated').duration")
        assert duration == pytest.approx(72 / 30, abs=0.1)
        driver.execute_script("const v = document.getElementById('annotated');"
                              "v.currentTime = 1.0; v.pause();")
        _wait(driver, lambda d: d.execute_script(
            "const v = document.getElementById('annotated'); return !v.seeking && v.readyState >= 4"),
              10, "the annotated video does not seek")
        time.sleep(1.0)  # let the player's loading indicator fade before the screenshot
        _screenshot(driver, tmp_path)


def _screenshot(driver, tmp_path: Path) -> None:
    shot = tmp_path / "serve.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("OMGCLIP_SCREENSHOT")
    if target:  # a small copy for the README: 256 colours
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)


def test_webcam_tab_labels_the_fake_camera(shared_data, tmp_path):
    """Chromium's fake camera plays a real clip; the page streams it through the rolling
    20-frame model and shows a box and a label for the face."""
    from selenium.webdriver.common.by import By

    need_browser()
    ffmpeg = need_ffmpeg()
    y4m = tmp_path / "camera.y4m"
    clip = shared_data / "mead_clips" / "videos" / "M030_front_happy_level3_001.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(clip), "-pix_fmt", "yuv420p", str(y4m)],
                   check=True, timeout=60)
    camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={y4m}"]
    with omgclip_server() as base, chromium(camera) as driver:
        driver.get(base + "/")
        driver.find_element(By.ID, "tab-webcam").click()
        driver.find_element(By.ID, "cam-start").click()

        def labelled(d):  # read in one go: the table is redrawn for every frame
            cells = d.execute_script("return [...document.querySelectorAll("
                                     "'#cam-faces tbody td.label')].map((c) => c.textContent)")
            return [c for c in cells if c in EMOTIONS]

        labels = _wait(driver, labelled, 120, "no webcam label")
        assert labels[0] in EMOTIONS
        status = driver.find_element(By.ID, "cam-status").text
        assert int(status.split()[0]) >= 20  # a full window of frames went through the server
        drawn = driver.execute_script(
            "const c = document.getElementById('overlay');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;")
        assert drawn > 100  # the face box and its label are drawn over the video
        driver.find_element(By.ID, "cam-stop").click()
        health = get_json(base + "/healthz")
        assert health["status"] == "ok"
        time.sleep(0.2)
