"""How fast ``fcnx review`` opens and pages a large run: 100 against 101,000 synthetic crop records.

For each size: the time to index the OUTDIR (read ``boxes.jsonl``, once at start), to answer the first
page (``/api/page?resume=1``, the page the browser asks first), page-to-page (median of the next 40 pages in the
run's order; a run of 100 has 2 pages: they alternate), a page sorted by suspect score and by confidence
with the ``undecided`` filter (median of 40), and a decision (``/api/decide``: appended and flushed to review.jsonl). Requests go
through Flask's test client: the server's own work, no network. Ratios are 101,000 over 100, measured
side by side in one run.

``--browser N`` also drives the page in headless Chromium (Debian's chromium + chromium-driver):
N accepts by keyboard on N small images, each key pressed when the page shows the next image; prints
the decisions per minute the page sustains (a person is slower: this is the page's ceiling).

    python benchmarks/review_pages.py
    python benchmarks/review_pages.py --sizes 100 101000 --browser 100
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from fcnx.review.app import TOKEN_HEADER, create_app
from fcnx.review.index import open_index
from fcnx.review.session import Session
from fcnx.testing.records import write_synthetic_journal

CLASSES = [f"class_{k:03d}" for k in range(101)]


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:8.2f} ms"


def measure(size: int, folder: Path) -> dict[str, float]:
    """Times (seconds) of one OUTDIR of ``size`` records."""
    write_synthetic_journal(folder, size, CLASSES)
    start = time.perf_counter()
    index = open_index(folder)
    times = {"index": time.perf_counter() - start}
    with Session(index, "bench") as session:
        client = create_app(session).test_client()
        start = time.perf_counter()
        first = client.get("/api/page?resume=1")
        times["first page"] = time.perf_counter() - start
        assert first.status_code == 200 and len(first.json["items"]) == min(50, size)
        pages = first.json["pages"]
        steps = []
        for k in range(1, 41):  # the next 40 pages (a small run: its pages again and again)
            start = time.perf_counter()
            assert client.get(f"/api/page?page={k % pages}").status_code == 200
            steps.append(time.perf_counter() - start)
        times["page to page"] = statistics.median(steps)
        sorted_steps = []
        for sort in ("suspect", "confidence"):
            for k in range(20):
                start = time.perf_counter()
                assert client.get(f"/api/page?page={k % pages}&sort={sort}&state=undecided").status_code == 200
                sorted_steps.append(time.perf_counter() - start)
        times["sorted, filtered page"] = statistics.median(sorted_steps)
        decisions = []
        for k in range(20):
            start = time.perf_counter()
            answer = client.post(
                "/api/decide", json={"index": k, "action": "accept"}, headers={TOKEN_HEADER: session.token}
            )
            assert answer.status_code == 200
            decisions.append(time.perf_counter() - start)
        times["decision"] = statistics.median(decisions)
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
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            results[size] = measure(size, Path(tmp) / str(size))
    small, large = args.sizes
    print(f"{'':24}{small:>11,}{large:>11,}   ratio")
    for key in results[small]:
        a, b = results[small][key], results[large][key]
        print(f"{key:24}{_ms(a)}{_ms(b)}   {b / a:6.2f}x")
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.browser:
        with tempfile.TemporaryDirectory() as tmp:
            rate = keyboard_rate(args.browser, Path(tmp))
        print(f"keyboard accepts in headless Chromium: {rate:.0f} decisions per minute ({args.browser - 1} timed)")


if __name__ == "__main__":
    main()
