"""fcnx checkpoints: metadata round trip, strict loading, and refusing what must be refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from click.testing import CliRunner

from fcnx.backbones import checkpoint
from fcnx.backbones.registry import get_backbone
from fcnx.cli import cli
from fcnx.engine.fcn import imagenet_classes, load_fcn
from fcnx.errors import UsageError, WeightsError
from fcnx.testing import random_checkpoint

CLASSES = ["apple_pie", "baklava", "churros"]


@pytest.fixture(scope="module")
def xception_file(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("w") / "xc.safetensors", "xception", CLASSES, head=(16,))


def test_safetensors_metadata_makes_the_file_enough(xception_file):
    meta = checkpoint.read_meta(xception_file)
    assert (meta.arch, meta.classes, meta.input_size, meta.head) == ("xception", CLASSES, 299, [16])
    fcn = load_fcn("xception", xception_file)
    assert (fcn.classes, fcn.kernel, fcn.pool) == (CLASSES, 299, 10)
    reloaded = load_fcn("xception", xception_file)
    x = torch.rand(1, 3, 299, 299) * 255
    with torch.inference_mode():
        assert torch.equal(fcn(x), reloaded(x))


def test_pt_file_with_sidecar_loads_with_weights_only(tmp_path, xception_file):
    tensors = checkpoint.read_tensors(xception_file)
    pt = tmp_path / "xc.pt"
    torch.save(tensors, pt)
    checkpoint.sidecar_path(pt).write_text(checkpoint.read_meta(xception_file).to_json())
    fcn = load_fcn("xception", pt)
    assert fcn.classes == CLASSES
    assert torch.equal(fcn.classifier.state_dict()["fc.0.weight"], tensors["fc.0.weight"])


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight": Payload()}))
    checkpoint.sidecar_path(evil).write_text(json.dumps({"arch": "xception", "classes": CLASSES, "input_size": 299}))
    with pytest.raises(
        WeightsError, match=r"evil\.pt: refused or unreadable torch file \(loaded with weights_only=True\)"
    ):
        load_fcn("xception", evil)
    assert not marker.exists()


def test_wrong_architecture_is_named(xception_file):
    with pytest.raises(
        WeightsError, match=r"xc\.safetensors: checkpoint is for backbone 'xception', not 'inception_v3'"
    ):
        load_fcn("inception_v3", xception_file)


def test_wrong_class_count_names_the_tensor(tmp_path, xception_file):
    tensors = checkpoint.read_tensors(xception_file)
    meta = checkpoint.read_meta(xception_file)
    meta.classes = CLASSES + ["donuts"]
    bad = checkpoint.save(tmp_path / "four.safetensors", tensors, meta)
    with pytest.raises(
        WeightsError,
        match=r"four\.safetensors: tensor 'fc\.4\.weight' has shape \(3, 16\), the architecture expects \(4, 16\)",
    ):
        load_fcn("xception", bad)


def test_missing_tensor_is_never_a_silent_partial_load(tmp_path, xception_file):
    tensors = checkpoint.read_tensors(xception_file)
    del tensors["conv1.weight"]
    bad = checkpoint.save(tmp_path / "partial.safetensors", tensors, checkpoint.read_meta(xception_file))
    with pytest.raises(
        WeightsError, match=r"partial\.safetensors: does not fit this architecture: missing tensor 'conv1\.weight'"
    ):
        load_fcn("xception", bad)


def test_truncated_and_missing_files(tmp_path, xception_file):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(xception_file.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"cut\.safetensors: not a readable safetensors file"):
        load_fcn("xception", cut)
    with pytest.raises(WeightsError, match=r"nope\.safetensors: no such weight file"):
        load_fcn("xception", tmp_path / "nope.safetensors")


def test_file_without_metadata_needs_classes(tmp_path, xception_file):
    plain = tmp_path / "plain.pt"
    torch.save(checkpoint.read_tensors(xception_file), plain)
    with pytest.raises(WeightsError, match="has no fcnx metadata"):
        load_fcn("xception", plain)
    assert load_fcn("xception", plain, classes=CLASSES, head=(16,)).classes == CLASSES


def test_pretrained_tag_offline_gives_one_line_error(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr("fcnx_timm.hub._probe", lambda url: None)  # the hub answers, the download fails
    with pytest.raises(
        Exception,
        match=r"cannot fetch pretrained weights 'inception_v3\.tv_in1k' \(OSError\); "
        r"without network access pass a checkpoint file",
    ):
        load_fcn("inception_v3", "inception_v3.tv_in1k")


def test_pretrained_tags_use_imagenet_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 == len(set(names))
    assert names[967] == "espresso" and names[963] == "pizza"
    assert "inception_v3.tv_in1k" in get_backbone("inception_v3").pretrained


def test_random_init_needs_classes():
    with pytest.raises(UsageError, match="needs class names or weights"):
        load_fcn("xception")


def test_cli_turns_errors_into_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["info", "xcepton"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "Error: unknown backbone 'xcepton' (did you mean: xception, keras_xception, inception_v3?); see 'fcnx list-backbones'"
    )


def test_written_files_are_readable_by_others(tmp_path, xception_file):
    from fcnx.io.files import atomic_text

    saved = checkpoint.save(
        tmp_path / "copy.safetensors", checkpoint.read_tensors(xception_file), checkpoint.read_meta(xception_file)
    )
    assert saved.stat().st_mode & 0o777 == 0o644
    assert atomic_text(tmp_path / "a.txt", "x").stat().st_mode & 0o777 == 0o644


GOOD_META = {"format_version": 1, "arch": "xception", "classes": CLASSES, "input_size": 299, "head": [16]}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"classes": "apple_pie"}, "field 'classes' must be a list of class names, got str 'apple_pie'"),
        ({"classes": ["a", "b", "a"]}, "field 'classes' names 'a' more than once"),
        ({"classes": ["a", " "]}, "field 'classes': entry 1 is an empty name"),
        ({"classes": ["a", 7]}, "field 'classes': entry 1 is int 7, not a name"),
        ({"classes": ["a", "b\nc"]}, "field 'classes': entry 1 ('b\\nc') holds control characters"),
        ({"classes": []}, "field 'classes' is empty"),
        ({"input_size": 1000000}, "field 'input_size' must be a whole number of pixels in [1, 4096], got 1000000"),
        ({"input_size": 0}, "field 'input_size' must be a whole number of pixels in [1, 4096], got 0"),
        ({"input_size": "299"}, "field 'input_size' must be a whole number of pixels in [1, 4096], got '299'"),
        ({"input_size": True}, "field 'input_size' must be a whole number of pixels in [1, 4096], got True"),
        ({"input_size": 299.5}, "field 'input_size' must be a whole number of pixels in [1, 4096], got 299.5"),
        ({"head": [16, -1]}, "field 'head' must be a list of layer widths in [1, 65536], got [16, -1]"),
        ({"arch": ""}, "field 'arch' must be a backbone name, got ''"),
        ({"arch": None}, "field 'arch' must be a backbone name, got None"),
        ({"extra": []}, "field 'extra' must be a JSON object, got []"),
        ({"format_version": 2}, "field 'format_version' is 2: written by a newer fcnx (this one reads 1)"),
    ],
)
@pytest.mark.parametrize("kind", ["safetensors", "sidecar"])
def test_lying_metadata_is_one_line_naming_the_file_and_the_field(tmp_path, xception_file, kind, change, field):
    text = json.dumps({**GOOD_META, **change})
    if kind == "safetensors":
        from safetensors.torch import save_file

        path = named = tmp_path / "lying.safetensors"
        save_file(checkpoint.read_tensors(xception_file), str(path), metadata={"fcnx": text})
    else:
        path, named = tmp_path / "lying.pt", tmp_path / "lying.pt.json"
        torch.save(checkpoint.read_tensors(xception_file), path)
        named.write_text(text)
    with pytest.raises(WeightsError) as info:
        checkpoint.read_meta(path)
    assert str(info.value) == f"{named}: bad fcnx metadata: {field}"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[" * 100_000 + "]" * 100_000, "not JSON (maximum recursion depth exceeded"),
        ("{not json", "not JSON (Expecting property name"),
        ('["a"]', "expected a JSON object, got list"),
    ],
    ids=["deep", "broken", "list"],
)
def test_metadata_that_is_not_an_object_is_one_line(tmp_path, text, reason):
    path = tmp_path / "x.pt"
    path.write_bytes(b"")  # read_meta reads only the sidecar
    (tmp_path / "x.pt.json").write_text(text)
    with pytest.raises(WeightsError, match="bad fcnx metadata: " + reason.replace("(", r"\(")):
        checkpoint.read_meta(path)


def test_a_sidecar_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"")
    (tmp_path / "x.pt.json").write_bytes(b'{"arch": "\xff"}')
    with pytest.raises(WeightsError, match=r"x\.pt\.json: cannot read the metadata"):
        checkpoint.read_meta(tmp_path / "x.pt")


def test_metadata_missing_a_field_names_it(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"")
    (tmp_path / "x.pt.json").write_text(json.dumps({"arch": "xception", "classes": CLASSES}))
    with pytest.raises(WeightsError, match="bad fcnx metadata: field 'input_size' is missing"):
        checkpoint.read_meta(tmp_path / "x.pt")
