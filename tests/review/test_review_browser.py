"""``fcnx review`` in a real browser: Debian's headless Chromium driven by Selenium (nothing downloaded: the
browser and its driver are the system's, Selenium Manager never runs), against the command run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fcnx.review.app import TOKEN_HEADER
from fcnx.testing.browser import CHROMEDRIVER, CHROMIUM, chromium, until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]
ROOT = Path(__file__).resolve().parents[2]


class Server:
    """``fcnx review OUTDIR --no-browser`` in its own process; ``url`` once it listens."""

    def __init__(self, outdir: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        command = [sys.executable, "-m", "fcnx", "review", str(outdir), "--no-browser", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise AssertionError(f"no URL: {self.url!r} {self.process.communicate()[1]}")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop it with ``sig``; its standard error."""
        self.process.send_signal(sig)
        return self.process.communicate(timeout=30)[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    driver = chromium(console_log=True)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def no_script_errors(request):
    """Each test ends with no error in the page's console (a script error, a refused request), but the favicon."""
    yield
    if "browser" in request.fixturenames:
        driver = request.getfixturevalue("browser")
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert [m for m in errors if "favicon.ico" not in m] == []


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)


def _open(browser, server: Server, heading: str) -> None:
    browser.get(server.url)
    until(lambda: browser.find_element("id", "file").text.startswith(heading), f"page showing {heading}")
    until(lambda: browser.execute_script("return document.getElementById('photo').naturalWidth > 0"), "image")


def _idle(browser) -> None:
    """Wait until the page has done every queued key, shows its image and holds the next (then stopping the server
    cuts nothing)."""
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const loaded = (img) => !img || img.complete ? Promise.resolve() :"
        "  new Promise((ok) => { img.addEventListener('load', ok); img.addEventListener('error', ok); });"
        "queue.then(() => Promise.all([loaded(document.getElementById('photo')), loaded(preload)])).then(() => done());"
    )


def _decisions(outdir: Path, count: int) -> list[dict]:
    """The lines of review.jsonl once it has ``count``."""
    log = outdir / "review.jsonl"
    until(lambda: log.exists() and log.read_text().count("\n") >= count, f"{count} decision(s)")
    return [json.loads(line) for line in log.read_text().splitlines()]


def _keys(browser, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).send_keys(keys).perform()


def _summary(d: dict) -> tuple:
    return (Path(d["path"]).name, d["action"], d["reason"] or d["label"], d["box"], d["reviewer"])


def test_keyboard_accept_reject_relabel_land_in_review_jsonl(outdir, browser, servers):
    servers.append(Server(outdir, "--reviewer", "ana"))
    _open(browser, servers[0], "#1 images/pizza/1.jpg")
    _keys(browser, "a")  # accept, then the next image
    _decisions(outdir, 1)
    until(lambda: browser.find_element("id", "file").text.startswith("#2"), "the next image")
    _keys(browser, "g")  # relabel to the ensemble's guess (lasagna)
    _decisions(outdir, 2)
    until(lambda: browser.find_element("id", "file").text.startswith("#3"), "the third image")
    _keys(browser, "l")  # relabel by type-ahead: "ph" -> pho
    browser.find_element("id", "relabel").send_keys("ph")
    until(lambda: browser.find_element("id", "matches").text == "pho", "the type-ahead")
    browser.find_element("id", "relabel").send_keys("\n")
    _decisions(outdir, 3)
    _keys(browser, "3")  # reject it as unusable (the last image: it stays shown)
    _decisions(outdir, 4)
    _keys(browser, "u")  # undo the reject
    decisions = _decisions(outdir, 5)
    assert [_summary(d) for d in decisions] == [
        ("1.jpg", "accept", None, None, "ana"),
        ("2.jpg", "relabel", "lasagna", None, "ana"),
        ("3.jpg", "relabel", "pho", None, "ana"),
        ("3.jpg", "reject", "unusable", None, "ana"),
        ("3.jpg", "undo", None, None, "ana"),
    ]
    until(lambda: browser.find_element("id", "verdict").text == "relabelled to pho by ana", "the verdict shown")
    assert browser.find_element("id", "counts").text.startswith("3 of 3 decided (1 accepted, 0 rejected, 2 relabelled")
    _idle(browser)
    assert "review: stopped; every decision is in review.jsonl" in servers[0].stop()


def _drag(browser, handle: str, dx: int, dy: int) -> tuple[float, float]:
    """Drag the box's ``handle`` by ``(dx, dy)`` CSS pixels; the image's natural/shown size ratios (x, y)."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = browser.find_element("css selector", f'#box .handle[data-h="{handle}"]')
    ActionChains(browser).click_and_hold(element).move_by_offset(dx, dy).release().perform()
    return browser.execute_script(
        "const p = document.getElementById('photo'), r = p.getBoundingClientRect();"
        "return [p.naturalWidth / r.width, p.naturalHeight / r.height];"
    )


def test_dragged_corners_land_in_original_upright_pixels(outdir, browser, servers):
    servers.append(Server(outdir, "--reviewer", "ana"))
    _open(browser, servers[0], "#1 images/pizza/1.jpg")
    sx, sy = _drag(browser, "se", 40, 30)
    assert sx > 1.2 and sy > 1.2  # shown smaller than its 1200 x 900 pixels: the box is scaled back
    (first,) = _decisions(outdir, 1)
    x2, y2 = round(300 + 600 + 40 * sx), round(150 + 450 + 30 * sy)
    assert _summary(first) == ("1.jpg", "box", None, [300, 150, x2 - 300, y2 - 150], "ana")
    # the image stored 600 x 960 and turned by its EXIF orientation: the box is in its upright 960 x 600 pixels
    _keys(browser, "jj")
    until(lambda: browser.execute_script("return document.getElementById('photo').naturalWidth") == 960, "#3")
    sx, sy = _drag(browser, "nw", -25, 35)
    second = _decisions(outdir, 2)[1]
    x1, y1 = round(120 - 25 * sx), round(60 + 35 * sy)
    assert _summary(second) == ("3.jpg", "box", None, [x1, y1, 600 - x1, 420 - y1], "ana")
    _keys(browser, "a")  # accepting keeps the adjusted box
    _decisions(outdir, 3)
    until(lambda: "box adjusted to" in browser.find_element("id", "verdict").text, "the verdict")
    assert (
        browser.find_element("id", "verdict").text
        == f"accepted, box adjusted to [{x1}, {y1}, {600 - x1}, {420 - y1}] by ana"
    )
    servers[0].stop()


def test_a_killed_server_loses_nothing_and_the_next_run_continues(outdir, browser, servers):
    servers.append(Server(outdir, "--reviewer", "ana"))
    _open(browser, servers[0], "#1")
    _keys(browser, "a")
    until(lambda: browser.find_element("id", "file").text.startswith("#2"), "#2")
    _keys(browser, "1")
    _decisions(outdir, 2)
    until(lambda: browser.execute_script("return document.getElementById('photo').naturalWidth") == 960, "#3")
    # a second review of the same OUTDIR is refused, naming the first
    second = subprocess.run(
        [sys.executable, "-m", "fcnx", "review", str(outdir), "--no-browser"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert second.returncode == 2
    assert f"{outdir} is in use by another run (fcnx review, pid {servers[0].process.pid}" in second.stderr
    _idle(browser)
    servers[0].stop(signal.SIGKILL)
    with (outdir / "review.jsonl").open("a") as f:
        f.write('{"v": 1, "path": "/x/cut.jpg", "act')  # what a kill in the middle of a write leaves
    servers.append(Server(outdir, "--reviewer", "ana"))
    _open(browser, servers[1], "#3 images/sushi/3.jpg")  # continues at the first undecided image
    assert browser.find_element("id", "counts").text.startswith("2 of 3 decided (1 accepted, 1 rejected")
    _keys(browser, "k")
    until(lambda: browser.find_element("id", "verdict").text == "rejected (wrong_label) by ana", "#2's verdict")
    _keys(browser, "4")
    assert [d["action"] for d in _decisions(outdir, 3)] == ["accept", "reject", "reject"]
    until(lambda: browser.execute_script("return document.getElementById('photo').naturalWidth") == 960, "#3")
    _idle(browser)
    stderr = servers[1].stop()
    assert "its last line was cut short (a kill); set aside in review.rejected.jsonl" in stderr
    assert (outdir / "review.rejected.jsonl").read_text() == '{"v": 1, "path": "/x/cut.jpg", "act\n'


def test_two_reviewers_merged_and_their_disagreement_shown(outdir, browser, servers, tmp_path):
    copy = tmp_path / "bo-copy"
    shutil.copytree(outdir, copy)
    servers.append(Server(outdir, "--reviewer", "ana"))
    _open(browser, servers[0], "#1")
    _keys(browser, "a")
    _decisions(outdir, 1)
    _idle(browser)
    servers[0].stop()
    servers.append(Server(copy, "--reviewer", "bo"))
    _open(browser, servers[1], "#1")
    _keys(browser, "2")
    _decisions(copy, 1)
    until(lambda: browser.find_element("id", "file").text.startswith("#2"), "#2")
    _keys(browser, "g")
    _decisions(copy, 2)
    _idle(browser)
    servers[1].stop()
    merged = subprocess.run(
        [sys.executable, "-m", "fcnx", "review", str(outdir), "--merge", str(copy / "review.jsonl")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert merged.returncode == 0, merged.stderr
    path = outdir.parent / "data" / "images" / "pizza" / "1.jpg"
    assert merged.stdout == f"disagreement: {path}: ana: accept; bo: reject (not_category)\n"
    assert f"{copy / 'review.jsonl'}: 2 decision(s) merged, 0 already there" in merged.stderr
    servers.append(Server(outdir, "--reviewer", "ana"))
    browser.get(servers[2].url)
    until(lambda: "disputed" in browser.find_element("id", "counts").text, "the counts")
    assert (
        browser.find_element("id", "counts").text == "2 of 3 decided (0 accepted, 1 rejected, 1 relabelled, 1 disputed)"
    )
    from selenium.webdriver.support.select import Select

    Select(browser.find_element("id", "state")).select_by_value("disputed")
    until(lambda: browser.find_element("id", "pager").text == "page 1 of 1 (1 images)", "the filter")
    assert browser.find_element("id", "file").text == "#1 images/pizza/1.jpg"
    assert browser.find_element("id", "dispute").text == "reviewers disagree: ana: accept; bo: reject (not_category)"
    assert browser.find_element("id", "verdict").text == "rejected (not_category) by bo"  # the later decision wins
    _idle(browser)
    servers[2].stop()


def test_a_suspects_outdir_shows_the_signal_and_relabels_to_the_other_class(tmp_path, outdir, browser, servers):
    alone = tmp_path / "suspects"
    alone.mkdir()
    image = str(outdir.parent / "data/images/pizza/1.jpg")
    row = {"path": image, "label": "pizza", "other_category": "sushi", "other_votes": 2,
           "other_mean_confidence": 0.5, "gap": 0.25, "x": 10, "y": 20, "w": 300, "h": 200}  # fmt: skip
    (alone / "suspects.json").write_text(json.dumps({"images": 3, "signal": "graded", "suspects": [row]}))
    servers.append(Server(alone, "--reviewer", "ana"))
    _open(browser, servers[0], f"#1 {image}")
    assert browser.find_element("id", "suspect").text == "suspect: the nets see sushi (2 vote(s), p=0.50, gap 0.25)"
    assert browser.find_element("id", "guesses").text == "sushi: 0.50 (2 votes)"
    _keys(browser, "g")
    assert [_summary(d) for d in _decisions(alone, 1)] == [("1.jpg", "relabel", "sushi", None, "ana")]
    _idle(browser)
    servers[0].stop()


def test_a_plain_crop_run_shows_the_whole_images_guesses_and_relabels_to_them(outdir, browser, servers):
    journal = outdir / "boxes.jsonl"
    first, *rest = journal.read_text().splitlines(keepends=True)
    record = json.loads(first)
    record["guesses"] = [["pizza", 0.75, 2], ["pho", 0.25, 1], ["sushi", 0.0625, 0]]  # as fcnx crop records them
    journal.write_text(json.dumps(record) + "\n" + "".join(rest))
    servers.append(Server(outdir, "--reviewer", "ana"))
    _open(browser, servers[0], "#1 images/pizza/1.jpg")
    assert browser.find_element("id", "guesses").text.splitlines() == [
        "pizza: 0.80 (3/3 votes)",
        "pizza: 0.75 (2/3 votes, whole image)",
        "pho: 0.25 (1/3 votes, whole image)",
        "sushi: 0.06 (0/3 votes, whole image)",
    ]
    _keys(browser, "g")  # the first guess other than the label: the whole image's second class
    assert [_summary(d) for d in _decisions(outdir, 1)] == [("1.jpg", "relabel", "pho", None, "ana")]
    _idle(browser)
    servers[0].stop()


def test_the_live_server_refuses_forged_writes_and_paths(outdir, servers):
    servers.append(Server(outdir))
    url = servers[0].url

    def status(path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    body = json.dumps({"index": 0, "action": "accept"}).encode()
    json_type = {"Content-Type": "application/json"}
    assert status("api/decide", data=body, headers=json_type) == 403
    assert status("api/decide", data=body, headers={**json_type, TOKEN_HEADER: "guess"}) == 403
    for path in (
        "image/..%2f..%2fdata%2fimages%2fpizza%2f1.jpg",
        "image/-1",
        "image/3",
        "heatmap/1",
        "static/..%2freview.py",
    ):
        assert status(path) == 404, path
    assert status("api/page", headers={"Host": "evil.example:80"}) == 400  # DNS rebinding
    assert status("image/0") == 200
    assert not (outdir / "review.jsonl").exists()
    servers[0].stop()
