"""How fast ``fcnx review`` opens and pages a large run: 100 against 101,000 synthetic crop records.

Per size: the time to index the OUTDIR (read and check ``boxes.jsonl``, once at start; the small one
5 times, median), the first page (``/api/page?resume=1``, what the browser asks first), page to page
(the run's order; a run of 100 has 2 pages: they alternate), a page sorted by suspect score or by
confidence with the ``undecided`` filter right after a decision (so never the kept selection: the worst
case while reviewing), and a decision (``/api/decide``: appended and flushed to review.jsonl). Requests go
through Flask's test client: the server's own work, no network. After the indexing, the two sizes'
requests alternate (40 rounds, medians), so both see the same load on a busy machine; ratios are
101,000 over 100.

``--browser N`` also drives the page in headless Chromium (Debian's chromium + chromium-driver):
N accepts by keyboard on N small images, each key pressed when the page shows the next image; prints
the decisions per minute the page sustains (a person is slower: this is the page's ceiling).

    python benchmarks/review_pages.py
    python benchmarks/review_pages.py --sizes 100 101000 --browser 100
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fcnx.review.app import TOKEN_HEADER, create_app
from fcnx.review.index import open_index
from fcnx.review.session import Session
from fcnx.testing.records import write_synthetic_journal

CLASSES = [f"class_{k:03d}" for k in range(101)]
ROUNDS = 40


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:9.2f} ms"


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _request(client: Any, method: str, url: str, **kw: Any) -> float:
    """Seconds to answer one request (which must succeed)."""
    start = time.perf_counter()
    response = getattr(client, method)(url, **kw)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.get_data(as_text=True)
    return elapsed


def measure(sizes: list[int], folder: Path) -> dict[str, list[float]]:
    """Per measure, its median time (seconds) for each of ``sizes``."""
    times: dict[str, list[float]] = {"index at start": [], "first page": []}
    clients = []
    with contextlib.ExitStack() as stack:
        for size in sizes:
            outdir = folder / str(size)
            write_synthetic_journal(outdir, size, CLASSES)
            samples = [_timed(lambda outdir=outdir: open_index(outdir)) for _ in range(5 if size < 10_000 else 1)]
            times["index at start"].append(statistics.median(samples))
            session = stack.enter_context(Session(open_index(outdir), "bench"))
            clients.append((session, create_app(session).test_client()))
        for _, client in clients:
            times["first page"].append(_request(client, "get", "/api/page?resume=1"))
        keys = ("page to page", "sorted page after a decision", "decision")
        samples_by: dict[str, list[list[float]]] = {key: [[] for _ in sizes] for key in keys}
        for k in range(ROUNDS):
            for n, (session, client) in enumerate(clients):
                pages = -(-len(session.index.items) // 50)
                samples_by["page to page"][n].append(_request(client, "get", f"/api/page?page={1 + k % (pages - 1)}"))
                body, headers = {"index": k, "action": "accept"}, {TOKEN_HEADER: session.token}
                samples_by["decision"][n].append(_request(client, "post", "/api/decide", json=body, headers=headers))
                url = f"/api/page?page={k % pages}&sort={('suspect', 'confidence')[k % 2]}&state=undecided"
                samples_by["sorted page after a decision"][n].append(_request(client, "get", url))
        for key, per_size in samples_by.items():
            times[key] = [statistics.median(samples) for samples in per_size]
    return times


def keyboard_rate(count: int, folder: Path) -> float:
    """Decisions per minute by keyboard in headless Chromium on ``count`` small images."""
    import threading

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from werkzeug.serving import make_server

    from fcnx.io.journal import dump_line
    from fcnx.testing.records import crop_record

    lines = []
    for k in range(count):
        path = folder / "images" / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (320, 240), (k % 255, 90, 160)).save(path)
        lines.append(dump_line(crop_record(str(path), f"images/{k}.jpg", "pizza", (320, 240), (40, 30, 200, 150))))
    (folder / "boxes.jsonl").write_bytes(b"".join(lines))
    with Session(open_index(folder), "bench") as session:
        server = make_server("127.0.0.1", 0, create_app(session), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        try:
            driver.get(f"http://127.0.0.1:{server.server_port}/")
            heading = driver.find_element("id", "file")
            _until(lambda: heading.text.startswith("#1 "))
            start = time.perf_counter()
            for k in range(count - 1):
                ActionChains(driver).send_keys("a").perform()
                _until(lambda k=k: heading.text.startswith(f"#{k + 2} "))
            elapsed = time.perf_counter() - start
        finally:
            driver.quit()
            server.shutdown()
    return 60 * (count - 1) / elapsed


def _until(condition: object, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.005)
    raise TimeoutError("the page did not move on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 101_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--browser", type=int, default=0, metavar="N", help="also N accepts by keyboard in Chromium")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.sizes, Path(tmp))
    small, large = args.sizes
    print(f"{'':30}{small:>12,}{large:>12,}    ratio")
    for key, (a, b) in results.items():
        print(f"{key:30}{_ms(a)}{_ms(b)}   {b / a:6.2f}x")
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.browser:
        with tempfile.TemporaryDirectory() as tmp:
            rate = keyboard_rate(args.browser, Path(tmp))
        print(f"keyboard accepts in headless Chromium: {rate:.0f} decisions per minute ({args.browser - 1} timed)")


if __name__ == "__main__":
    main()
