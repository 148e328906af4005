"""Fuzzing file names (any bytes the file system allows) through ``fcnx crop`` and ``fcnx suspects`` on the tiny nets.

Whatever the names, the outputs parse (JSONL, CSV, HTML) and every input is either recorded or
listed among the failures, exactly once. Names that are valid UTF-8 and names of arbitrary bytes
(up to 255 of them) are fuzzed apart; for the second the pages' links must also lead to the
files (percent-encoded URLs).
"""

from __future__ import annotations

import csv
import html.parser
import io
import json
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from image_corpus import square
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.errors import one_line

NETS = ("tiny0", "tiny43")
#: the longest name the file system takes, less the suffix every generated name gets
NAME_BYTES = 255 - len(".png")
FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _allowed(name: bytes) -> bool:
    """A name the file system takes, not hidden, and not one ``fcnx crop`` refuses as its own (``gallery-*``)."""
    return b"/" not in name and b"\0" not in name and not name.startswith((b".", b"gallery-"))


#: names of arbitrary bytes up to the file system's limit
BYTE_NAMES = st.binary(min_size=1, max_size=NAME_BYTES).filter(_allowed)
#: names that are valid UTF-8, control characters included, short of the limit (temporary names are longer),
#: without the '%' and '?' a page's links must encode
TEXT_NAMES = (
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="%?"), min_size=1, max_size=50)
    .map(lambda text: text.encode())
    .filter(lambda name: _allowed(name) and len(name) <= 200)
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import tiny_backbones
    import torch

    from fcnx.backbones import plugins, registry

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    plugin = tiny_backbones.register()
    folder = tmp_path_factory.mktemp("weights")
    yield {name: color_checkpoint(folder / f"{name}.safetensors", name) for name in NETS}
    plugins.pm.unregister(plugin)
    registry.refresh()
    torch.set_num_threads(threads)


def net_args(weights: dict[str, Path]) -> list[str]:
    return [
        "--nets",
        ",".join(weights),
        "--kernel",
        "107",
        *(a for n, p in weights.items() for a in ("--weights", f"{n}={p}")),
    ]


def _files(names: list[bytes], good: list[bool], folder: bytes) -> dict[bytes, bool]:
    """Write each name (+ ``.png``) in ``folder``: a red square when ``good``, else junk. Returns path -> good."""
    written = {}
    for name, ok in zip(names, good):
        path = os.path.join(folder, name + b".png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if ok:
            square(Path(os.fsdecode(path)))
        else:
            with open(path, "wb") as f:
                f.write(b"not an image")
        written[path] = ok
    return written


class _Links(html.parser.HTMLParser):
    """The local ``src``/``href`` targets of a page (strict parsing: a broken page raises)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("src", "href") and value and not value.startswith("data:"):
                self.links.append(value)


def _check_page(page: Path, links: bool) -> None:
    """The page parses; with ``links``, every link leads to a file that exists (as a browser reads the URL)."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    for link in parser.links if links else []:
        target = urllib.parse.unquote(urllib.parse.urlsplit(link).path, errors="surrogateescape")
        assert (page.parent / target).exists(), link


def _text(path: Path) -> str:
    """A file fcnx wrote, as UTF-8 text; ``""`` when there is no such file (nothing to write)."""
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _failed(lines: list[str], path: bytes) -> int:
    return sum(line.startswith(one_line(os.fsdecode(path)) + ": ") for line in lines)


def _crop_and_check(weights, names: list[bytes], good: list[bool], links: bool = False) -> None:
    root = tempfile.mkdtemp(prefix="fuzz-crop-")
    try:
        inputs = _files(names, good, os.path.join(os.fsencode(root), b"in"))
        out = Path(root) / "out"
        argv = ["crop", *net_args(weights), "--workers", "0", "--max-scale", "1.2", "--category", "red", "--gallery"]
        result = CliRunner().invoke(cli, [*argv, os.path.join(root, "in"), "-o", str(out)], catch_exceptions=False)
        assert result.exit_code == (0 if all(good) else 1), result.output
        records = [json.loads(line) for line in _text(out / "boxes.jsonl").split("\n")[:-1]]  # JSON Lines: "\n" only
        rows = list(csv.DictReader(io.StringIO(_text(out / "boxes.csv"), newline="")))
        failures = _text(out / "failures.txt").split("\n")[:-1]
        assert len(rows) == len(records) and len(failures) == len(inputs) - len(records)
        recorded = [os.fsencode(r["path"]) for r in records]
        for row, record in zip(rows, records):  # a path is in boxes.csv as itself, bytes that are not UTF-8 escaped
            assert row["path"] == os.fsencode(record["path"]).decode("utf-8", "backslashreplace")
        for path, ok in inputs.items():
            assert (recorded.count(path), _failed(failures, path)) == ((1, 0) if ok else (0, 1)), path
        if records:
            _check_page(out / "gallery.html", links)
    finally:
        shutil.rmtree(root)


def _suspects_and_check(weights, names: list[bytes], good: list[bool], links: bool = False) -> None:
    root = tempfile.mkdtemp(prefix="fuzz-suspects-")
    try:
        data = os.path.join(os.fsencode(root), b"data")
        square(Path(root) / "data" / "red" / "0.png")
        inputs = _files(names, good, os.path.join(data, b"green"))  # red squares labelled green: all suspects
        out = Path(root) / "review"
        argv = ["suspects", *net_args(weights), "--data", os.fsdecode(data), "-o", str(out), "-q"]
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        assert result.exit_code == (0 if all(good) else 1), result.output
        report = json.loads((out / "suspects.json").read_text(encoding="utf-8"))
        rows = list(csv.DictReader(io.StringIO((out / "suspects.csv").read_text(encoding="utf-8"), newline="")))
        assert report["images"] == len(inputs) + 1 and len(rows) == len(report["suspects"])
        listed = [os.fsencode(s["path"]) for s in report["suspects"]]
        for path, ok in inputs.items():
            assert (listed.count(path), _failed(report["failures"], path)) == ((1, 0) if ok else (0, 1)), path
        _check_page(out / "suspects.html", links)
    finally:
        shutil.rmtree(root)


def _unique(names: list[bytes]) -> bool:
    return len(set(names)) == len(names)


#: names every run tries: a newline, separators str.splitlines breaks at, a terminal escape; good and bad files
TEXT_EXAMPLE = example(names=[b"a\nb", "\u00e9\u2028\x85\x1c".encode(), b"\x1b[31m"], good=[False, True, False])
#: not UTF-8, characters URLs must encode, a name of 255 bytes
BYTES_EXAMPLE = example(names=[b"caf\xe9", b"100%?#&<", b"z" * NAME_BYTES], good=[True, True, False])


@FUZZ
@TEXT_EXAMPLE
@given(
    names=st.lists(TEXT_NAMES, min_size=1, max_size=3).filter(_unique),
    good=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_crop_with_utf8_names(weights, names, good):
    _crop_and_check(weights, names, good[: len(names)])


@FUZZ
@TEXT_EXAMPLE
@given(
    names=st.lists(TEXT_NAMES, min_size=1, max_size=3).filter(_unique),
    good=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_suspects_with_utf8_names(weights, names, good):
    _suspects_and_check(weights, names, good[: len(names)])


@FUZZ
@BYTES_EXAMPLE
@given(
    names=st.lists(BYTE_NAMES, min_size=1, max_size=3).filter(_unique),
    good=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_crop_with_names_of_any_bytes(weights, names, good):
    _crop_and_check(weights, names, good[: len(names)], links=True)


@FUZZ
@BYTES_EXAMPLE
@given(
    names=st.lists(BYTE_NAMES, min_size=1, max_size=3).filter(_unique),
    good=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_suspects_with_names_of_any_bytes(weights, names, good):
    _suspects_and_check(weights, names, good[: len(names)], links=True)
