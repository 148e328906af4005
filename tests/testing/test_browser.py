"""The shared headless browser (:mod:`fcnx.testing.browser`): a served WSGI app is loaded, read and clicked."""

from __future__ import annotations

import pytest

from fcnx.testing.browser import CHROMEDRIVER, CHROMIUM, chromium, serving, until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]
PAGE = b"<button id='b' onclick=\"this.textContent='clicked'\">press</button><p id='size'></p>"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [PAGE + b"<script>document.getElementById('size').textContent = innerWidth + 'x';</script>"]


def test_chromium_loads_the_served_app_at_its_window_size_and_clicks():
    with serving(app) as url:
        assert url.startswith("http://127.0.0.1:")
        driver = chromium(1000, 700)
        try:
            driver.get(url)
            until(lambda: driver.find_element("id", "size").text)
            assert driver.find_element("id", "size").text == "1000x"
            driver.find_element("id", "b").click()
            until(lambda: driver.find_element("id", "b").text == "clicked", seconds=10)
        finally:
            driver.quit()


def test_until_gives_up_with_a_timeout():
    with pytest.raises(TimeoutError, match="waiting for the page to show"):
        until(lambda: False, seconds=0.1, poll=0.01)
