"""docs/img/review.png: the ``fcnx review`` page in headless Chromium, on a real ``fcnx crop`` run.

Four scikit-image photos in a Food-101-style root labelled with ImageNet classes, the camera photo
planted under ``espresso`` (a wrong label); ``fcnx crop --heatmaps`` with the default offline ensemble
(EfficientNet-Lite0/1/2); then ``fcnx review``, the first image accepted by keyboard, and the page shot
on the planted one. Needs the test extra (scikit-image, Flask, Selenium) and Debian's chromium +
chromium-driver.

    python scripts/review_screenshot.py            # minutes on a CPU
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from fcnx.review.app import create_app
from fcnx.review.index import open_index
from fcnx.review.session import Session
from fcnx.testing.photos import PHOTOS

ROOT = Path(__file__).resolve().parents[1]
#: (photo, label given in the dataset)
DATASET = [("coffee", "espresso"), ("camera", "espresso"), ("chelsea", "Egyptian cat"), ("motorcycle", "moped")]


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from werkzeug.serving import make_server

    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "food", Path(tmp) / "crops"
        (data / "meta").mkdir(parents=True)
        (data / "meta" / "classes.txt").write_text("".join(f"{c}\n" for c in sorted({c for _, c in DATASET})))
        for name, label in DATASET:
            (data / "images" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(PHOTOS[name].load()).save(data / "images" / label / f"{name}.jpg", quality=92)
        subprocess.run(
            [sys.executable, "-m", "fcnx", "crop", str(data), "-o", str(out), "--heatmaps", "-q"], check=True
        )
        with Session(open_index(out), "ana") as session:
            server = make_server("127.0.0.1", 0, create_app(session), threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
                options.add_argument(arg)
            driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
            try:
                driver.get(f"http://127.0.0.1:{server.server_port}/")
                _until(lambda: driver.find_element("id", "file").text.startswith("#1 "))
                ActionChains(driver).send_keys("a").perform()
                _until(lambda: "camera" in driver.find_element("id", "file").text)
                _until(lambda: driver.execute_script("return document.getElementById('photo').complete"))
                time.sleep(0.5)
                driver.save_screenshot(str(ROOT / "docs" / "img" / "review.png"))
            finally:
                driver.quit()
                server.shutdown()
    print(ROOT / "docs" / "img" / "review.png")


def _until(condition: object, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            raise TimeoutError("the page did not show what was expected")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
