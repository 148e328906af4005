"""Files written so that a kill never leaves a half-written one: a temporary name in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError

#: permissions of the files fcnx writes (what a plain ``open(..., "w")`` gives under the usual umask 022)
FILE_MODE = 0o644
#: suffix of the temporary files fcnx writes before renaming them into place (a killed run's are deleted)
TEMP_SUFFIX = ".fcnx-tmp"


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Create ``path`` via ``write(file)`` on a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    try:
        encoding, newline = (None, None) if "b" in mode else ("utf-8", "")
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text), "w")


def remove_temporaries(folder: Path) -> int:
    """Delete temporary files a killed run left under ``folder``; returns how many."""
    count = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                os.unlink(os.path.join(dirpath, name))
                count += 1
    return count


def check_outdir(outdir: Path, inputs: Sequence[Path], in_place: bool = False) -> Path:
    """Refuse an OUTDIR that is, contains or lies inside an input (unless ``in_place``); create it, check it is writable."""
    out = Path(os.path.realpath(outdir))
    for given in inputs:
        real = Path(os.path.realpath(given))
        if not in_place and (out == real or real in out.parents or out in real.parents):
            raise UsageError(
                f"the output folder {outdir} overlaps the input {given}: choose an OUTDIR outside "
                f"the inputs (originals are never overwritten)"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", suffix=TEMP_SUFFIX, dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"cannot write to the output folder ({exc.strerror or exc})", outdir) from None
    return out
