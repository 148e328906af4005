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


def test_auto_goes_on_to_a_tenth_of_the_short_side_when_the_image_has_the_pixels():
    scales = geometry.auto_scales(2000, 3000, 224, 1.2, 2000)
    assert scales == geometry.pyramid_scales(2000, 3000, 224, 1.2, 10.0) and len(scales) == 13
    assert 2000 / (scales[-1] / scales[0]) / 2000 == pytest.approx(1 / 1.2**12)  # smallest window: 11.2 % of the side


def test_auto_stops_before_a_level_over_eight_times_the_decoded_side():
    # short side 46 at kernel 56: level 10 has a short side of 347 <= 368 = 8 x 46, level 11 would have 416
    scales = geometry.auto_scales(46, 64, 56, 1.2, 46)
    assert scales == [56 / 46 * 1.2**k for k in range(11)]
    assert geometry.scaled_size(46, 64, scales[-1], 56) == (347, 482)
    # the same image decoded at twice the size may go on: the limit is the decoded pixels'
    assert len(geometry.auto_scales(46, 64, 56, 1.2, 92)) == 13


def test_auto_keeps_within_the_pixel_budget_and_always_keeps_the_first_level():
    # 512 x 512 at kernel 224: sides 224, 269, 323, 387, 464 -> 591931 pixels for five levels
    assert len(geometry.auto_scales(512, 512, 224, 1.2, 512, budget=591931)) == 5
    assert len(geometry.auto_scales(512, 512, 224, 1.2, 512, budget=591930)) == 4
    assert geometry.auto_scales(10, 10, 224, 1.2, 10, budget=1) == [22.4]


def test_largest_scale_of_a_number_or_auto():
    assert geometry.largest_scale(geometry.AUTO) == 10.0 and geometry.largest_scale(3) == 3.0
    with pytest.raises(ValueError, match="a number >= 1 or 'auto', got 'big'"):
        geometry.largest_scale("big")
