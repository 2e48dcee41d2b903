"""report.html in a real browser (headless Chromium): it renders, every image decodes, nothing is fetched.

Needs ``chromium`` (and ``chromedriver`` plus selenium for the in-page checks); CI installs them with
``apt-get install chromium chromium-driver``. Without them these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import results_factory as factory
from PIL import Image

from perfsuite.report import write_report
from perfsuite.report.charts import FAIL_COLOR, PASS_COLOR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    # nothing can leave the machine even if the page asked; the request is still seen and reported
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
COMBOS = ["fp32", "bf16", "bf16+sdpa-flash"]
#: The grid images are solid-ish colours found nowhere else on the page, so a screenshot can find them.
GRID_COLORS = {"obtained": (230, 20, 230), "reference": (20, 220, 220), "diff": (240, 200, 10)}
NETWORK_SCHEMES = {"http", "https", "ws", "wss", "ftp"}
REMOTE = '<img alt="remote" src="https://example.com/x.png">'

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI: apt-get install chromium chromium-driver)"
)


def _solid(color: tuple[int, int, int], seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-8, 9, (32, 32, 3))
    return np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    document = factory.document(slowdown={"bf16": 1.2}, combos=COMBOS)
    document["cases"][1]["status"] = "fail"  # shown in red in the charts and the grid
    images = {
        f"{factory.MODEL}/{combo}": {kind: _solid(color, i) for kind, color in GRID_COLORS.items()}
        for i, combo in enumerate(COMBOS)
    }
    return write_report(folder, document, images).html


def _fraction(pixels: np.ndarray, color: tuple[int, int, int], tolerance: int = 24) -> float:
    close = np.all(np.abs(pixels[..., :3].astype(int) - np.array(color)) <= tolerance, axis=-1)
    return float(close.mean())


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_screenshot_shows_the_charts_and_the_image_grid(report, tmp_path):
    shot = tmp_path / "shot.png"
    command = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        report.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (2000, 1280, 3)
    white = np.all(pixels >= 245, axis=-1).mean()
    assert white < 0.85, f"the page looks blank: {white:.0%} white"
    # the bars of the three charts, passing (blue) and failed (red), drawn by matplotlib
    assert _fraction(pixels, _hex(PASS_COLOR)) > 0.01
    assert _fraction(pixels, _hex(FAIL_COLOR)) > 0.002
    # 3 cases x 256 x 256 px of each grid colour, minus what falls below the window
    for kind, color in GRID_COLORS.items():
        assert _fraction(pixels, color) > 0.03, f"the {kind} images of the grid are not on screen"


# --- in-page checks with selenium --------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
    if CHROMEDRIVER is None:
        pytest.skip("chromedriver is not installed (CI: apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, "--window-size=1280,2000"]:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()


def _open(driver: Any, page: Path) -> dict[str, str]:
    """Load ``page``; return every remote URL it asked for, with what became of the request.

    Chromium reports a request even when a Content-Security-Policy blocks it before it reaches the
    network (``blocked: csp``), so this catches any remote reference the page makes. Chromium's own
    pages (``chrome://``) and the report's embedded ``data:`` images are not remote.
    """
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get(page.as_uri())
    urls: dict[str, str] = {}
    outcome: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url.split(":", 1)[0].lower() in NETWORK_SCHEMES:
                urls[params["requestId"]] = url
                outcome.setdefault(url, "sent")
        elif message["method"] == "Network.loadingFailed" and params.get("requestId") in urls:
            reason = params.get("blockedReason")
            outcome[urls[params["requestId"]]] = (
                f"blocked: {reason}" if reason else params.get("errorText", "")
            )
    return outcome


def test_every_image_decodes_and_nothing_is_fetched(driver, report):
    assert _open(driver, report) == {}
    script = (
        "return Array.from(document.images)"
        ".map(i => [i.className, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    images = driver.execute_script(script)
    charts = [image for image in images if image[0] == "chart"]
    samples = [image for image in images if image[0] == "sample"]
    assert len(charts) == 3 and len(samples) == 3 * len(COMBOS), images
    assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
    assert all(width == 900 for _, _, width, _ in charts)
    assert all((width, height) == (32, 32) for _, _, width, height in samples)
    failed = driver.execute_script("return document.querySelectorAll('tr.fail, div.case.fail').length")
    assert failed == 2


@pytest.mark.parametrize("strip_csp", [False, True], ids=["csp-blocks-it", "request-sent"])
def test_the_check_catches_a_remote_reference(driver, report, tmp_path, strip_csp):
    html = report.read_text().replace("<body>", "<body>" + REMOTE, 1)
    if strip_csp:
        start = html.index('<meta http-equiv="Content-Security-Policy"')
        html = html[:start] + html[html.index(">", start) + 1 :]
    page = tmp_path / "report.html"
    page.write_text(html)
    remote = _open(driver, page)
    assert "https://example.com/x.png" in remote, remote
    if strip_csp:  # sent, then failed: the host resolver is told to resolve nothing
        assert not remote["https://example.com/x.png"].startswith("blocked"), remote
    else:  # the report's own policy stops it before the network
        assert remote["https://example.com/x.png"] == "blocked: csp", remote
