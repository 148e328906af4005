"""Resampling a net's cells on the reference grid: exact positions and weights on hand-made grids."""

from __future__ import annotations

import numpy as np
import pytest

from fcnx.method import geometry
from fcnx.method.alignment import axis_weights, net_side, source_positions


def test_net_side_scales_by_the_kernel_ratio_rounded_and_never_below_the_kernel():
    assert net_side(299, 299, 299) == 299
    assert net_side(224, 260, 224) == 260  # level 0: the short side equals each net's kernel
    assert net_side(336, 260, 224) == 390  # 336 * 260 / 224 = 390 exactly
    assert net_side(300, 240, 224) == 321  # 321.43 rounded
    assert net_side(224, 96, 224) == 96 and net_side(100, 96, 224) == 96


def test_same_kernel_and_stride_is_the_identity():
    positions = source_positions(5, 420, 299, 32, 420, 299, 32)
    assert positions.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    for mode in ("bilinear", "nearest"):
        axis = axis_weights(positions, 5, mode)
        assert axis.low.tolist() == axis.high.tolist() == [0, 1, 2, 3, 4] and axis.weight.tolist() == [0.0] * 5


def test_a_stride_16_net_beside_a_stride_32_reference_takes_every_second_cell():
    # one kernel 64, one input side 160: reference cells 0..3 at 0, 32, 64, 96; the net's at 0, 16, ..., 96
    assert geometry.common_cells(160, 64, 32) == 4 and geometry.common_cells(160, 64, 16) == 7
    positions = source_positions(4, 160, 64, 32, 160, 64, 16)
    assert positions.tolist() == [0.0, 2.0, 4.0, 6.0]
    axis = axis_weights(positions, 7)
    assert axis.low.tolist() == [0, 2, 4, 6] and axis.weight.tolist() == [0.0] * 4


def test_a_stride_32_net_beside_a_stride_16_reference_is_interpolated_half_way():
    positions = source_positions(7, 160, 64, 16, 160, 64, 32)
    assert positions.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    axis = axis_weights(positions, 4)
    assert axis.low.tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert axis.high.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert axis.weight.tolist() == [0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0]
    nearest = axis_weights(positions, 4, "nearest")  # halves round up
    assert nearest.low.tolist() == nearest.high.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert nearest.weight.tolist() == [0.0] * 7


def test_a_larger_kernel_sees_the_level_enlarged_and_its_cells_closer_in_the_image():
    # reference kernel 64 at side 160; a kernel-96 net at 240: its cells are 32 / 1.5 = 21.3 reference pixels apart
    assert net_side(160, 96, 64) == 240
    positions = source_positions(4, 160, 64, 32, 240, 96, 32)
    assert positions.tolist() == [0.0, 1.5, 3.0, 4.5]  # centres 32, 64, 96, 128 -> (48, 96, 144, 192 - 48) / 32
    # the net has 5 cells (its last window [128, 224) of 240): the reference's last centre, 4.5, is clamped to 4
    axis = axis_weights(positions, geometry.common_cells(240, 96, 32))
    assert axis.low.tolist() == [0, 1, 3, 4] and axis.high.tolist() == [0, 2, 3, 4]
    assert axis.weight.tolist() == [0.0, 0.5, 0.0, 0.0]
    # kernel ratio 2: every second cell of the net, exactly
    assert source_positions(3, 128, 64, 32, 256, 128, 32).tolist() == [0.0, 2.0, 4.0]


def test_rounded_sizes_move_the_centres_by_the_exact_ratio():
    # 300 * 240 / 224 = 321.43 -> 321: centres are compared with the exact ratio 321 / 300
    positions = source_positions(3, 300, 224, 32, 321, 240, 32)
    expected = [((32 * i + 112) * 321 / 300 - 120) / 32 for i in range(3)]
    assert positions.tolist() == expected
    assert positions[0] == pytest.approx(-0.005)  # (112 * 1.07 - 120) / 32: just before the net's first centre


def test_positions_outside_the_net_are_clamped_to_its_edge_cells():
    positions = np.array([-0.25, 0.0, 2.75, 3.0, 3.5])
    axis = axis_weights(positions, 4)
    assert axis.low.tolist() == [0, 0, 2, 3, 3] and axis.high.tolist() == [0, 0, 3, 3, 3]
    assert axis.weight.tolist() == [0.0, 0.0, 0.75, 0.0, 0.0]
    nearest = axis_weights(positions, 4, "nearest")
    assert nearest.low.tolist() == [0, 0, 3, 3, 3]
    one = axis_weights(np.array([0.0, 0.4]), 1)
    assert one.low.tolist() == one.high.tolist() == [0, 0] and one.weight.tolist() == [0.0, 0.0]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one cell"):
        axis_weights(np.zeros(2), 0)
    with pytest.raises(ValueError, match="unknown alignment 'cubic'"):
        axis_weights(np.zeros(2), 2, "cubic")
