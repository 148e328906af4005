"""``fcnx.engine.options.CropOptions``: the crop job's one options object, checked once where it is built, read by
the cropper, the worker processes and Ray actors (pickled), the OUTDIR's settings and its outputs."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re

import pytest
from image_corpus import square
from tiny_backbones import color_checkpoint

from fcnx.engine.cropper import Cropper
from fcnx.engine.options import CropOptions
from fcnx.errors import UsageError
from fcnx.jobs.crop import run_crop, weights_identity
from fcnx.jobs.outdir.outputs import CropOutputs
from fcnx.jobs.outdir.settings import SettingsFile
from fcnx.method import geometry

NETS = ("tiny0", "tiny43")


@pytest.fixture
def setup(tmp_path, tiny_registry):
    weights = {n: str(color_checkpoint(tmp_path / f"{n}.safetensors", n)) for n in NETS}
    for k in range(2):
        square(tmp_path / "photos" / f"{k}.png", top=10 * k)
    return tmp_path / "photos", CropOptions(NETS, weights, categories=["red"], max_scale=1.5, workers=0)


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"step": 1.000001},
            "--step 1.000001 with --max-scale 3.0: a scale step of 1.000001 up to 3.0 times the first level gives "
            "1098613 pyramid levels; at most 100 are allowed",
        ),
        ({"step": 1.0}, "--step 1.0 with --max-scale 3.0: the scale step must be a finite number > 1, got 1.0"),
        (
            {"max_scale": "big"},
            "--step 1.2 with --max-scale big: the maximum scale must be a number >= 1 or 'auto', got 'big'",
        ),
        ({"actors": 2}, "--address and --actors apply to --engine ray"),
        (
            {"engine": "ray", "kernel": "native"},
            "--engine ray runs the nets at one common kernel, not 'native': give --kernel N",
        ),
        ({"selection": "max"}, "unknown selection rule 'max'; use one of paper, votes-first"),
        ({"box": "round"}, "unknown box 'round'; use one of square, tight, fitted, object, fitted-object"),
        ({"instances": 0}, "the number of instances must be >= 1, got 0"),
        ({"batch_size": 0}, "the batch size must be >= 1 and the number of workers >= 0"),
        ({"workers": -1}, "the batch size must be >= 1 and the number of workers >= 0"),
    ],
)
def test_each_bad_value_is_refused_in_one_line_where_the_options_are_built(fields, message):
    with pytest.raises(UsageError) as refused:
        CropOptions(NETS, **fields)
    assert str(refused.value) == message
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):  # and when a value is replaced
        dataclasses.replace(CropOptions(NETS), **fields)


def test_the_pyramid_is_checked_once_and_the_cropper_reads_the_options_as_built(monkeypatch, one_thread):
    calls = []
    check = geometry.pyramid_levels
    monkeypatch.setattr(geometry, "pyramid_levels", lambda *a: calls.append(a) or check(*a))
    options = CropOptions(["tiny_vgg"], kernel=56, step=1.25, max_scale=2.0, selection="votes-first", heatmaps=True)
    assert calls == [(1.25, 2.0)]
    cropper = Cropper.from_options(options, "cpu")
    assert calls == [(1.25, 2.0)]  # the cropper checks nothing again
    assert cropper.options is options and cropper.options.keep_heatmaps and cropper.batch_size == 1
    assert (cropper.ensemble.backend, cropper.ensemble.precision) == ("torch", "fp32")
    keywords = Cropper(cropper.ensemble, step=1.25, max_scale=2.0, selection="votes-first", heatmaps=True)
    assert keywords.options == dataclasses.replace(options, nets=(), kernel=299)  # one by one: the same object


def test_what_a_worker_or_actor_gets_is_the_object_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.safetensors").write_bytes(b"x")
    options = CropOptions(["tiny0"], {"tiny0": "w.safetensors"}, 64, backend="onnxruntime", engine="ray", actors=2)
    sent = pickle.loads(pickle.dumps(options.portable()))
    assert sent == dataclasses.replace(options, weights={"tiny0": os.path.join(tmp_path, "w.safetensors")})
    assert CropOptions(["tiny0"], {"tiny0": "pretrained"}).portable().weights == {"tiny0": "pretrained"}


def test_the_settings_form_round_trips_through_the_settings_file(tmp_path, setup):
    _, options = setup
    cropper = Cropper.from_options(options, "cpu")
    form = options.settings(cropper, weights_identity(options.nets, options.weights), "torch")
    assert form == {
        "version": 1,
        "nets": list(NETS),
        "weights": weights_identity(NETS, options.weights),
        "kernel": 299,
        "step": 1.2,
        "max_scale": 1.5,
        "selection": "paper",
        "early_stop": False,
        "categories": ["red"],
        "half": False,
        "box": "fitted-object",
        "backend": "torch",
    }
    SettingsFile(tmp_path, form).check([], "boxes.jsonl")
    saved = json.loads((tmp_path / ".fcnx-crop.json").read_text())["settings"]
    assert saved == form
    resent = pickle.loads(pickle.dumps(options))
    assert resent.settings(cropper, form["weights"], "onnxruntime") == {**form, "backend": "onnxruntime"}
    SettingsFile(tmp_path, {**form, "backend": "onnxruntime"}).check([], "boxes.jsonl")  # recorded, not compared


def test_a_resume_with_a_changed_option_is_refused_with_the_cli_text(tmp_path, setup):
    photos, options = setup
    out = tmp_path / "out"
    assert run_crop([photos], out, options).run().done == 2
    for fields, shown in (
        ({"selection": "votes-first"}, "selection: 'paper' there, 'votes-first' now"),
        (
            {"max_scale": 2.0, "box": "square"},
            "box: 'fitted-object' there, 'square' (unset) now; max_scale: 1.5 there, 2.0 now",
        ),
    ):
        with pytest.raises(UsageError) as refused:
            run_crop([photos], out, dataclasses.replace(options, **fields))
        assert str(refused.value) == (
            f"{out} holds boxes made with other settings ({shown}); choose another OUTDIR, or run again with the "
            f"same options to resume"
        )
    assert run_crop([photos], out, dataclasses.replace(options, dry_run=True, fail_fast=True)).summary.skipped == 2


def test_the_outputs_read_what_to_write_from_the_options(tmp_path):
    options = CropOptions(dry_run=True, heatmaps=True, heatmaps_npy=True, gallery=True, in_place=True)
    outputs = CropOutputs(tmp_path, {}, net_names=["a"], kernel=64, stride=32, expected_boxes=1, options=options)
    assert (outputs.crops, outputs.heatmaps, outputs.maps, outputs.options.gallery) == (False, True, True, True)
    plain = CropOutputs(tmp_path, {}, net_names=["a"], kernel=64, stride=32, expected_boxes=1)
    assert (plain.crops, plain.heatmaps, plain.maps, plain.options) == (True, False, False, CropOptions())
