"""Real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium, and
``omgclip serve`` started as a real process on a free loopback port. Tests that need them
skip with a reason where they are missing (``.ci/run`` installs them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from _procs import stop

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def need_browser() -> None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Chromium and ChromeDriver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")


def need_ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg; .ci/run does)")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@contextmanager
def omgclip_server(args: Sequence[str] = ()) -> Iterator[str]:
    """``omgclip serve`` as its own process on 127.0.0.1 (a free port); yields the base URL.
    Stopped (SIGTERM) at the end of the block."""
    pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "omgclip", "serve", "--port", str(port), *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get_json(base + "/healthz", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"omgclip serve did not start: {log.read().decode()[-2000:]}")
                time.sleep(0.3)
        yield base
    finally:
        stop(proc, timeout=20)
        log.close()


@contextmanager
def chromium(extra_args: Sequence[str] = ()) -> Iterator[object]:
    """A headless Chromium with a fresh profile and no background networking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="omgclip-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--no-first-run", "--window-size=1000,1250",
                 f"--user-data-dir={profile}", *extra_args):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
