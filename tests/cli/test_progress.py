"""The one progress reporter: plain lines when stderr is not a terminal, nothing when quiet."""

from __future__ import annotations

import io

from fcnx.cli.progress import Progress


def test_plain_lines_off_a_terminal_and_messages_in_between():
    stream = io.StringIO()
    with Progress(3, "crop", every=3600, stream=stream) as progress:
        progress.update()
        progress.say("error: a.jpg: cannot identify image file")
        progress.update(2)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "error: a.jpg: cannot identify image file"
    assert lines[1].startswith("crop: 3/3 images, ") and " img/s, ETA 00:00:00" in lines[1]
    assert len(lines) == 2  # the interval had not passed: only the final count


def test_quiet_shows_progress_nothing_but_messages():
    stream = io.StringIO()
    progress = Progress(2, "evaluate", quiet=True, stream=stream)
    progress.update(2)
    progress.say("error: b.png: truncated")
    assert stream.getvalue() == "error: b.png: truncated\n"
