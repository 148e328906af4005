"""How fast ``fcnx review`` opens and pages a large run: 100, 10,000 and 101,000 synthetic crop records.

Per size: the end of the crop run that wrote them (the journal loaded, ``boxes.csv`` written from its records:
with the review index built from those records and kept, as ``fcnx crop`` does, and without, as before), the
first open of the index the run kept, the first open with no kept index (read and check ``boxes.jsonl``, keep
the index in OUTDIR: what a first open did before; the small sizes 5 times, median), an open with it (5 times,
median), opens with 100,000 and with 1,000 decisions in ``review.jsonl`` (the index and the review session:
without the kept replay the decisions are read, checked and merged, as every open did before; with it only the
lines appended since are: the first open after the decisions were written, then the next; median of 3, once
for 100,000), the first page
(``/api/page?resume=1``, what the browser asks first), page to page (the run's order), a filter or sort
change (each request another query: sorted by suspect score, confidence, class or file name, one class,
the undecided images), a page sorted by suspect score or by confidence with the ``undecided`` filter right
after a decision (so never the kept selection: the worst case while reviewing), and a decision
(``/api/decide``: appended and flushed to review.jsonl). Requests go through Flask's test client: the
server's own work, no network. After the opening, the sizes' requests alternate (40 rounds, medians), so all
see the same load on a busy machine; ratios are each size over the smallest.

``--browser N`` also drives the page in headless Chromium (Debian's chromium + chromium-driver):
N accepts by keyboard on N small images, each key pressed when the page shows the next image; prints
the decisions per minute the page sustains (a person is slower: this is the page's ceiling).

    python benchmarks/review_pages.py
    python benchmarks/review_pages.py --sizes 100 101000 --browser 100
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fcnx.io.replayed import CACHE as REPLAY
from fcnx.io.review_index import CACHE
from fcnx.review.app import TOKEN_HEADER, create_app
from fcnx.review.index import open_index
from fcnx.review.session import Session
from fcnx.testing.records import write_synthetic_journal

CLASSES = [f"class_{k:03d}" for k in range(101)]
ROUNDS = 40
#: decisions already in review.jsonl when the run is opened again (the first 3 times, median; the second once)
DECIDED = (1_000, 100_000)


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:9.1f} ms"


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


#: the filter and sort changes, one per request in turn
CHANGES = ("sort=suspect", "sort=confidence&state=undecided", "sort=class&label=class_007", "sort=file", "not_found=1")


def _decide_some(outdir: Path, count: int) -> None:
    """``count`` accepts in ``outdir/review.jsonl``, spread over the run (several per image in a run of fewer),
    their images made (empty files, their folders dated an hour ago)."""
    from fcnx.io.decisions import REVIEW, Decision, now
    from fcnx.io.journal import dump_line

    index = open_index(outdir)
    lines = []
    for n in range(count):
        path = Path(index.path(n * len(index) // count))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        lines.append(dump_line(Decision(str(path), "accept", "bench", now()).as_dict()))
    index.close()
    (outdir / REVIEW).write_bytes(b"".join(lines))
    hour_ago = time.time_ns() - 3600 * 10**9  # the images were there before the review, as a dataset's are
    for folder in {path.parent for path in (outdir / "images").glob("*/*")}:
        os.utime(folder, ns=(hour_ago, hour_ago))


def _decide_more(outdir: Path, count: int) -> None:
    """``count`` more decisions appended to ``outdir/review.jsonl`` (rejects of the first images)."""
    from fcnx.io.decisions import REVIEW, Decision, now
    from fcnx.io.journal import append_lines, dump_line

    index = open_index(outdir)
    paths = [index.path(k % len(index)) for k in range(count)]
    index.close()
    decisions = (Decision(path, "reject", "bench", now(), reason="unusable") for path in paths)
    append_lines(outdir / REVIEW, b"".join(dump_line(d.as_dict()) for d in decisions))


def _run_end(outdir: Path) -> dict[str, float]:
    """The end of the crop run that wrote ``outdir/boxes.jsonl``: its journal loaded (as a resumed run's), then
    ``boxes.csv`` written from its records, without the review index (before) and with it (``fcnx crop`` now),
    alternated (3 rounds up to 20,000 records, medians); the first open of the index the run kept."""
    from fcnx.io.journal import CropJournal
    from fcnx.io.review_index import indexed_records
    from fcnx.jobs.outdir.outputs import ASIDE, JOURNAL, SUSPECTS
    from fcnx.jobs.outdir.reports import write_table

    journal = CropJournal(outdir / JOURNAL, outdir / ASIDE)
    loading = _timed(journal.load)
    table, indexed = [], []
    for _ in range(3 if len(journal.entries) <= 20_000 else 1):
        table.append(_timed(lambda: write_table(outdir, journal.records, ["net"])))
        (outdir / CACHE).unlink(missing_ok=True)
        indexed.append(
            _timed(lambda: write_table(outdir, indexed_records(outdir, journal, outdir / SUSPECTS), ["net"]))
        )
    assert (outdir / CACHE).is_file()
    return {
        "run's end: journal loaded": loading,
        "run's end: boxes.csv": statistics.median(table),
        "run's end: boxes.csv + index": statistics.median(indexed),
        "first open, index the run kept": _timed(lambda: open_index(outdir).close()),
    }


#: the measures of the opening, in the order printed
OPENING = (
    "run's end: journal loaded",
    "run's end: boxes.csv",
    "run's end: boxes.csv + index",
    "first open, index the run kept",
    "first open, no kept index",
    "first open, kept index",
    *(f"open, {n:,} decisions, {label}" for n in DECIDED for label in ("no kept replay", "kept replay")),
    *(f"open, {n:,} + 100 appended" for n in DECIDED),
    "first page",
)


def measure(sizes: list[int], folder: Path) -> dict[str, list[float]]:
    """Per measure, its median time (seconds) for each of ``sizes``."""
    times: dict[str, list[float]] = {key: [] for key in OPENING}
    clients = []
    with contextlib.ExitStack() as stack:
        for size in sizes:
            outdir = folder / str(size)
            write_synthetic_journal(outdir, size, CLASSES)
            for key, value in _run_end(outdir).items():
                times[key].append(value)

            def cold(outdir: Path = outdir) -> None:
                (outdir / CACHE).unlink(missing_ok=True)
                open_index(outdir).close()

            cold_samples = [_timed(cold) for _ in range(5 if size < 50_000 else 1)]
            times["first open, no kept index"].append(statistics.median(cold_samples))
            warm = [_timed(lambda outdir=outdir: open_index(outdir).close()) for _ in range(5)]
            times["first open, kept index"].append(statistics.median(warm))

            def reopen(outdir: Path = outdir, replayed: bool = True) -> None:
                if not replayed:
                    (outdir / REPLAY).unlink(missing_ok=True)
                index = open_index(outdir)
                with Session(index, "bench"):
                    index.close()

            for count, repeats in zip(DECIDED[::-1], (1, 3), strict=True):  # the 1,000 stay for the requests
                _decide_some(outdir, count)
                for replayed, label in ((False, "no kept replay"), (True, "kept replay")):
                    samples = [_timed(functools.partial(reopen, outdir, replayed)) for _ in range(repeats)]
                    times[f"open, {count:,} decisions, {label}"].append(statistics.median(samples))
                _decide_more(outdir, 100)  # appended by a reviewer after the replay was kept
                times[f"open, {count:,} + 100 appended"].append(_timed(functools.partial(reopen, outdir)))
            index = open_index(outdir)
            stack.callback(index.close)
            session = stack.enter_context(Session(index, "bench"))
            clients.append((session, create_app(session).test_client()))
        for _, client in clients:
            times["first page"].append(_request(client, "get", "/api/page?resume=1"))
        keys = ("page to page", "filter or sort change", "sorted page after a decision", "decision")
        samples_by: dict[str, list[list[float]]] = {key: [[] for _ in sizes] for key in keys}
        for k in range(ROUNDS):
            for n, (session, client) in enumerate(clients):
                pages = -(-len(session.index) // 50)
                samples_by["page to page"][n].append(_request(client, "get", f"/api/page?page={1 + k % (pages - 1)}"))
                change = f"/api/page?{CHANGES[k % len(CHANGES)]}"
                samples_by["filter or sort change"][n].append(_request(client, "get", change))
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
    from selenium.webdriver.common.action_chains import ActionChains
    from werkzeug.serving import make_server

    from fcnx.io.journal import dump_line
    from fcnx.testing.browser import chromium, until
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
        driver = chromium()
        try:
            driver.get(f"http://127.0.0.1:{server.server_port}/")
            heading = driver.find_element("id", "file")
            until(lambda: heading.text.startswith("#1 "), "the first image", poll=0.005)
            start = time.perf_counter()
            for k in range(count - 1):
                ActionChains(driver).send_keys("a").perform()
                until(lambda k=k: heading.text.startswith(f"#{k + 2} "), "the next image", poll=0.005)
            elapsed = time.perf_counter() - start
        finally:
            driver.quit()
            server.shutdown()
    return 60 * (count - 1) / elapsed


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 101_000], metavar="N")
    parser.add_argument("--browser", type=int, default=0, metavar="N", help="also N accepts by keyboard in Chromium")
    args = parser.parse_args()
    print(f"{_load()} (before)")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.sizes, Path(tmp))
    print(f"{_load()} (after)")
    sizes = args.sizes
    print(
        f"{'':42}"
        + "".join(f"{size:>12,}" for size in sizes)
        + "".join(f"{f'{s:,}/{sizes[0]:,}':>16}" for s in sizes[1:])
    )
    for key, values in results.items():
        ratios = "".join(f"{v / values[0]:15.2f}x" for v in values[1:])
        print(f"{key:42}" + "".join(_ms(v) for v in values) + ratios)
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.browser:
        with tempfile.TemporaryDirectory() as tmp:
            rate = keyboard_rate(args.browser, Path(tmp))
        print(f"keyboard accepts in headless Chromium: {rate:.0f} decisions per minute ({args.browser - 1} timed)")


if __name__ == "__main__":
    main()
