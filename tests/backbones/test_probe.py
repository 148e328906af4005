"""Measuring receptive-size formulas from feature-map sides, and the measurement cache."""

from __future__ import annotations

import math

import pytest

from fcnx.backbones import probe


def test_same_padding_and_valid_stems_are_measured():
    assert probe.measure_formula(lambda w: math.ceil(w / 32)) == (32, -31)  # TF "same": D = ceil(W / 32)
    assert probe.measure_formula(lambda w: (w - 43) // 32) == (32, 43)  # Inception's valid stem
    assert probe.measure_formula(lambda w: w // 7) == (7, 0)  # a patch-7 stem (ConvMixer)


def test_tiny_inputs_may_fail_to_run():
    def side(w: int) -> int:
        if w < 30:
            raise RuntimeError("input too small")
        return math.ceil(w / 32)

    assert probe.measure_formula(side) == (32, -31)


def test_sides_that_are_not_a_formula_are_refused():
    with pytest.raises(probe.ProbeError, match=r"does not follow W_min\(D\) = 32D-31: input side \d+ gives"):
        probe.measure_formula(lambda w: math.ceil(w / 32) if w < 200 else math.ceil(w / 16))


def test_nets_that_run_at_some_sides_only_are_refused():
    def side(w: int) -> int:
        if w % 32:
            raise RuntimeError("sizes of tensors must match")
        return w // 32

    with pytest.raises(probe.ProbeError, match=r"runs at some input sides only, not at \d+ \(RuntimeError: sizes"):
        probe.measure_formula(side)


def test_nets_that_never_run_are_refused_with_the_reason():
    def side(w: int) -> int:
        raise AssertionError(f"Input height ({w}) doesn't match model (224).")

    with pytest.raises(probe.ProbeError, match=r"not at 4096 \(AssertionError: Input height \(4096\)"):
        probe.measure_formula(side)


def test_exactness_is_relative_to_logits_of_order_one():
    assert probe.is_exact(1e-4, 0.5) and not probe.is_exact(2e-4, 0.5)
    assert probe.is_exact(1e-2, 1e3) and not probe.is_exact(0.2, 1e3)


def test_records_are_cached_per_namespace_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNX_CACHE", str(tmp_path))
    calls = []

    def measure() -> dict:
        calls.append(1)
        return {"stride": 32, "offset": -31}

    assert probe.measured("lib-1.0", "net.v1", measure) == {"stride": 32, "offset": -31, "probe": probe.PROBE_VERSION}
    assert probe.measured("lib-1.0", "net.v1", measure)["stride"] == 32
    assert len(calls) == 1 and (tmp_path / "lib-1.0" / "net.v1.json").is_file()
    assert probe.cached_record("lib-2.0", "net.v1") is None  # another library version measures again
    monkeypatch.setattr(probe, "PROBE_VERSION", probe.PROBE_VERSION + 1)
    probe.measured("lib-1.0", "net.v1", measure)
    assert len(calls) == 2  # a record of an older probe is measured again


def test_an_unwritable_cache_only_costs_measuring_again(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FCNX_CACHE", str(blocker))
    assert probe.measured("lib", "net", lambda: {"stride": 8, "offset": 0})["stride"] == 8
