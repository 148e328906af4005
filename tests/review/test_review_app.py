"""The review app through Flask's test client: token, escaping, decisions written before they count, pages,
what a kill or a hand edit left in review.jsonl, decisions of images gone, the lock, merging."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcnx.cli.app import cli
from fcnx.errors import UsageError
from fcnx.io.decisions import Decision, append_decision, read_decisions
from fcnx.io.files import OutdirLock
from fcnx.review.app import TOKEN_HEADER, create_app
from fcnx.review.index import open_index
from fcnx.review.session import Session
from fcnx.testing.records import write_synthetic_journal


@pytest.fixture
def session(outdir):
    with Session(open_index(outdir), "ana") as opened:
        yield opened


def _post(client, session, body, token=True):
    headers = {TOKEN_HEADER: session.token} if token else {}
    return client.post("/api/decide", json=body, headers=headers)


def test_writes_need_the_token_and_land_at_once(outdir, session):
    client = create_app(session).test_client()
    assert _post(client, session, {"index": 0, "action": "accept"}, token=False).status_code == 403
    assert not (outdir / "review.jsonl").exists()
    page = client.get("/").get_data(as_text=True)
    assert f'<meta name="fcnx-token" content="{session.token}">' in page
    answer = _post(client, session, {"index": 1, "action": "relabel", "label": "lasagna"})
    assert answer.status_code == 200 and answer.json["item"]["verdict"]["label"] == "lasagna"
    assert answer.json["counts"]["relabelled"] == 1
    (decision,) = read_decisions(outdir / "review.jsonl").decisions
    assert (decision.path, decision.action, decision.label, decision.reviewer) == (
        str(outdir.parent / "data/images/pizza/2.jpg"), "relabel", "lasagna", "ana"
    )  # fmt: skip
    for body, error in [
        ({"index": 1, "action": "relabel", "label": "ramen"}, "'ramen' is not a class of this dataset"),
        ({"index": 0, "action": "reject"}, "a reject needs a reason: one of wrong_label, not_category"),
        ({"index": 0, "action": "box", "box": [1100, 0, 200, 50]}, "box [1100, 0, 200, 50] leaves the 1200x900 image"),
        ({"index": 7, "action": "accept"}, "no image number 7"),
        ({"index": 0, "action": "explode"}, "action 'explode' is not one of"),
    ]:
        refused = _post(client, session, body)
        assert refused.status_code == 400 and error in refused.json["error"], body
    assert len(read_decisions(outdir / "review.jsonl").decisions) == 1
    undone = _post(client, session, {"index": 1, "action": "undo"})
    assert undone.json["item"]["verdict"] is None and undone.json["counts"]["undecided"] == 3


def test_names_are_escaped(tmp_path, outdir_in):
    odd = tmp_path / 'a<script>"x'
    odd.mkdir()
    out = outdir_in(odd)
    with Session(open_index(out), "<b>ana</b>") as opened:
        page = create_app(opened).test_client().get("/").get_data(as_text=True)
    assert '<script>"x' not in page and "a&lt;script&gt;&#34;x" in page and "&lt;b&gt;ana&lt;/b&gt;" in page


def test_images_are_served_upright_by_number_only(outdir, session):
    client = create_app(session, {"127.0.0.1:5000"}).test_client()
    host = {"base_url": "http://127.0.0.1:5000"}
    turned = client.get("/image/2", **host)
    assert turned.status_code == 200 and Image.open(io.BytesIO(turned.data)).size == (960, 600)
    plain = client.get("/image/0", **host)
    assert plain.data == (outdir.parent / "data/images/pizza/1.jpg").read_bytes()  # as stored
    assert client.get("/heatmap/0", **host).status_code == 200
    # kept by the browser only under this server's run (an image's number names another image in another run)
    assert plain.headers["Cache-Control"] == "no-store"
    kept = client.get(f"/image/0?i={session.instance}", **host)
    assert kept.headers["Cache-Control"] == "private, max-age=86400" and kept.data == plain.data
    assert client.get("/image/0?i=0123456789abcdef", **host).headers["Cache-Control"] == "no-store"
    assert client.get("/image/0", base_url="http://evil.example:5000").status_code == 400
    (outdir.parent / "data/images/pizza/2.jpg").unlink()
    gone = client.get("/image/1", **host)
    assert gone.status_code == 404 and "2.jpg: cannot show it" in gone.json["error"]


def test_pages_resume_at_the_first_undecided(tmp_path):
    write_synthetic_journal(tmp_path, 120, ["a", "b"])
    with Session(open_index(tmp_path), "ana") as opened:
        client = create_app(opened).test_client()
        for k in range(60):
            assert _post(client, opened, {"index": k, "action": "accept"}).status_code == 200
        last = client.get("/api/page?page=2").json
        assert (last["pages"], last["page"], len(last["items"]), last["items"][0]["index"]) == (3, 2, 20, 100)
        resumed = client.get("/api/page?resume=1").json
        assert (resumed["page"], resumed["cursor"], resumed["items"][10]["index"]) == (1, 10, 60)
        undecided_b = client.get("/api/page?resume=1&state=undecided&label=b").json
        assert undecided_b["total"] == 30 and undecided_b["items"][0]["index"] == 61
        at = client.get("/api/page?at=77&sort=confidence").json
        assert at["items"][at["cursor"]]["index"] == 77
        assert client.get("/api/page?sort=size").status_code == 400


def test_restart_sets_aside_bad_lines_and_skips_images_gone(outdir):
    log = outdir / "review.jsonl"
    with Session(open_index(outdir), "ana") as first:
        first.decide(0, "reject", reason="not_category")
        first.decide(2, "box", box=(10, 20, 300, 200))
        first.decide(1, "accept")
    (outdir.parent / "data/images/pizza/2.jpg").unlink()
    append_decision(log, Decision("/elsewhere/gone.jpg", "accept", "bo", "2026-12-07T15:00:00+00:00"))
    gone = str(outdir.parent / "data/images/pizza/2.jpg")
    append_decision(log, Decision(gone, "reject", "bo", "2026-12-07T15:00:01+00:00", reason="unusable"))
    with log.open("a") as f:
        f.write('{"v": 1, "path": "x.jpg", "action": "accept", "reviewer": "bo", "at": "yesterday"}\n{"v": 1')
    with Session(open_index(outdir), "ana") as second:
        assert second.warnings == [
            f"{log}:6: not a decision (field 'at' is not an ISO 8601 time ('yesterday')); set aside in review.rejected.jsonl",
            f"{log}: its last line was cut short (a kill); set aside in review.rejected.jsonl",
            f"{log}: 1 decision(s) for 1 image(s) this run does not have, skipped (kept in the file): /elsewhere/gone.jpg",
            f"{log}: 2 decision(s) for 1 image(s) whose file is gone, skipped (kept in the file): "
            f"{outdir.parent / 'data/images/pizza/2.jpg'}",
        ]
        assert second.index.counts() == {"undecided": 2, "accepted": 0, "rejected": 1, "relabelled": 0, "disputed": 0}
        assert second.state(2)["verdict"]["box"] == (10.0, 20.0, 300.0, 200.0)
        second.decide(2, "accept")
    assert [d.action for d in read_decisions(log).decisions] == [
        "reject",
        "box",
        "accept",
        "accept",
        "reject",
        "accept",
    ]


def test_a_reviewer_name_with_controls_is_refused_at_start(outdir):
    result = CliRunner().invoke(cli, ["review", str(outdir), "--reviewer", "ana\x1b[31m", "--no-browser"])
    assert result.exit_code == 2
    assert result.output == "Error: --reviewer: 'ana\\x1b[31m' is not a name of 1-64 printable characters\n"
    assert not (outdir / ".fcnx-review-lock").exists()


def test_one_review_at_a_time_beside_a_crop_run(outdir, session):
    with pytest.raises(UsageError, match=r"is in use by another run \(fcnx review, pid \d+"):
        Session(open_index(outdir), "bo").open()
    with OutdirLock(outdir, "fcnx crop"):  # crop's lock is another file
        pass


def test_merge_cli_appends_what_is_new_and_lists_disagreements(tmp_path, outdir):
    other = tmp_path / "bo"
    shutil.copytree(outdir, other)
    with Session(open_index(outdir), "ana") as ana:
        ana.decide(0, "accept")
        ana.decide(1, "relabel", label="lasagna")
    with Session(open_index(other), "bo") as bo:
        bo.decide(0, "reject", reason="unusable")
        bo.decide(1, "relabel", label="lasagna")
    runner = CliRunner()
    first = runner.invoke(cli, ["review", str(outdir), "--merge", str(other / "review.jsonl")])
    assert first.exit_code == 0, first.output
    path = outdir.parent / "data/images/pizza/1.jpg"
    assert f"disagreement: {path}: ana: accept; bo: reject (unusable)" in first.output
    assert "review: 2 image(s) with decisions, 1 disagreement(s)" in first.output
    again = runner.invoke(cli, ["review", str(outdir), "--merge", str(other / "review.jsonl")])
    assert "2 decision(s) merged" in first.output and "0 decision(s) merged, 2 already there" in again.output
    decisions = read_decisions(outdir / "review.jsonl").decisions
    assert [(d.reviewer, d.action) for d in decisions] == [
        ("ana", "accept"),
        ("ana", "relabel"),
        ("bo", "reject"),
        ("bo", "relabel"),
    ]
    with Session(open_index(outdir), "ana") as merged:
        assert merged.state(0)["verdict"]["action"] == "reject" and merged.index.disputed.tolist() == [
            True,
            False,
            False,
        ]
        assert json.dumps(merged.state(0)["disagreement"]) == '{"ana": "accept", "bo": "reject (unusable)"}'


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)
_BODY = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(-2, 5) | _JSON,
        "action": st.sampled_from(["accept", "box", "reject", "relabel", "undo"]) | _JSON,
        "reason": st.sampled_from(["wrong_label", "crop"]) | _JSON,
        "label": st.sampled_from(["pizza", "pho"]) | _JSON,
        "box": st.lists(st.floats(-10, 2000), min_size=4, max_size=4) | _JSON,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODY | _JSON)
def test_any_decide_body_is_written_whole_or_refused(session, body):
    client = create_app(session).test_client()
    answer = _post(client, session, body)
    assert answer.status_code in (200, 400), answer.get_data(as_text=True)
    if session.path.exists():
        log = read_decisions(session.path)
        assert log.set_aside == [] and not log.cut  # what was written is always a whole decision
    assert answer.status_code == 400 or session.path.exists()
