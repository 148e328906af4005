"""The pyramid's level count is bounded, and its settings are refused in library terms (no CLI flag names)."""

from __future__ import annotations

import math

import pytest

from fcnx.method import geometry


@pytest.mark.parametrize(
    "step, max_scale, levels",
    [(1.2, 3.0, 7), (1.2, 1.0, 1), (2.0, 4.0, 3), (1.01, 2.7, 100), (1.5, 1e6, 35)],
)
def test_level_counts(step, max_scale, levels):
    assert geometry.pyramid_levels(step, max_scale) == levels
    assert len(geometry.pyramid_scales(100, 200, 50, step, max_scale)) == levels


@pytest.mark.parametrize(
    "step, max_scale, message",
    [
        (math.nan, 3.0, "the scale step must be a finite number > 1, got nan"),
        (math.inf, 3.0, "the scale step must be a finite number > 1, got inf"),
        (1.0, 3.0, "the scale step must be a finite number > 1, got 1.0"),
        (1.2, math.nan, "the maximum scale must be a finite number >= 1, got nan"),
        (1.2, math.inf, "the maximum scale must be a finite number >= 1, got inf"),
        (1.2, 0.5, "the maximum scale must be a finite number >= 1, got 0.5"),
        (1.01, 2.71, "a scale step of 1.01 up to 2.71 times the first level gives 101 pyramid levels; at most 100"),
        (1.2, 1e308, "gives 3890 pyramid levels"),
        (1.000001, 3.0, "gives 1098613 pyramid levels"),
    ],
)
def test_bad_settings_are_value_errors_in_library_terms(step, max_scale, message):
    with pytest.raises(ValueError) as info:
        geometry.pyramid_scales(100, 200, 50, step, max_scale)
    assert message in str(info.value) and "--" not in str(info.value)
