"""The crop record: one line of ``boxes.jsonl`` and one row of ``boxes.csv``, per image and category (and instance).

:class:`CropRecord` is the one place its fields are declared: their order and types give the JSON line
(:meth:`CropRecord.to_json`), the fields and JSON types the check requires (:data:`FIELDS`,
:func:`record_problem`) and the columns of ``boxes.csv`` (:meth:`CropRecord.csv_columns`). A field's place in
the table is its ``csv`` rank (``None``: not in the table; a field without one goes last, as does a field of a
later version). The boxes besides ``x, y, w, h`` (one per box rule the record keeps) are the fields typed
``XYWH | None``; each gives four columns (``window_x`` ...).

Lines carry no version field: :data:`VERSION` 1 is the format without one; a later format that cannot be read
as this one adds it. A line read from a file becomes a :class:`CropRecord` with :meth:`CropRecord.parse`
(:func:`record_problem`'s checks); a line that is not one is reported with :func:`line_warning`, a last line cut
short by a kill with :func:`cut_warning`, each in one wording. Hand-written box files (``fcnx evaluate
--crops``, ``fcnx export``) need only a box: :func:`read_box`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

#: the format of the lines: version 1 carries no ``version`` field; a line with another one is not read
VERSION = 1

#: a box ``(x, y, w, h)`` in the image's upright pixels
XYWH = tuple[float, float, float, float]
#: one of the ensemble's guesses of the whole image: ``(class, mean probability, votes)``
Guess = tuple[str, float, int]
#: a record as JSON gives it (``json.loads`` of a line)
Json = dict[str, Any]

_NUMBER = (int, float)
#: the JSON types of each annotation of :class:`CropRecord`
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "int": (int,),
    "int | None": (int, type(None)),
    "bool": (bool,),
    "float": _NUMBER,
    "tuple[int, int]": (list,),
    "dict[str, float]": (dict,),
    "dict[str, bool]": (dict,),
    "XYWH | None": (list, type(None)),
    "tuple[Guess, ...]": (list,),
}


def _csv(rank: float | None, column: str | None = None) -> dict[str, Any]:
    """A field's place among the columns of ``boxes.csv`` (``None``: not in it); ``column``: the prefix of a per-net
    map's columns (``score:<net>``)."""
    return {"csv": rank, "column": column}


@dataclass(frozen=True, kw_only=True)
class CropRecord:
    """Where the ensemble found one category in one image, and the files made of it.

    The image: ``path`` (as given), ``file`` (relative to its root), ``label`` and upright ``width``, ``height``;
    the source file's ``source_size`` and ``source_mtime_ns`` (the image is done when they still match). The box
    (:class:`fcnx.engine.results.Box`): ``x, y, w, h`` (``box_kind`` says which rule gave it), the cell ``cell``
    of level ``level`` (``scale``, ``scaled_size``), the votes and summed probability of ``nets`` nets
    (``net_scores``, ``net_votes``), the window and tight box (``fitted`` with that rule), ``instance`` (its rank
    among the category's boxes). Its files (relative to OUTDIR): ``crop``, ``heatmap``, ``map``. ``guesses``: the
    ensemble's top classes of the whole image. ``mean_confidence`` and the corners ``x1, y1, x2, y2`` follow from
    the others. Fields with defaults may be absent from lines of earlier runs.
    """

    path: str = field(metadata=_csv(1))
    file: str = field(metadata=_csv(0))
    label: str | None = field(metadata=_csv(2))
    width: int = field(metadata=_csv(None))
    height: int = field(metadata=_csv(None))
    category: str = field(metadata=_csv(3))
    category_index: int = field(metadata=_csv(4))
    found: bool = field(metadata=_csv(5))
    votes: int = field(metadata=_csv(6))
    nets: int = field(metadata=_csv(7))
    confidence: float = field(metadata=_csv(8))
    mean_confidence: float = field(metadata=_csv(9))
    scale: float = field(metadata=_csv(10))
    level: int = field(metadata=_csv(11))
    cell: tuple[int, int] = field(metadata=_csv(12))
    scaled_size: tuple[int, int] = field(metadata=_csv(None))
    x: float = field(metadata=_csv(13))
    y: float = field(metadata=_csv(14))
    w: float = field(metadata=_csv(15))
    h: float = field(metadata=_csv(16))
    x1: float = field(metadata=_csv(17))
    y1: float = field(metadata=_csv(18))
    x2: float = field(metadata=_csv(19))
    y2: float = field(metadata=_csv(20))
    net_scores: dict[str, float] = field(metadata=_csv(23, "score"))
    net_votes: dict[str, bool] = field(metadata=_csv(24, "vote"))
    levels_examined: int = field(metadata=_csv(None))
    stopped_early: bool = field(metadata=_csv(None))
    box_kind: str | None = field(default=None, metadata=_csv(25))
    window: XYWH | None = field(default=None, metadata=_csv(26))
    tight: XYWH | None = field(default=None, metadata=_csv(27))
    fitted: XYWH | None = field(default=None, metadata=_csv(28))
    instance: int | None = field(default=None, metadata=_csv(30))
    crop: str | None = field(metadata=_csv(21))
    heatmap: str | None = field(metadata=_csv(22))
    map: str | None = field(default=None, metadata=_csv(29))
    source_size: int = field(metadata=_csv(None))
    source_mtime_ns: int = field(metadata=_csv(None))
    guesses: tuple[Guess, ...] = field(default=(), metadata=_csv(None))

    @classmethod
    def parse(cls, data: Json | None) -> CropRecord:
        """The record of a JSON line read from a file; ``ValueError`` saying what is wrong (:func:`record_problem`)
        if it is none."""
        problem = record_problem(data)
        if problem is not None:
            raise ValueError(problem)
        assert data is not None
        return cls.from_json(data)

    @classmethod
    def from_line(cls, raw: bytes) -> CropRecord:
        """The record of a line's bytes (:func:`parse_line`, then :meth:`parse`)."""
        return cls.parse(parse_line(raw))

    @classmethod
    def from_json(cls, data: Json) -> CropRecord:
        """The record of the JSON form of one fcnx holds (one it wrote, or :meth:`parse` checked), unchecked."""
        return cls(**{name: _frozen(data[name]) for name in _names(cls) if name in data})

    def to_json(self) -> Json:
        """The JSON line's object (lists for tuples), fields in declaration order."""
        return {name: _thawed(getattr(self, name)) for name in _names(type(self))}

    @classmethod
    def csv_columns(cls, net_names: Sequence[str]) -> list[str]:
        """The columns of ``boxes.csv`` for the nets ``net_names``, in the fields' ``csv`` order."""
        return [column for _, columns in _table(cls, tuple(net_names)) for column in columns]

    def csv_row(self, net_names: Sequence[str]) -> dict[str, Any]:
        """The record as a row of ``boxes.csv`` (a column whose box is absent stays empty)."""
        row: dict[str, Any] = {}
        nets = tuple(net_names)
        for name, columns in _table(type(self), nets):
            value = getattr(self, name)
            if isinstance(value, dict):
                row.update({column: value.get(net) for column, net in zip(columns, nets)})
            elif isinstance(value, tuple):
                row.update(zip(columns, value))
            else:
                row[name] = value
        return row


_NAMES: dict[type[CropRecord], tuple[str, ...]] = {}
_TABLES: dict[tuple[type[CropRecord], tuple[str, ...]], tuple[tuple[str, tuple[str, ...]], ...]] = {}


def _names(cls: type[CropRecord]) -> tuple[str, ...]:
    """The fields of ``cls`` in declaration order (the JSON line's), worked out once per class."""
    if cls not in _NAMES:
        _NAMES[cls] = tuple(f.name for f in fields(cls))
    return _NAMES[cls]


def _table(cls: type[CropRecord], nets: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The fields of ``cls`` that ``boxes.csv`` shows for ``nets``, in its order (fields without a rank last), each
    with its columns: per net for a map, ``_i``/``_j`` for a cell, ``_x`` ... ``_h`` for a box (once per class)."""
    if (cls, nets) not in _TABLES:
        ranked = [(f.metadata.get("csv", math.inf), k, f) for k, f in enumerate(fields(cls))]
        shown = [f for _, _, f in sorted((t for t in ranked if t[0] is not None), key=lambda t: t[:2])]
        _TABLES[cls, nets] = tuple((f.name, tuple(_columns(f, nets))) for f in shown)
    return _TABLES[cls, nets]


def _columns(f: Any, nets: tuple[str, ...]) -> list[str]:
    kind = str(f.type)
    if kind.startswith("dict["):
        return [f"{f.metadata['column']}:{net}" for net in nets]
    if kind == "tuple[int, int]":
        return [f"{f.name}_i", f"{f.name}_j"]
    if kind == "XYWH | None":
        return [f"{f.name}_{c}" for c in "xywh"]
    return [f.name]


#: the boxes a record keeps besides ``x, y, w, h``, one field each (typed ``XYWH | None``)
BOXES = tuple(f.name for f in fields(CropRecord) if str(f.type) == "XYWH | None")


def _frozen(value: Any) -> Any:
    """JSON lists as tuples (nested too), maps copied."""
    if isinstance(value, list):
        return tuple(map(_frozen, value))
    return dict(value) if isinstance(value, dict) else value


def _thawed(value: Any) -> Any:
    """Tuples as JSON lists (nested too), maps copied."""
    if isinstance(value, tuple):
        return list(map(_thawed, value))
    return dict(value) if isinstance(value, dict) else value


# --------------------------------------------------------------------------- the checks of a line

#: the fields every record holds and their JSON types (``None`` allowed where listed); other fields are kept as is
FIELDS: dict[str, tuple[type, ...]] = {
    f.name: _JSON_TYPES[str(f.type)] for f in fields(CropRecord) if f.default is MISSING
}
#: the fields a record may lack (lines of earlier runs) and their JSON types
OPTIONAL: dict[str, tuple[type, ...]] = {
    f.name: _JSON_TYPES[str(f.type)] for f in fields(CropRecord) if f.default is not MISSING
}
_KEYS = tuple(FIELDS)
_NUMBERS = tuple(key for key, types in FIELDS.items() if float in types)
#: the field types (a tuple, in ``FIELDS``'s order) of records that passed the quick check's type test
_SEEN_TYPES: set[tuple[type, ...]] = set()


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number
    return isinstance(value, types) and not (isinstance(value, float) and not math.isfinite(value))


def _quick_ok(record: Json) -> bool:
    """Whether ``record`` is plainly a whole crop record, as ``json.loads`` gives one: what :func:`record_problem`
    checks, with exact types and few Python steps (``False`` only means: look closer)."""
    get = record.__getitem__
    try:
        types = tuple(map(type, map(get, _KEYS)))
        if types not in _SEEN_TYPES:
            if not all(kind in FIELDS[key] for key, kind in zip(_KEYS, types)):
                return False
            _SEEN_TYPES.add(types)
        ok = all(map(math.isfinite, map(get, _NUMBERS))) and all(map(math.isfinite, get("net_scores").values()))
    except (KeyError, OverflowError, TypeError):
        return False
    scores, votes = get("net_scores"), get("net_votes")
    return (
        ok
        and get("width") > 0 < get("height")
        and get("w") > 0 < get("h")
        and all(len(pair) == 2 and type(pair[0]) is int is type(pair[1]) for pair in (get("cell"), get("scaled_size")))
        and {*map(type, scores), *map(type, votes)} <= {str}
        and {*map(type, scores.values())} <= {int, float}
        and {*map(type, votes.values())} <= {bool}
        and _inside(get("crop"))
        and _inside(get("heatmap"))
    )


def _inside(rel: str | None) -> bool:
    return rel is None or (bool(rel) and not rel.startswith("/") and ".." not in rel.split("/") and "\\" not in rel)


def record_problem(record: Json | None) -> str | None:
    """Why ``record`` is not a whole crop record (``None`` when it is): the fields of :data:`FIELDS` with their
    types and values, and the optional ones (:data:`OPTIONAL`) where given."""
    if record is None:
        return "not a JSON object"
    if not _quick_ok(record):
        problem = _required_problem(record)
        if problem is not None:
            return problem
    return _optional_problem(record)


def _required_problem(record: Json) -> str | None:
    """What is wrong with the fields of :data:`FIELDS` of ``record``, one at a time."""
    for key, types in FIELDS.items():
        if key not in record:
            return f"no field {key!r}"
        if not _fits(record[key], types):
            return f"field {key!r} has the wrong type or value ({type(record[key]).__name__})"
    for key in ("width", "height", "w", "h"):  # the gallery divides by the image's sides
        if not record[key] > 0:
            return f"field {key!r} is not a side ({record[key]})"
    for key in ("cell", "scaled_size"):
        if len(record[key]) != 2 or not all(_fits(v, (int,)) for v in record[key]):
            return f"field {key!r} is not two integers"
    for key, types in (("net_scores", _NUMBER), ("net_votes", (bool,))):
        if not all(isinstance(k, str) and _fits(v, types) for k, v in record[key].items()):
            return f"field {key!r} is not a map of net names to {'numbers' if types is _NUMBER else 'booleans'}"
    for key in ("crop", "heatmap"):
        if not _inside(record[key]):
            return f"field {key!r} is not a path inside OUTDIR"
    return None


def _optional_problem(record: Json) -> str | None:
    """What is wrong with the optional fields (:data:`OPTIONAL`) ``record`` gives; a line of another format
    version (a ``version`` field other than :data:`VERSION`) is not read."""
    if record.get("version", VERSION) != VERSION:
        return f"format version {record['version']!r}; this fcnx reads version {VERSION}"
    for key, types in OPTIONAL.items():
        if key in record and not _fits(record[key], types):
            return f"field {key!r} has the wrong type or value ({type(record[key]).__name__})"
    for key in BOXES:
        box = record.get(key)
        if box is not None and (len(box) != 4 or not all(_fits(v, _NUMBER) for v in box)):
            return f"field {key!r} is not a box [x, y, w, h]"
    if not _inside(record.get("map")):
        return "field 'map' is not a path inside OUTDIR"
    if not _are_guesses(record.get("guesses", [])):
        return "field 'guesses' is not a list of [class, probability, votes]"
    return None


def _are_guesses(value: Any) -> bool:
    """Whether ``value`` is a record's optional ``guesses`` (runs before it lack it): the ensemble's top classes of
    the whole image, ``[class, probability, votes]`` each (:attr:`fcnx.engine.results.CropResult.guesses`)."""
    return isinstance(value, list) and all(
        isinstance(g, list) and len(g) == 3 and isinstance(g[0], str) and _fits(g[1], _NUMBER) and _fits(g[2], (int,))
        for g in value
    )


# --------------------------------------------------------------------------- what readers say and accept


def parse_line(raw: bytes) -> Json | None:
    """The JSON object of one line's bytes; ``None`` when it is none (not JSON, bad UTF-8, nested too deep, not an
    object)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def line_warning(path: object, number: int, problem: str, action: str = "skipped") -> str:
    """The one line of a journal line that is not a crop record: where, why (:func:`record_problem`), what was done."""
    return f"{path}:{number}: not a crop record ({problem}); {action}"


def cut_warning(path: object) -> str:
    """The one line of a journal whose last line a kill cut short (it is dropped)."""
    return f"{path}: the last line is cut short (a killed run?), dropped"


def number_field(source: Json, key: str) -> float:
    """The number ``source[key]``; text (``"12.5"``), ``true`` or another type is a ``ValueError``."""
    value = source[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field {key!r} is not a number ({value!r})")
    return float(value)


def read_box(source: Any) -> XYWH:
    """The box of a line of a box file (a crop record, or a hand-written line): its ``x, y, w, h`` fields, or a nested
    ``box`` object's, or a box given as ``[x, y, w, h]``; ``ValueError`` unless four finite numbers with ``w, h > 0``
    (``KeyError`` for a missing one)."""
    if isinstance(source, list | tuple):
        source = dict(zip("xywh", source))
    elif isinstance(source.get("box"), dict):
        source = source["box"]
    x, y, w, h = (number_field(source, k) for k in "xywh")
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"empty or invalid box {(x, y, w, h)}")
    return x, y, w, h


@dataclass(frozen=True)
class BoxLine:
    """What a line of a box file gives (a crop record, or a hand-written line with a box): the image's ``path``,
    its box (:func:`read_box`), the box's ``category`` and the image's ``file`` (relative to its root) where given,
    its ``(height, width)`` where both are given (whole numbers, not checked for > 0), and the whole ``line``."""

    path: str
    box: XYWH
    category: str | None
    file: str | None
    size: tuple[int, int] | None
    line: Json = field(repr=False)

    @classmethod
    def of(cls, data: Json | None) -> BoxLine:
        """The box line of a JSON line; ``ValueError`` (or ``KeyError`` for a missing field) saying what is wrong."""
        if data is None:
            raise ValueError("not a JSON object")
        box = read_box(data)
        if not isinstance(data["path"], str):
            raise ValueError(f"field 'path' is not a path ({data['path']!r})")
        category = data.get("category")
        if not isinstance(category, str | None):
            raise ValueError("its category is no name")
        for side in ("width", "height"):
            if data.get(side) is not None and (isinstance(data[side], bool) or not isinstance(data[side], int)):
                raise ValueError(f"field {side!r} is not a side in pixels ({data[side]!r})")
        height, width = data.get("height"), data.get("width")
        size = None if height is None or width is None else (height, width)
        file = data.get("file")
        return cls(data["path"], box, category, file if isinstance(file, str) else None, size, data)
