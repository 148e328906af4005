"""Kept files: what a reader computed once (numpy arrays and a JSON header), kept in OUTDIR under a checksum so that
the next reader takes it instead of computing it again. Written atomically; read back only whole and unaltered."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fcnx.io.files import atomic_bytes, read_regular


def write_kept(path: Path, magic: bytes, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Keep ``meta`` and ``arrays`` at ``path`` after ``magic`` (a line naming the kind and its version); a folder
    that cannot be written to is left as it is (the next reader computes them again)."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    layout = [[name, array.dtype.str, len(array)] for name, array in contiguous.items()]
    header = json.dumps({**meta, "arrays": layout}).encode() + b"\n"
    payload = b"".join(array.tobytes() for array in contiguous.values())
    checksum = zlib.crc32(payload, zlib.crc32(header))
    try:
        atomic_bytes(path, magic + b"%08x\n" % checksum + header + payload)
    except OSError:
        pass


def read_kept(path: Path, magic: bytes, names: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and the arrays (read-only views) kept at ``path``: ``None`` where there is no such file, or none
    of this ``magic`` with exactly the arrays ``names``, whole and unaltered (its checksum)."""
    try:
        data = read_regular(path)
        if not data.startswith(magic):
            return None
        rest = memoryview(data)[len(magic) :]
        checksum = int(bytes(rest[:8]), 16)
        end = data.index(b"\n", len(magic) + 9) + 1
        header, payload = data[len(magic) + 9 : end], memoryview(data)[end:]
        if rest[8:9] != b"\n" or zlib.crc32(payload, zlib.crc32(header)) != checksum:
            return None
        meta = json.loads(header)
        arrays: dict[str, Any] = {}
        at = 0
        for name, dtype, length in meta.pop("arrays"):
            array = np.frombuffer(payload, dtype=np.dtype(dtype), count=length, offset=at)
            arrays[name], at = array, at + array.nbytes
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return (meta, arrays) if at == len(payload) and sorted(arrays) == sorted(names) else None
