"""``ensemble.json``: the ensemble ``fcnx train --nets`` trained, as ``fcnx crop/evaluate --ensemble`` read it.

No deep-learning import here: the CLI reads the file before any framework is loaded. Fields:
``members`` (each ``net``, ``checkpoint`` relative to the file, ``val_top1``, ``finished``),
``kernel`` (the common training size), ``classes``, ``config`` (the settings shared by the
members), ``val_top1`` (the ensemble's mean-probability top-1 on the validation images) and
``complete`` (every member trained).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError
from fcnx.io.files import atomic_text, read_json_file

MANIFEST = "ensemble.json"


@dataclass
class Member:
    """One net of the ensemble and its run (``outdir/<net>/``)."""

    net: str
    checkpoint: str
    val_top1: float | None = None
    finished: bool = False


@dataclass
class Manifest:
    """What ``ensemble.json`` holds (see the module docstring)."""

    members: list[Member]
    kernel: int
    config: dict[str, Any]
    classes: list[str] = field(default_factory=list)
    val_top1: float | None = None
    complete: bool = False
    version: int = 1

    def write(self, outdir: Path) -> Path:
        return atomic_text(outdir / MANIFEST, json.dumps(asdict(self), indent=1) + "\n")


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path`` (a file, or a run folder holding ``ensemble.json``); one-line errors naming it."""
    return read_json_file(path, MANIFEST, _manifest, "ensemble file", "an ensemble file of fcnx train --nets")


def _manifest(data: dict[str, Any]) -> Manifest:
    members = [Member(**m) for m in data.pop("members")]
    manifest = Manifest(members=members, **data)
    if not isinstance(manifest.kernel, int) or isinstance(manifest.kernel, bool) or manifest.kernel < 1:
        raise ValueError(f"kernel {manifest.kernel!r} is not a side in pixels")
    if not isinstance(manifest.complete, bool):
        raise ValueError(f"complete {manifest.complete!r} is neither true nor false")
    for member in members:  # names of nets and files, as fcnx train writes them (a NUL is in no file name)
        for key in ("net", "checkpoint"):
            value = getattr(member, key)
            if not isinstance(value, str) or not value.strip() or "\0" in value:
                raise ValueError(f"a member's {key} {value!r} is not a name")
    nets = [member.net for member in members]
    twice = next((net for k, net in enumerate(nets) if net in nets[:k]), None)
    if twice is not None:
        raise ValueError(f"the net {twice!r} is a member twice")
    return manifest


def ensemble_weights(path: Path) -> tuple[list[str], dict[str, str], int]:
    """Nets, their checkpoint files and the common kernel of the trained ensemble at ``path``."""
    manifest = read_manifest(path)
    path = path / MANIFEST if path.is_dir() else path
    if not manifest.complete:
        raise UsageError(f"its training has not finished: continue it with fcnx train --resume -o {path.parent}", path)
    if not manifest.members:
        raise UsageError("lists no nets: not an ensemble trained by fcnx train --nets", path)
    files = {m.net: str((path.parent / m.checkpoint).resolve()) for m in manifest.members}
    missing = [f for f in files.values() if not Path(f).is_file()]
    if missing:
        raise UsageError(f"checkpoint {missing[0]} of the ensemble is missing", path)
    return [m.net for m in manifest.members], files, manifest.kernel
