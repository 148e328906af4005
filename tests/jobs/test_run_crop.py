"""``fcnx.jobs.crop.run_crop``: the crop job as a library streams per-image results and writes what the CLI writes."""

from __future__ import annotations

import json
import signal

import pytest
from click.testing import CliRunner
from image_corpus import square
from tiny_backbones import color_checkpoint

from fcnx.cli import cli
from fcnx.engine.cropper import Cropper
from fcnx.errors import UsageError
from fcnx.io.files import OutdirLock
from fcnx.jobs.crop import CropOptions, run_crop

NETS = ["tiny0", "tiny43"]


@pytest.fixture
def setup(tmp_path, tiny_registry):
    weights = {n: str(color_checkpoint(tmp_path / f"{n}.safetensors", n)) for n in NETS}
    photos = tmp_path / "photos"
    for k in range(4):
        square(photos / f"{k}.png", top=10 * k)
    (photos / "broken.png").write_bytes(b"nope")
    options = CropOptions(nets=NETS, weights=weights, categories=["red"], max_scale=1.5, workers=0)
    return photos, options


def test_the_job_streams_each_image_and_writes_what_the_cli_writes(tmp_path, setup):
    photos, options = setup
    job = run_crop([photos], tmp_path / "lib", options)
    images = list(job)
    assert sorted(i.item.rel.as_posix() for i in images) == ["0.png", "1.png", "2.png", "3.png", "broken.png"]
    [broken] = [i for i in images if i.error]
    assert "broken.png: not an image file" in broken.error and broken.records is None
    summary = job.summary
    assert (summary.pending, summary.done, summary.boxes, summary.failures) == (5, 4, 4, [broken.error])
    assert summary.seconds["nets"] > 0 and summary.seconds["write"] > 0 and summary.wall > 0
    args = ["crop", "--nets", ",".join(NETS), "--category", "red", "--max-scale", "1.5", "--workers", "0"]
    args += [a for n, p in options.weights.items() for a in ("--weights", f"{n}={p}")]
    assert CliRunner().invoke(cli, [*args, str(photos), "-o", str(tmp_path / "cli")]).exit_code == 1
    for name in ("boxes.jsonl", "boxes.csv", "failures.txt"):
        library, command = (tmp_path / d / name for d in ("lib", "cli"))
        assert library.read_bytes().replace(b"/lib/", b"/cli/") == command.read_bytes()


def test_a_given_cropper_is_used_and_a_stopped_stream_still_writes_the_tables(tmp_path, setup):
    photos, options = setup
    cropper = Cropper.from_nets(NETS, options.weights, kernel=299, max_scale=1.5, categories=["red"], workers=0)
    out = tmp_path / "out"
    job = run_crop([photos], out, options, cropper=cropper)
    assert job.cropper is cropper
    first = next(iter(job))
    job.stop(KeyboardInterrupt())
    assert job.summary.stopped == signal.SIGINT and first.records is not None
    records = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert 1 <= len(records) <= 4 and len((out / "boxes.csv").read_text().splitlines()) == len(records) + 1
    rest = run_crop([photos], out, options, cropper=cropper)  # the lock was released; it resumes
    assert rest.summary.skipped == len(records) and rest.run().done == 4 - len(records)


def test_a_job_stopped_before_it_starts_releases_outdir_and_writes_nothing(tmp_path, setup):
    photos, options = setup
    job = run_crop([photos], tmp_path / "out", options)
    job.stop(KeyboardInterrupt())
    assert list(job) == [] and not (tmp_path / "out" / "boxes.jsonl").exists()
    assert run_crop([photos], tmp_path / "out", options).run().done == 4


def test_an_outdir_held_by_another_run_is_refused_before_anything_is_touched(tmp_path, setup):
    photos, options = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / ".x.fcnx-tmp").write_text("another run's temporary")
    with OutdirLock(out, "fcnx crop"), pytest.raises(UsageError, match="is in use by another run"):
        run_crop([photos], out, options)
    assert sorted(p.name for p in out.iterdir()) == [".fcnx-lock", ".x.fcnx-tmp"]


def test_other_settings_are_refused_naming_both_values(tmp_path):
    """A resume with other settings says what each was and is; an absent setting what it stands for."""
    import pytest

    from fcnx.errors import UsageError
    from fcnx.jobs.outdir.settings import SettingsFile

    SettingsFile(tmp_path, {"step": 1.2, "categories": ["x" * 100]}).check([], "boxes.jsonl")
    again = SettingsFile(tmp_path, {"step": 1.5, "categories": ["x" * 100], "box": "tight"})
    with pytest.raises(UsageError) as refused:
        again.check([], "boxes.jsonl")
    assert "(box: 'square' (unset) there, 'tight' now; step: 1.2 there, 1.5 now)" in str(refused.value)
    with pytest.raises(UsageError, match=r"categories: \['x{55}\.\.\. there, \['y{55}\.\.\. now"):
        SettingsFile(tmp_path, {"step": 1.2, "categories": ["y" * 100]}).check([], "boxes.jsonl")
