"""`--weights NET=pretrained` without network: a quick one-line error, and cached weights still load.

The hub is made unreachable on purpose (HF_ENDPOINT on a closed local port), so these tests
behave the same on a machine with network access.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from PIL import Image
from safetensors.torch import save_file

from fcnx.errors import FcnxError
from fcnx_timm import hub

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """An unreachable hub and empty caches, for this process."""
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield tmp_path / "hf"
    torch.hub.set_dir(os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub"))


@pytest.mark.slow  # a fresh process importing torch and timm
def test_crop_with_pretrained_weights_and_no_hub_is_a_one_line_error(tmp_path):
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "a.jpg")
    env = {**os.environ, "HF_ENDPOINT": CLOSED, "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fcnx",
            "crop",
            "--nets",
            "resnet50",
            "--weights",
            "resnet50=pretrained",
            "--category",
            "pizza",
            str(tmp_path / "a.jpg"),
            "-o",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "Retrying" not in done.stderr
    assert done.stderr.startswith(
        f"Error: cannot download the pretrained weights 'resnet50.a1_in1k' from {CLOSED} (no connection: "
    )
    assert "pass a local weight file with --weights NET=FILE, or set HF_ENDPOINT to a reachable mirror" in done.stderr


def test_offline_mode_without_cache_says_so(no_hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        FcnxError,
        match=r"^cannot download the pretrained weights 'test_resnet\.r160_in1k' from "
        r"http://127\.0\.0\.1:9 \(HF_HUB_OFFLINE is set and they are not in the cache\)",
    ):
        hub.create_pretrained("test_resnet.r160_in1k")


def test_cached_weights_load_without_network(no_hub):
    import timm

    torch.manual_seed(0)
    state = timm.create_model("test_resnet").state_dict()
    snapshot = no_hub / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    (no_hub / "models--timm--test_resnet.r160_in1k" / "refs").mkdir()
    (no_hub / "models--timm--test_resnet.r160_in1k" / "refs" / "main").write_text("0" * 40)
    loaded = hub.create_pretrained("test_resnet.r160_in1k").state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    (snapshot / "model.safetensors").write_bytes(b"cut short")
    with pytest.raises(
        FcnxError,
        match=r"model\.safetensors: cannot load the cached pretrained weights "
        r"'test_resnet\.r160_in1k' \(\w+\); remove the file",
    ):
        hub.create_pretrained("test_resnet.r160_in1k")


def test_a_url_hosted_net_without_network_names_its_server(no_hub, monkeypatch):
    import timm.models

    cfg = timm.models.get_pretrained_cfg("legacy_xception.tf_in1k")
    cfg.url = f"{CLOSED}/xception.pth"
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda tag: cfg)
    with pytest.raises(
        FcnxError,
        match=rf"from {CLOSED} \(no connection: .*\): pass a local weight file with "
        rf"--weights NET=FILE, or download {CLOSED}/xception.pth to ",
    ):
        hub.create_pretrained("legacy_xception.tf_in1k")
    assert not Path(no_hub).exists()
