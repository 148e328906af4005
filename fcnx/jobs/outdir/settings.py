"""``OUTDIR/.fcnx-crop.json``: the settings a crop OUTDIR's boxes were made with, and the fixed-name files fcnx wrote.

An OUTDIR made with other settings is refused (its boxes would mix); a fixed-name file
(``boxes.csv``, ``failures.txt``...) that is there but not listed is the user's, and refuses the
run: fcnx never replaces it. OUTDIRs of versions that did not list their files trust what is there.
``fcnx evaluate`` and ``fcnx suspects`` keep theirs the same way (``.fcnx-evaluate.json``,
``.fcnx-suspects.json``); a file of theirs without settings (written before they resumed) lists files only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fcnx.errors import UsageError, one_line
from fcnx.io.files import atomic_text, read_regular

SETTINGS = ".fcnx-crop.json"


class SettingsFile:
    """The settings file ``name`` of ``outdir`` for a run of ``command`` with ``settings`` (that make its ``what``)."""

    def __init__(
        self,
        outdir: Path,
        settings: dict[str, Any],
        name: str = SETTINGS,
        command: str = "fcnx crop",
        what: str = "boxes",
    ) -> None:
        self.outdir, self.settings, self.command, self.what = outdir, settings, command, what
        self.path = outdir / name
        self.files: set[str] = set()
        self._legacy = False
        self._stale = False

    def check(self, fixed: Iterable[str], journal: str) -> None:
        """Refuse other settings, a ``journal`` without settings, or a ``fixed`` file fcnx did not write; claim them."""
        fixed = set(fixed)
        if self.path.is_file():
            try:
                state = json.loads(read_regular(self.path).decode("utf-8"))
                previous, files = state.get("settings"), state.get("files")
                if previous is None and (self.outdir / journal).exists():
                    raise ValueError("no settings")
                if not isinstance(previous, (dict, type(None))):
                    raise ValueError("its settings are not a JSON object")
            except (OSError, ValueError, AttributeError, RecursionError):
                raise UsageError(f"unreadable settings file {self.path}; remove it or choose another OUTDIR") from None
            previous = self.settings if previous is None else previous  # files listed, nothing made yet
            changed = sorted(
                k
                for k in (set(previous) | set(self.settings)) - set(INFORMATIVE)
                if previous.get(k) != self.settings.get(k)
            )
            if changed:
                shown = "; ".join(f"{k}: {_shown(previous, k)} there, {_shown(self.settings, k)} now" for k in changed)
                raise UsageError(
                    f"{self.outdir} holds {self.what} made with other settings ({shown}); "
                    f"choose another OUTDIR, or run again with the same options to resume"
                )
            self._legacy = not isinstance(files, list)
            self.files = set() if self._legacy else {f for f in files if isinstance(f, str)}
            self._stale = any(previous.get(k) != self.settings.get(k) for k in INFORMATIVE)  # say what runs now
        elif (self.outdir / journal).exists():
            raise UsageError(f"{self.outdir} has a {journal} but no {self.path.name}; choose another OUTDIR")
        taken = [] if self._legacy else sorted(f for f in fixed - self.files if os.path.lexists(self.outdir / f))
        if taken:
            raise UsageError(
                f"{self.outdir} already holds {', '.join(map(one_line, taken))}, not written by {self.command}: "
                f"fcnx never replaces them; move them or choose another OUTDIR"
            )
        self.claim(fixed)

    def claim(self, rels: Iterable[str]) -> None:
        """List fixed-name files as fcnx's (before writing them)."""
        new = set(rels) - self.files
        if new or self._stale or not self.path.exists():
            self.files |= new
            self._stale = False
            state = {"version": 1, "settings": self.settings, "files": sorted(self.files)}
            atomic_text(self.path, json.dumps(state, indent=2, ensure_ascii=True) + "\n")


#: what an absent setting stands for (left out of the file so that OUTDIRs of earlier versions still resume)
ABSENT = {"box": "square", "in_place": False, "instances": 1, "precision": "fp32"}
#: settings recorded to say what ran, never compared: every backend gives the same boxes in fp32
INFORMATIVE = ("backend",)


def _shown(settings: dict[str, Any], key: str, most: int = 60) -> str:
    """A setting's value for a message: its repr, cut to ``most`` characters; for an absent one what it
    stands for (:data:`ABSENT`), else ``unset`` (the default)."""
    if key not in settings:
        return f"{ABSENT[key]!r} (unset)" if key in ABSENT else "unset (the default)"
    text = repr(settings[key])
    return text if len(text) <= most else text[: most - 3] + "..."
