"""A headless browser for tests, benchmarks and figures of web pages: Debian's Chromium driven by Selenium
(nothing downloaded: the browser and its driver are the system's, Selenium Manager never runs), and a WSGI
app served on loopback in a thread. Needs Selenium and Werkzeug (the ``test`` extra) and
``apt-get install chromium chromium-driver``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def chromium(width: int = 1280, height: int = 900, *arguments: str, console_log: bool = False) -> Any:
    """A headless Chromium of ``width`` x ``height`` pixels (``driver.quit()`` it), with extra ``arguments``;
    ``console_log`` keeps the page's console for ``driver.get_log("browser")``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    defaults = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
    for arg in (*defaults, f"--window-size={width},{height}", *arguments):
        options.add_argument(arg)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve the WSGI ``app`` on 127.0.0.1 (a free port) in a thread; yields its URL, stops it on exit."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


def until(
    condition: Callable[[], object],
    what: str = "the page to show what was expected",
    seconds: float = 30,
    poll: float = 0.05,
) -> None:
    """Wait until ``condition()`` is true; ``TimeoutError`` naming ``what`` it waited for after ``seconds``."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(poll)
