"""The review page's web app (Flask): the page, its local assets, the images by number, pages of items, decisions.

Nothing is served by a path the browser gives: an original is ``/image/<number>`` (the file its record
names), a heatmap ``/heatmap/<number>`` (inside OUTDIR only); assets come from this package's
``static/`` folder. Write requests must carry the session's token in ``X-Fcnx-Token`` (a page of
another site cannot read it, nor send that header without a CORS preflight this app never grants), and
requests whose ``Host`` is not the address served are refused (DNS rebinding).
"""

from __future__ import annotations

import hmac
import io
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, abort, jsonify, render_template, request, send_file
from PIL import Image

from fcnx.errors import FcnxError, one_line
from fcnx.io.decoding import open_upright, to_rgb
from fcnx.review.index import PAGE, SORTS, STATE_FILTERS, Query
from fcnx.review.session import Session

#: the header write requests carry the session's token in
TOKEN_HEADER = "X-Fcnx-Token"
#: every response's Content-Security-Policy: this app's own assets only, never framed
CSP = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
#: formats a browser shows as stored (when no EXIF orientation turns them)
_BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_ORIENTATION = 0x0112


def create_app(session: Session, hosts: set[str] | None = None) -> Flask:
    """The app serving ``session``; ``hosts``: the ``Host`` headers accepted (``None``: any, for ``--host``)."""
    app = Flask(__name__)
    index = session.index

    @app.before_request
    def _check() -> None:
        if hosts is not None and request.host not in hosts:
            abort(400, "unexpected Host header")
        if request.method != "GET":
            given = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), session.token.encode()):
                abort(403, "missing or wrong session token")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = CSP
        cached = request.path.startswith(("/image/", "/heatmap/")) and request.args.get("i") == session.instance
        ok = response.status_code == 200
        response.headers["Cache-Control"] = "private, max-age=86400" if cached and ok else "no-store"
        return response

    @app.get("/")
    def page() -> str:
        return render_template(
            "review.html",
            token=session.token,
            instance=session.instance,
            outdir=one_line(index.outdir),
            kind=index.kind,
            reviewer=one_line(session.reviewer),
            sorts=SORTS,
            states=list(STATE_FILTERS),
        )

    @app.get("/api/meta")
    def meta() -> Response:
        return jsonify(classes=index.classes, total=len(index))

    @app.get("/api/page")
    def items_page() -> Response:
        args = request.args
        try:
            query = Query(
                sort=args.get("sort", "run"),
                state=args.get("state", "all"),
                label=args.get("label") or None,
                not_found=args.get("not_found") == "1",
            )
            selected = index.select(query)
        except FcnxError as exc:
            abort(400, str(exc))
        pages = max(1, -(-len(selected) // PAGE))
        position = _position(args, selected, index.state, pages)
        number = position // PAGE
        try:
            items = [_item(session, int(k)) for k in selected[number * PAGE : (number + 1) * PAGE]]
        except FcnxError as exc:
            abort(409, str(exc))
        return jsonify(
            total=len(selected),
            page=number,
            pages=pages,
            cursor=position - number * PAGE,
            items=items,
            counts=index.counts(),
        )

    @app.post("/api/decide")
    def decide() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "expected a JSON object")
        k = body.get("index")
        if not isinstance(k, int) or isinstance(k, bool):
            abort(400, "no image number")
        try:
            session.decide(
                k,
                str(body.get("action")),
                reason=body.get("reason"),
                label=body.get("label"),
                box=body.get("box"),
            )
            item = _item(session, k)
        except FcnxError as exc:
            abort(400, str(exc))
        return jsonify(item=item, counts=index.counts())

    @app.get("/image/<int:k>")
    def image(k: int) -> Response:
        if k >= len(index):
            abort(404)
        return _upright(Path(index.path(k)))

    @app.get("/heatmap/<int:k>")
    def heatmap(k: int) -> Response:
        try:
            heatmap = index.item(k).heatmap if k < len(index) else None
        except FcnxError:
            heatmap = None
        if heatmap is None:
            abort(404)
        root = os.path.realpath(index.outdir)
        path = os.path.realpath(index.outdir / heatmap)
        if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
            abort(404)
        return send_file(path, mimetype="image/png")

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(409)
    def _error(error: Any) -> tuple[Response, int]:
        return jsonify(error=one_line(getattr(error, "description", error))), error.code

    return app


def _position(args: Mapping[str, str], selected: np.ndarray, state: np.ndarray, pages: int) -> int:
    """Where in ``selected`` the asked page starts its cursor: the item ``at`` (the first page if the query leaves
    it out), the first undecided item (``resume=1``), else the start of page ``page``."""
    if "at" in args:
        found = (selected == _integer(args["at"])).nonzero()[0]
        return int(found[0]) if len(found) else 0
    if args.get("resume") == "1":
        undecided = (state[selected] == 0).nonzero()[0]
        return int(undecided[0]) if len(undecided) else 0
    return min(max(_integer(args.get("page", "0")), 0), pages - 1) * PAGE


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        abort(400, f"not a number: {one_line(text[:20])}")


def _item(session: Session, k: int) -> dict[str, Any]:
    return {**session.index.item(k).as_dict(), **session.state(k)}


def _upright(path: Path) -> Response:
    """The image at ``path`` as the browser must show it: its bytes when its format is one a browser shows and no
    EXIF orientation turns it, else its upright pixels as JPEG (so that box pixels are upright pixels)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the server
            raise OSError("not a regular file")
        with Image.open(path) as probe:
            kind = _BROWSER_FORMATS.get(probe.format or "")
            turned = probe.getexif().get(_ORIENTATION, 1) not in (None, 1)
        if kind is not None and not turned:
            return send_file(path, mimetype=kind)
        upright = open_upright(path)
        buffer = io.BytesIO()
        Image.fromarray(to_rgb(upright)).save(buffer, "JPEG", quality=92)
    except (FcnxError, OSError, ValueError, SyntaxError) as exc:
        abort(404, one_line(f"{path}: cannot show it ({exc})"))
    buffer.seek(0)
    return send_file(buffer, mimetype="image/jpeg")


#: addresses that only this machine can reach
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(session: Session, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve ``session`` on ``host:port`` (port 0: a free one) until interrupted; ``ready(url)`` once listening."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the terminal
    try:
        server = make_server(host, port, create_app(session), threaded=True)
    except OSError as exc:
        raise FcnxError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", parameter="port") from None
    port = server.server_port
    if host in LOOPBACK:  # only the addresses served: a page of another site renamed to 127.0.0.1 is refused
        shown = f"[{host}]" if ":" in host else host
        server.app = create_app(session, {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", shown)})
    ready(f"http://{'[' + host + ']' if ':' in host else host}:{port}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()
