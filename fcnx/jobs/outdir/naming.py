"""Where ``fcnx crop`` puts each output: mirrored names, in-place marks, names that fit and never clash.

A crop keeps its original's relative path (``--in-place``: ``<stem>.fcnx-crop<suffix>``); with
several categories the category goes before the suffix. A name that is taken by a file this
OUTDIR's journal does not give to the same image (the user's own file, another input's crop,
another category folded to the same safe name) gets a unique one: ``-2``, ``-3``... before the
suffix (and before the in-place mark).
Names longer than the file system's 255 bytes are shortened, keeping a hash of the full name.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path, PurePosixPath

#: what ``--in-place`` puts before a crop's suffix; files so named inside OUTDIR are fcnx's, never inputs
IN_PLACE_MARK = ".fcnx-crop"
HEATMAPS = "heatmaps"
MAPS = "maps"
#: the longest file name (bytes) of common file systems
NAME_MAX = 255


def entries(paths: Iterable[Path]) -> list[Path]:
    """Each path with its folder resolved but not its name: the directory entry a rename into it replaces."""
    folders: dict[Path, Path] = {}
    resolved = []
    for path in paths:
        if path.parent not in folders:
            folders[path.parent] = Path(os.path.realpath(path.parent))
        resolved.append(folders[path.parent] / path.name)
    return resolved


def is_own_output(entry: Path, outdir: Path) -> bool:
    """Whether ``entry`` (see :func:`entries`) is a file ``fcnx crop --in-place`` writes in ``outdir`` (a real path):
    a marked crop, a heatmap or a score map."""
    try:
        rel = entry.relative_to(outdir)
    except ValueError:
        return False
    return rel.parts[0] in (HEATMAPS, MAPS) or rel.name.endswith(IN_PLACE_MARK) or rel.stem.endswith(IN_PLACE_MARK)


def safe_name(text: str) -> str:
    """``text`` as a file-name part: runs of other characters than letters, digits, ``.``, ``-`` become ``_``."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "category"


def fit(rel: PurePosixPath) -> PurePosixPath:
    """``rel`` with its name shortened to :data:`NAME_MAX` bytes if longer (stem cut, a hash of the name added)."""
    name = os.fsencode(rel.name)
    if len(name) <= NAME_MAX:
        return rel
    suffix = os.fsencode(rel.suffix)[:32]
    tag = b"~" + hashlib.sha256(name).hexdigest()[:12].encode("ascii")
    stem = name[: NAME_MAX - len(tag) - len(suffix)]
    for cut in range(4):  # not through a UTF-8 character
        try:
            stem[: len(stem) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        stem = stem[: len(stem) - cut]
        break
    return rel.with_name(os.fsdecode(stem + tag + suffix))


def crop_name(rel: PurePosixPath, category: str | None, in_place: bool, n: int = 1) -> PurePosixPath:
    """Where the crop of input ``rel`` goes: ``category`` when the image gets several boxes, ``n`` > 1 for a unique name."""
    mark = IN_PLACE_MARK if in_place else ""
    part = (f".{safe_name(category)}" if category is not None else "") + (f"-{n}" if n > 1 else "")
    if not part and not mark:
        return rel
    return fit(rel.with_name(f"{rel.stem}{part}{mark}{rel.suffix}"))


def heatmap_name(rel: PurePosixPath, category: str | None, n: int = 1) -> PurePosixPath:
    """Where the heatmap picture of input ``rel`` goes: ``heatmaps/<stem>[.<category>][-<n>]<_suffix>.png``."""
    rel = PurePosixPath(HEATMAPS) / rel
    stem = (rel.stem if category is None else f"{rel.stem}.{safe_name(category)}") + (f"-{n}" if n > 1 else "")
    return fit(rel.with_name(f"{stem}{rel.suffix.replace('.', '_')}.png"))


def map_name(rel: PurePosixPath, category: str | None, n: int = 1) -> PurePosixPath:
    """Where the score map of input ``rel`` goes: ``maps/<name>[.<category>][-<n>].npy`` (wsolevaluation's
    ``<image id>.npy``, the image id being the path with its extension)."""
    name = rel.name + (f".{safe_name(category)}" if category is not None else "") + (f"-{n}" if n > 1 else "")
    return fit(PurePosixPath(MAPS) / rel.with_name(f"{name}.npy"))


def unique(name: Callable[[int], PurePosixPath], free: Callable[[PurePosixPath], bool]) -> PurePosixPath:
    """The first of ``name(1)``, ``name(2)``, ... that is ``free``."""
    n = 1
    while not free(candidate := name(n)):
        n += 1
    return candidate


class OutputNames:
    """Reserves each image's output names in ``outdir`` (see the module).

    ``owner``: the output files the journal gives to an image (relative path -> source path);
    ``protected``: files never written (the inputs).
    """

    def __init__(
        self,
        outdir: Path,
        owner: dict[str, str],
        protected: Iterable[Path],
        *,
        crops: bool,
        heatmaps: bool,
        in_place: bool,
        maps: bool = False,
    ) -> None:
        self.outdir, self.owner = outdir, owner  # kept up to date as names are reserved
        self.protected = set(entries(protected))
        self.crops, self.heatmaps, self.in_place, self.maps = crops, heatmaps, in_place, maps

    def _free(self, rel: PurePosixPath, key: str) -> bool:
        owner = self.owner.get(rel.as_posix())
        if owner is not None:
            return owner == key
        path = self.outdir / rel
        return entries([path])[0] not in self.protected and not os.path.lexists(path)

    def reserve(
        self, key: str, rel: PurePosixPath, categories: Sequence[str | None]
    ) -> list[tuple[PurePosixPath | None, PurePosixPath | None, PurePosixPath | None]]:
        """The crop, heatmap and score-map names (``None`` when not written) of input ``rel`` (source path
        ``key``), one triple per box; ``categories``: each box's, ``None`` when the image gets one box."""
        used: set[PurePosixPath] = set()  # names given to this image's other boxes

        def free(name: PurePosixPath) -> bool:
            return name not in used and self._free(name, key)

        names = []
        for category in categories:
            crop = unique(partial(crop_name, rel, category, self.in_place), free) if self.crops else None
            heatmap = unique(partial(heatmap_name, rel, category), free) if self.heatmaps else None
            score_map = unique(partial(map_name, rel, category), free) if self.maps else None
            for name in (crop, heatmap, score_map):
                if name is not None:
                    used.add(name)
                    self.owner[name.as_posix()] = key
            names.append((crop, heatmap, score_map))
        return names
