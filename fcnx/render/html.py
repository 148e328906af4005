"""The HTML pages: ``gallery.html`` (``fcnx crop --gallery``) and ``suspects.html`` (``fcnx suspects``).

Jinja2 templates with autoescape: every name is escaped as text (shown on one line, see
:func:`fcnx.errors.one_line`), and every link is a percent-encoded relative URL of the file's
exact bytes, so names with ``%``, ``?``, ``#``, quotes, markup or bytes that are not UTF-8 link
to the right file and inject nothing.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from fcnx.errors import one_line

_ENV = jinja2.Environment(autoescape=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
_ENV.filters["text"] = one_line

GALLERY_PAGE = 500

_GALLERY = _ENV.from_string(
    """<!doctype html>
<html><head><meta charset="utf-8"><title>fcnx crops</title>
<style>
body { font-family: sans-serif; margin: 1em; }
.item { display: flex; gap: 8px; align-items: flex-start; margin: 0 0 12px; border-bottom: 1px solid #ddd; padding-bottom: 8px; }
.item img { max-height: 240px; max-width: 320px; }
.orig { position: relative; display: inline-block; line-height: 0; }
.orig img { max-height: 240px; max-width: 320px; }
.box { position: absolute; border: 2px solid #2f2; box-sizing: border-box; }
.item p { margin: 0; font-size: 13px; }
.bad { color: #c00; font-weight: bold; }
</style></head><body>
{% macro pages() %}<p>Pages: {% for name in names %}{% if not loop.first %} {% endif %}{% if loop.index0 == page %}<b>{{ loop.index }}</b>{% else %}<a href="{{ name }}">{{ loop.index }}</a>{% endif %}{% endfor %}</p>{% endmacro -%}
{{ pages() }}
{% for r in rows %}{% if not loop.first %}
{% endif %}<div class="item"><div class="orig"><img src="{{ r.original }}" loading="lazy" alt="original"><div class="box" style="left:{{ r.left }}%;top:{{ r.top }}%;width:{{ r.width }}%;height:{{ r.height }}%"></div></div>{% for kind, url in r.shown %}<img src="{{ url }}" loading="lazy" alt="{{ kind }}">{% endfor %}<p>{{ r.file | text }}<br>{{ r.category | text }}: {{ r.votes }}/{{ r.nets }} votes, p {{ r.p }}{% if not r.found %} <span class="bad">not found</span>{% endif %}</p></div>{% endfor %}
{{ pages() }}
</body></html>
"""
)

_SUSPECTS = _ENV.from_string(
    "<!doctype html><meta charset='utf-8'><title>fcnx suspects</title><style>body{font:14px sans-serif}"
    "figure{display:inline-block;width:200px;margin:6px;vertical-align:top}img{max-width:192px}</style>"
    "<h1>{{ cards | length }} suspected label(s) in {{ root | text }}</h1>"
    "<p>{{ signal }}; red: where the ensemble sees its own top class.</p>"
    '{% for c in cards %}<figure>{% if c.thumbnail %}<img src="{{ c.thumbnail }}" alt="">{% endif %}'
    "<figcaption>#{{ loop.index }} {{ c.name | text }}<br>label <b>{{ c.label | text }}</b>, nets see "
    "<b>{{ c.other | text }}</b> ({{ c.votes }} vote(s), p={{ c.p }}{{ c.gap }})</figcaption></figure>{% endfor %}"
)


def url(path: str | Path, base: Path) -> str:
    """The relative URL of ``path`` from the folder ``base``: its exact bytes, percent-encoded."""
    return quote(os.fsencode(Path(os.path.relpath(path, base)).as_posix()), safe="/")


def gallery_names(count: int) -> list[str]:
    """The gallery's page names for ``count`` records: ``gallery.html``, ``gallery-2.html``..."""
    pages = max(1, -(-count // GALLERY_PAGE))
    return ["gallery.html"] + [f"gallery-{k}.html" for k in range(2, pages + 1)]


def gallery_pages(records: Iterable[dict[str, Any]], count: int, outdir: Path) -> Iterator[tuple[str, str]]:
    """The gallery of ``count`` crop ``records`` as pages of :data:`GALLERY_PAGE` records, ``(file name, HTML)``,
    one at a time (``records`` read as the pages are made)."""
    names = gallery_names(count)
    records = iter(records)
    for page, name in enumerate(names):
        rows = [_gallery_row(r, outdir) for r in itertools.islice(records, GALLERY_PAGE)]
        yield name, _GALLERY.render(rows=rows, names=names, page=page)


def _gallery_row(r: dict[str, Any], outdir: Path) -> dict[str, Any]:
    return {
        "original": url(r["path"], outdir),
        "left": f"{100 * r['x'] / r['width']:.3f}",
        "top": f"{100 * r['y'] / r['height']:.3f}",
        "width": f"{100 * r['w'] / r['width']:.3f}",
        "height": f"{100 * r['h'] / r['height']:.3f}",
        "shown": [(key, url(outdir / r[key], outdir)) for key in ("crop", "heatmap") if r.get(key)],
        "file": r["file"],
        "category": r["category"],
        "votes": r["votes"],
        "nets": r["nets"],
        "p": f"{r['mean_confidence']:.2f}",
        "found": r["found"],
    }


def thumbnail(path: Path, box: tuple[float, float, float, float], side: int = 192) -> str | None:
    """A small JPEG of the image with ``box`` drawn, as a data URI (``None`` if the image cannot be read now)."""
    from PIL import ImageDraw

    from fcnx.errors import FcnxError
    from fcnx.io.decoding import open_upright

    try:
        image = open_upright(path)
    except FcnxError:
        return None
    with image:
        image = image.convert("RGB")
        x, y, w, h = box
        ImageDraw.Draw(image).rectangle([x, y, x + w, y + h], outline=(255, 40, 40), width=max(2, image.width // 100))
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def suspects_page(suspects: Sequence[Any], root: Path, signal: str) -> str:
    """``suspects.html``: a thumbnail card per :class:`~fcnx.jobs.suspects.Suspect` of the dataset at ``root``;
    ``signal``: a sentence saying what the suspects show."""
    cards = [
        {
            "thumbnail": thumbnail(s.path, s.box),
            "name": str(s.path.relative_to(root)) if s.path.is_relative_to(root) else str(s.path),
            "label": s.label,
            "other": s.other,
            "votes": s.other_votes,
            "p": f"{s.other_confidence:.2f}",
            "gap": f", gap {s.gap:.2f}" if s.gap is not None else "",
        }
        for s in suspects
    ]
    return _SUSPECTS.render(cards=cards, root=str(root), signal=signal)
