"""The CPU backends: fp32 agreement with torch on the demo canvases, the export cache, the options' refusals."""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fcnx.cli import cli
from fcnx.engine import backends
from fcnx.engine.backends import onnx_cache, runtimes
from fcnx.engine.cropper import Cropper
from fcnx.engine.ensemble import load_ensemble
from fcnx.engine.options import CropOptions
from fcnx.errors import UsageError
from fcnx.io.discovery import discover

NETS = ["tiny_vgg", "tiny_resnet", "tiny_inception"]
MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


def _runtime(backend: str) -> None:
    pytest.importorskip(MODULES[backend], reason=f"{backend} is not installed (pip install 'fcnx[test]')")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _demo() -> Path:
    import fcnx_tiny

    return Path(fcnx_tiny.__file__).parent / "demo"


def _boxes(cropper: Cropper) -> list[tuple]:
    results = list(cropper.crop_items(discover([_demo()])))
    return sorted((str(r.item.path), b.level, b.cell, b.votes, b.x, b.y, b.w, b.h) for r in results for b in r.boxes)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_fp32_backends_agree_with_torch_on_the_demo_canvases(one_thread, cache, backend):
    _runtime(backend)
    reference = load_ensemble(NETS, kernel=56, device="cpu")
    other = load_ensemble(NETS, kernel=56, device="cpu", backend=backend)
    assert _boxes(Cropper(other)) == _boxes(Cropper(reference))
    pixels = torch.rand(1, 3, 190, 230, generator=torch.Generator().manual_seed(0)) * 255
    expected = reference.probabilities(pixels)
    assert expected.shape[-2:] == reference.cells((190, 230)) and expected.shape[-1] > 1
    assert (other.probabilities(pixels) - expected).abs().max().item() < 1e-5


def test_auto_runs_onnxruntime_on_the_cpu_with_torchs_boxes_on_the_demo_canvases(one_thread, cache):
    _runtime("onnxruntime")
    auto = load_ensemble(NETS, kernel=56, device="cpu", backend="auto")
    assert (auto.backend, auto.precision) == ("onnxruntime", "fp32")
    assert _boxes(Cropper(auto)) == _boxes(Cropper(load_ensemble(NETS, kernel=56, device="cpu")))


@pytest.fixture
def static_cache(monkeypatch):
    """Empty per-shape session caches for one test."""
    monkeypatch.setattr(runtimes, "_static", OrderedDict())
    monkeypatch.setattr(runtimes, "_runs", OrderedDict())
    return runtimes._static


def test_onnxruntime_per_shape_sessions_give_the_dynamic_logits(one_thread, cache, static_cache):
    _runtime("onnxruntime")
    ensemble = load_ensemble(NETS, kernel=56, device="cpu", backend="onnxruntime")
    pixels = torch.rand(2, 3, 190, 230, generator=torch.Generator().manual_seed(0)) * 255
    for run in ensemble.runners:
        assert run.static_after == runtimes.STATIC_AFTER
        dynamic = [run(pixels) for _ in range(runtimes.STATIC_AFTER)]  # on the dynamic session: none made yet
        assert not static_cache
        static = run(pixels)  # the run after STATIC_AFTER: a session for 2 x 3 x 190 x 230
        assert list(static_cache) == [(run.path, 1, (2, 3, 190, 230))]
        assert static.shape == dynamic[0].shape and static.shape[1] > 1
        assert (static - dynamic[0]).abs().max().item() < 1e-5
        for session in (run.model, *static_cache.values()):  # one shared arena; idle threads do not spin
            options = session.get_session_options()
            assert options.get_session_config_entry("session.use_env_allocators") == "1"
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        static_cache.clear()
    reference = _boxes(Cropper(load_ensemble(NETS, kernel=56, device="cpu")))
    for run in ensemble.runners:
        run.static_after = 0  # every shape on its own session from its first run
    assert _boxes(Cropper(ensemble)) == reference
    assert len(static_cache) == runtimes.STATIC_SESSIONS  # the demo's 10 canvases have more level shapes


def test_per_shape_sessions_keep_at_most_their_bound_and_are_made_again_only_after_more_runs(
    one_thread, cache, static_cache, monkeypatch
):
    _runtime("onnxruntime")
    monkeypatch.setattr(runtimes, "STATIC_SESSIONS", 2)
    (run,) = load_ensemble(["tiny_vgg"], kernel=56, device="cpu", backend="onnxruntime").runners
    run.static_after = 1
    a, b, c = (1, 3, 56, 56), (1, 3, 60, 64), (1, 3, 72, 56)
    for shape in (a, b, c):
        run(torch.zeros(shape))
    assert not static_cache  # each shape's first run is on the dynamic session
    for shape in (a, b, c):
        run(torch.zeros(shape))
    assert [k[2] for k in static_cache] == [b, c]  # made at their second run; a, least recently used, put out
    run(torch.zeros(a))
    assert [k[2] for k in static_cache] == [b, c]  # a put out runs static_after times on the dynamic one again
    run(torch.zeros(a))
    run(torch.zeros(c))
    assert [k[2] for k in static_cache] == [a, c]


def test_export_is_cached_and_a_stale_file_is_exported_again(one_thread, cache, capsys):
    _runtime("onnxruntime")
    load_ensemble(["tiny_vgg"], kernel=56, device="cpu", backend="onnxruntime")
    assert "exporting it once" in capsys.readouterr().err
    (path,) = (cache / "onnx").glob("tiny_vgg-k56-*.onnx")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["key"]["net"] == "tiny_vgg" and len(sidecar["key"]["weights_sha256"]) == 64
    load_ensemble(["tiny_vgg"], kernel=56, device="cpu", backend="onnxruntime")
    assert capsys.readouterr().err == ""  # fresh: used as is
    path.write_bytes(path.read_bytes()[:-10])  # a truncated copy
    load_ensemble(["tiny_vgg"], kernel=56, device="cpu", backend="onnxruntime")
    assert "stale, exporting it again" in capsys.readouterr().err
    assert onnx_cache._fresh(path, path.with_suffix(".json"), sidecar["key"])
    load_ensemble(["tiny_vgg"], kernel=64, device="cpu", backend="onnxruntime")  # another kernel: another file
    assert len(list((cache / "onnx").glob("tiny_vgg-*.onnx"))) == 2


def test_crop_cli_with_openvino_writes_the_torch_boxes(one_thread, cache, tmp_path):
    _runtime("openvino")
    runs = {}
    for backend in ("torch", "openvino"):
        out = tmp_path / backend
        argv = ["crop", "--nets", ",".join(NETS), str(_demo()), "-o", str(out), "--device", "cpu", "--backend", backend]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output
        runs[backend] = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    keys = ("file", "level", "cell", "votes", "x", "y", "w", "h")
    assert [[r[k] for k in keys] for r in runs["openvino"]] == [[r[k] for k in keys] for r in runs["torch"]]
    assert len(runs["torch"]) == 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "onnxruntime", "--precision", "bf16"], "--precision bf16 needs --backend openvino"),
        (["--compile", "--nets", "efficientnet_lite0"], "--compile cannot compile efficientnet_lite0 in bounded time"),
        (["--compile", "--backend", "openvino"], "--compile applies to --backend torch"),
    ],
)
def test_refusals_are_one_line(one_thread, cache, tmp_path, argv, message):
    argv = ["crop", "--nets", ",".join(NETS), *argv, str(_demo()), "-o", str(tmp_path / "out"), "--device", "cpu"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_bf16_without_native_support_says_so_and_runs_fp32(tmp_path, capsys):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not backends.native_bf16.__wrapped__(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert backends.native_bf16.__wrapped__(cpuinfo)
    backends.native_bf16.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(backends, "native_bf16", lambda: False)
            assert backends.check("openvino", "bf16", "cpu") == "fp32"
    finally:
        backends.native_bf16.cache_clear()
    assert capsys.readouterr().err.strip() == (
        "fcnx: this CPU has no native bf16 (AVX-512 BF16 or AMX); running the nets in fp32"
    )
    with pytest.raises(UsageError, match="runs the nets on the CPU"):
        backends.check("openvino", "fp32", "cuda")


def test_the_backend_is_a_field_of_the_options_the_actors_get():
    options = CropOptions(("tiny_vgg",), kernel=56, backend="openvino", precision="bf16", engine="ray")
    sent = pickle.loads(pickle.dumps(options.portable()))  # what a Ray actor or worker process gets
    assert (sent.backend, sent.precision) == ("openvino", "bf16") and sent == options
    assert (CropOptions(("tiny_vgg",)).backend, CropOptions(("tiny_vgg",)).precision) == ("torch", "fp32")


def test_bf16_recheck_recomputes_the_best_levels_in_fp32(one_thread, cache):
    _runtime("openvino")
    if not backends.native_bf16():
        pytest.skip("this CPU has no native bf16")
    reference = Cropper(load_ensemble(NETS, kernel=56, device="cpu", backend="openvino"))
    rechecked = Cropper(load_ensemble(NETS, kernel=56, device="cpu", backend="openvino", precision="bf16"))
    alone = Cropper(rechecked.ensemble)
    alone.recheck = 0
    assert rechecked.recheck == 2
    drift = []
    for item in discover([_demo()]):
        (want,) = reference.crop_image(item.path, [item.label or ""]).boxes
        (got,) = rechecked.crop_image(item.path, [item.label or ""]).boxes
        (bf16,) = alone.crop_image(item.path, [item.label or ""]).boxes
        assert (got.level, got.cell, got.votes) == (want.level, want.cell, want.votes)
        assert abs(got.confidence - want.confidence) < 1e-5  # the chosen level was recomputed in fp32
        drift.append(abs(bf16.confidence - want.confidence))
    assert max(drift) > 1e-4  # without the recheck the confidences are bf16's


def test_openvino_is_refused_in_one_line_under_a_preloaded_jemalloc(tmp_path, monkeypatch):
    """OpenVINO's Core aborts (free(): invalid pointer) when jemalloc is preloaded: refused before it loads."""
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    argv = ["crop", "--nets", ",".join(NETS), "--backend", "openvino", str(_demo()), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*argv, "--device", "cpu"])
    assert result.exit_code != 0 and "--backend openvino aborts in a process with jemalloc preloaded" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "o" / "boxes.jsonl").exists()
