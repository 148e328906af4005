"""Files written so that a kill, a full disk or a power loss never leaves a half-written one.

Every file goes to a short temporary name in its folder (so that a name near the 255-byte limit
still fits), is flushed to disk, then renamed into place; the folder is flushed after the rename.
An output folder is locked for one run at a time (:class:`OutdirLock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fcnx.errors import FcnxError, UsageError

T = TypeVar("T")


def cache_dir() -> Path:
    """Where fcnx keeps what it measures and exports: ``$FCNX_CACHE``, else ``~/.cache/fcnx``."""
    return Path(os.environ.get("FCNX_CACHE") or Path.home() / ".cache" / "fcnx")


#: permissions of the files fcnx writes (what a plain ``open(..., "w")`` gives under the usual umask 022)
FILE_MODE = 0o644
#: suffix of the temporary files fcnx writes before renaming them into place (a killed run's are deleted)
TEMP_SUFFIX = ".fcnx-tmp"
#: the lock file a run holds in its output folder
LOCK = ".fcnx-lock"
#: errors that mean the disk (or the user's quota) is full
FULL = (errno.ENOSPC, errno.EDQUOT)


#: the kinds of files that are neither regular files nor folders, in words
SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words: ``a regular file``, ``a folder``, ``a named pipe``..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((name for test, name in SPECIAL_FILES if test(mode)), "a special file")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says that the disk or the quota is full."""
    return isinstance(exc, OSError) and exc.errno in FULL


def _temporary(folder: Path) -> tuple[int, str]:
    """A new temporary file in ``folder`` (an 18-byte name, whatever the final name's length)."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=folder)
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


def sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (renames into it) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Outputs written into ``folder`` in this block: an ``OSError`` (a full disk, a permission taken away)
    becomes a one-line :class:`~fcnx.errors.FcnxError` naming the folder."""
    try:
        yield
    except OSError as exc:
        raise FcnxError(f"cannot write outputs ({exc.strerror or exc})", folder) from None


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file at ``path``; ``OSError`` for anything else (a FIFO would block for ever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        return file.read()


def read_json_file(path: Path, name: str, parse: Callable[[dict[str, Any]], T], noun: str, what: str) -> T:
    """The JSON object in file ``name`` at ``path`` (the file, or the folder holding it) built and checked by
    ``parse``; a missing file ("no such ``noun``"), or one that is not ``what`` (``parse`` raising ``ValueError``,
    ``KeyError``, ``TypeError``...), is a one-line :class:`~fcnx.errors.UsageError` naming it."""
    path = path / name if path.is_dir() else path
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return parse(data)
    except FileNotFoundError:
        raise UsageError(f"no such {noun}", path) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UsageError(f"not {what} ({type(exc).__name__}: {exc})", path) from None


def read_class_list(path: Path) -> list[str]:
    """Class names, one a line, of the text file at ``path`` (``--classes``): a UTF-8 BOM, CRLF, blank lines and
    spaces around names are fine; a file that is not a readable regular UTF-8 file, holds no name, names a class
    twice or a name with control characters is a one-line :class:`~fcnx.errors.UsageError` naming it."""
    try:
        text = read_regular(path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the class list ({exc})", path) from None
    classes = [line.strip() for line in text.splitlines() if line.strip()]
    if not classes:
        raise UsageError("class list is empty", path)
    seen: set[str] = set()
    for name in classes:
        if not name.isprintable():
            raise UsageError(f"class list names {name!r}, which holds control characters", path)
        if name in seen:
            raise UsageError(f"class list names {name!r} twice: each class is one category id", path)
        seen.add(name)
    return classes


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def stage_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to a new temporary file beside ``path``, flushed to disk; returns its name (see :func:`commit`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path.parent)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def commit(tmp: str, path: Path) -> None:
    """Rename the staged ``tmp`` to ``path`` and flush the folder (the temporary is removed if that fails)."""
    try:
        os.replace(tmp, path)
        sync_folder(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_bytes(path: Path, data: bytes) -> Path:
    """Create or replace ``path`` with ``data`` atomically and durably."""
    commit(stage_bytes(path, data), path)
    return path


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Create ``path`` via ``write(file)`` on a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path.parent)
    try:
        encoding, newline = (None, None) if "b" in mode else ("utf-8", "")
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_bytes(path, text.encode("utf-8"))


def remove_temporaries(folder: Path) -> int:
    """Delete temporary files a killed run left under ``folder``; returns how many."""
    count = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                os.unlink(os.path.join(dirpath, name))
                count += 1
    return count


def check_folder_path(folder: Path) -> None:
    """Refuse an output ``folder`` that is not a folder and that fcnx would create through a symbolic link.

    The deepest part of ``folder`` that exists must be a folder (a link to one is fine): a dangling
    link (``mkdir`` would create its target, wherever it points) or a file, or a link to one, is
    a one-line :class:`~fcnx.errors.UsageError` naming that part.
    """
    part = Path(os.path.abspath(folder))
    while not os.path.lexists(part):
        part = part.parent
    try:
        mode: int | None = os.stat(part).st_mode
    except OSError:  # a link to nothing or a loop, or a folder on the way that cannot be searched
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        return
    name = folder if part == Path(os.path.abspath(folder)) else part
    if os.path.islink(part):
        why = "that leads nowhere (dangling, or a loop)" if mode is None else f"to {kind_of(mode)}"
        raise UsageError(
            f"is a symbolic link {why} ({os.readlink(part)}): fcnx does not create or write through it; "
            f"create the folder, or choose another output folder",
            name,
        )
    if mode is not None:
        raise UsageError(f"is {kind_of(mode)}, not a folder: choose another output folder", name)


def check_outdir(outdir: Path, inputs: Sequence[Path], in_place: bool = False) -> Path:
    """Refuse an OUTDIR that is, contains or lies inside an input (unless ``in_place``) or that is not a folder
    (:func:`check_folder_path`); create it, check it is writable."""
    check_folder_path(outdir)
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


def claim_outputs(folder: Path, names: Sequence[str], command: str) -> None:
    """Refuse to replace a file of ``names`` in ``folder`` that ``command`` (``fcnx evaluate``) did not write
    there; then list ``names`` as its own in ``folder/.fcnx-<command>.json``, before they are written.

    A rerun into the same folder replaces its own outputs; a user's ``evaluation.csv`` is never replaced.
    """
    marker = folder / f".{command.replace(' ', '-')}.json"
    try:
        listed = json.loads(read_regular(marker))["files"]
        if not isinstance(listed, list):
            raise TypeError("files is not a list")
    except FileNotFoundError:
        listed = []
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UsageError(
            f"unreadable list of {command}'s files ({exc}); remove it or choose another folder", marker
        ) from None
    taken = sorted(name for name in names if name not in listed and os.path.lexists(folder / name))
    if taken:
        raise UsageError(
            f"already holds {', '.join(taken)}, not written by {command}: fcnx never replaces them; "
            f"move them or choose another output folder",
            folder,
        )
    with writing(folder):
        atomic_text(marker, json.dumps({"files": sorted({*listed, *names})}, indent=1) + "\n")


class OutdirLock:
    """An exclusive lock on ``folder/.fcnx-lock`` (or ``folder/name``) for one run; a second run is refused, naming
    the holder. ``fcnx review`` holds its own lock file: a review and a crop run do not exclude each other.

    A POSIX record lock (``fcntl.lockf``): it belongs to the process that took it and no child
    inherits it, so decoding workers that a ``kill -9`` left running never keep OUTDIR locked (a
    ``flock`` belongs to the open file, which ``fork`` shares). Such a lock ends when its process
    closes *any* descriptor of the file, so within one process a second lock of the same file is
    refused before the file is opened (``_HELD``), and nothing else in fcnx opens it.

    While held, the lock file holds the holder's pid, host, command line and start time (for that
    message); it is emptied but stays in place when released (removing it would let a third run
    lock another file).
    """

    def __init__(self, folder: Path, what: str = "fcnx", name: str = LOCK) -> None:
        self.path = folder / name
        self.what = what
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None

    def __enter__(self) -> OutdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (if not held yet), or raise :class:`~fcnx.errors.UsageError` saying who holds it."""
        if self._fd is not None:
            return
        with _HELD_GUARD:
            key = _file_key(self.path)
            held = None if key is None else _HELD.get(key)
            if held is not None and held._fd is not None:  # opening the file would release that lock
                self._refuse(held._fd)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            except OSError as exc:
                raise UsageError(f"cannot create the lock file ({exc.strerror or exc})", self.path) from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                busy = exc.errno in (errno.EACCES, errno.EAGAIN)
                try:
                    if busy:
                        self._refuse(fd)
                    raise UsageError(f"cannot lock ({exc.strerror or exc})", self.path) from None
                finally:
                    os.close(fd)
            info = os.fstat(fd)
            self._fd, self._key = fd, (info.st_dev, info.st_ino)
            _HELD[self._key] = self
        about = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "what": self.what,
        }
        try:  # who holds it, for a second run's message (not needed for the lock itself)
            os.ftruncate(fd, 0)
            write_all(fd, (json.dumps(about, ensure_ascii=True) + "\n").encode("ascii"))
        except OSError:
            pass

    def _refuse(self, fd: int) -> None:
        raise UsageError(
            f"{self.path.parent} is in use by another run ({_holder(fd)}); wait for it to end or choose another OUTDIR"
        )

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # an idle OUTDIR's lock file is empty
            except OSError:
                pass
            with _HELD_GUARD:
                os.close(self._fd)  # releases the lock
                if self._key is not None:
                    _HELD.pop(self._key, None)
                self._fd = self._key = None


#: the locks this process holds, by the lock file's (device, inode)
_HELD: dict[tuple[int, int], OutdirLock] = {}
_HELD_GUARD = threading.Lock()


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _holder(fd: int) -> str:
    try:
        about = json.loads(os.pread(fd, 65536, 0))
        return f"{about['what']}, pid {about['pid']} on {about['host']}, started {about['started']}: {about['command']}"
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return "holder unknown"
