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
import time
from pathlib import Path

from PIL import Image

from fcnx.review.app import create_app
from fcnx.review.index import open_index
from fcnx.review.session import Session
from fcnx.testing.browser import chromium, serving, until
from fcnx.testing.photos import PHOTOS

ROOT = Path(__file__).resolve().parents[1]
#: (photo, label given in the dataset)
DATASET = [("coffee", "espresso"), ("camera", "espresso"), ("chelsea", "Egyptian cat"), ("motorcycle", "moped")]


def main() -> None:
    from selenium.webdriver.common.action_chains import ActionChains

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
        with Session(open_index(out), "ana") as session, serving(create_app(session)) as url:
            driver = chromium(1280, 800)
            try:
                driver.get(url)
                until(lambda: driver.find_element("id", "file").text.startswith("#1 "))
                ActionChains(driver).send_keys("a").perform()
                until(lambda: "camera" in driver.find_element("id", "file").text)
                until(lambda: driver.execute_script("return document.getElementById('photo').complete"))
                time.sleep(0.5)
                driver.save_screenshot(str(ROOT / "docs" / "img" / "review.png"))
            finally:
                driver.quit()
    print(ROOT / "docs" / "img" / "review.png")


if __name__ == "__main__":
    main()
