"""Hostile kernel choices through the library: ``load_ensemble`` and the evaluate job."""

from __future__ import annotations

import json
import types

import pytest
from hostile_helpers import COLORS, NETS, dataset
from tiny_backbones import color_checkpoint

from fcnx import EvaluateOptions, run_evaluate
from fcnx.engine.ensemble import load_ensemble
from fcnx.errors import UsageError


@pytest.fixture
def weights(tmp_path, tiny_registry) -> dict[str, str]:
    return {n: str(color_checkpoint(tmp_path / f"{n}.safetensors", n, input_size=s)) for n, s in NETS.items()}


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "128", None])
def test_a_per_net_kernel_that_is_not_a_side_is_refused_not_taken_as_native(weights, value):
    with pytest.raises(
        UsageError, match=rf"^kernel {value!r} for tiny0: give a side in pixels \(a whole number >= 1\)$"
    ):
        load_ensemble(list(NETS), weights, kernel={"tiny0": value}, device="cpu")


@pytest.mark.parametrize("value", [1.5, True, "NATIVE"])
def test_a_common_kernel_that_is_not_a_side_is_refused(weights, value):
    with pytest.raises(UsageError, match=rf"^unknown kernel {value!r}: give a side in pixels or 'native'$"):
        load_ensemble(list(NETS), weights, kernel=value, device="cpu")


def test_evaluate_writes_a_kernel_given_as_any_mapping(tmp_path, weights):
    data = dataset(tmp_path / "data")
    kernel = types.MappingProxyType({"tiny0": 96})
    options = EvaluateOptions(nets=list(NETS), weights=weights, kernel=kernel, split="all", device="cpu")
    result = run_evaluate(data, options, outdir=tmp_path / "eval").run()
    assert [s.total for s in result.original.values()] == [len(COLORS)] * len(result.original)
    summary = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert summary["kernel"] == {"tiny0": 96}
