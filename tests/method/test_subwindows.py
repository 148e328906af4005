"""Coarse-to-fine geometry and the selection over levels computed in part (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from fcnx.method import subwindows
from fcnx.method.selection import Level, Selector, best_cell, select
from fcnx.method.subwindows import Span, span


def test_span_keeps_the_margin_the_stride_and_the_side_modulo_the_stride():
    # 16 cells of kernel 56, stride 8 on a 180-pixel side; cells 7..8 with a margin of 3 cells
    assert span(7, 9, 16, 180, 56, 8, 3) == Span(start=32, stop=148, first=7, last=9)  # 148 = 180 - 4 * 8
    # at the level's first border the margin is not needed (a real border), at the last one neither
    assert span(0, 2, 16, 180, 56, 8, 3) == Span(start=0, stop=92, first=0, last=2)
    assert span(14, 16, 16, 180, 56, 8, 3) == Span(start=88, stop=180, first=14, last=16)
    for lo, hi in [(0, 1), (3, 5), (7, 9), (15, 16)]:
        s = span(lo, hi, 16, 180, 56, 8, 3)
        assert s.start % 8 == 0 and (180 - s.stop) % 8 == 0
        assert s.first <= lo and s.last >= hi
        if s.start > 0:  # the exact cells are 3 cells from the cut
            assert s.first * 8 - s.start == 3 * 8
        if s.stop < 180:
            assert s.stop - (8 * (s.last - 1) + 56) >= 3 * 8
    with pytest.raises(ValueError):
        span(5, 5, 16, 180, 56, 8, 3)


def test_cover_groups_near_cells_and_skips_known_ones():
    wanted = np.zeros((10, 20), dtype=bool)
    wanted[1, 1] = wanted[2, 2] = True  # one group
    wanted[8, 18] = True  # far away: its own sub-window
    windows = subwindows.cover(wanted, (128, 208), 56, 8, 1)
    assert len(windows) == 2
    exact = windows[0].exact((10, 20)) | windows[1].exact((10, 20))
    assert exact[wanted].all()
    assert not subwindows.cover(wanted, (128, 208), 56, 8, 1, known=exact)
    # with a margin of 4 cells the two groups' sub-windows would overlap: one window
    close = np.zeros((10, 20), dtype=bool)
    close[2, 2] = close[2, 9] = True
    assert len(subwindows.cover(close, (128, 208), 56, 8, 4)) == 1
    assert len(subwindows.cover(close, (128, 208), 56, 8, 1)) == 2


def _level(summed: np.ndarray, votes: np.ndarray, known: np.ndarray | None) -> Level:
    prob = np.stack([summed / 2, summed / 2])
    vote = np.stack([votes >= 1, votes >= 2])
    if known is not None:
        prob, vote = np.where(known, prob, 0.0), vote & known
    return Level(prob, vote, known)


def test_cells_not_known_are_never_chosen_by_either_rule():
    summed = np.array([[0.2, 0.9, 0.1], [0.3, 0.4, 0.5]])
    votes = np.array([[0, 2, 0], [1, 1, 0]])
    known = np.array([[True, False, True], [True, True, True]])
    assert best_cell(_level(summed, votes, None), "paper") == (0, 1)
    assert best_cell(_level(summed, votes, known), "paper") == (1, 2)
    assert best_cell(_level(summed, votes, None), "votes-first") == (0, 1)
    assert best_cell(_level(summed, votes, known), "votes-first") == (1, 1)
    # only unknown cells vote: the known cells (none voting) are ranked by their sum
    lonely = np.array([[True, False, True], [False, False, False]])
    assert best_cell(_level(summed, votes, lonely), "votes-first") == (0, 0)


def test_selection_over_partial_levels():
    small = _level(np.array([[0.5, 0.6]]), np.array([[1, 1]]), None)
    big_summed = np.array([[0.1, 1.8, 0.2], [0.7, 0.2, 1.9]])
    big_votes = np.array([[0, 2, 0], [1, 0, 2]])
    full = select([small, _level(big_summed, big_votes, None)])
    assert (full.level, full.cell, full.votes) == (1, (1, 2), 2)
    partial = _level(big_summed, big_votes, np.array([[True, True, False], [True, True, False]]))
    choice = select([small, partial])
    assert (choice.level, choice.cell, choice.votes, choice.confidence) == (1, (0, 1), 2, pytest.approx(1.8))
    assert choice.found and choice.levels_examined == 2
    # a partial level whose known cells are weaker than a smaller level's best loses to it
    weak = _level(big_summed, big_votes, np.array([[True, False, False], [False, False, False]]))
    choice = select([small, weak], "votes-first")
    assert (choice.level, choice.cell, choice.votes) == (0, (0, 1), 1)
    selector = Selector("paper")
    for level in (small, weak):
        selector.add(level)
    assert selector.result().summed[1][0, 1] == 0.0  # unknown cells count 0 in the evidence
    with pytest.raises(ValueError, match="known cells"):
        Level(np.zeros((2, 2, 3)), np.zeros((2, 2, 3), bool), np.zeros((2, 3), bool))


def test_candidates_map_the_best_cells_to_the_next_level():
    # level of 3 x 5 cells (kernel 56, stride 8) at 72 x 88 pixels of a 60 x 73 image; next level 86 x 106
    summed = np.zeros((3, 5))
    summed[1, 3] = 1.0
    source = _level(summed, np.zeros((3, 5), int), None)
    target_cells = ((86 - 56) // 8 + 1, (106 - 56) // 8 + 1)
    wanted = subwindows.candidates(source, (72, 88), target_cells, (86, 106), 56, 8, (60, 73), "paper", 1, 0)
    rows, cols = subwindows.nearest_cells((3, 5), (72, 88), target_cells, (86, 106), 56, 8, (60, 73))
    assert np.argwhere(wanted).tolist() == [[rows[1], cols[3]]]
    # the window centre of source cell (1, 3): (8 + 28) / 72 * 60 = 30 rows, (24 + 28) / 88 * 73 = 43.1 columns
    # at the next level: 30 * 86 / 60 = 43 -> cell (43 - 28) / 8 = 1.9 -> 2; 43.1 * 106 / 73 = 62.6 -> (62.6 - 28) / 8 -> 4
    assert (rows[1], cols[3]) == (2, 4)
    grown = subwindows.candidates(source, (72, 88), target_cells, (86, 106), 56, 8, (60, 73), "paper", 1, 1)
    assert grown.sum() == 9 and grown[1:4, 3:6].all()


def test_overlapping_and_meeting_windows():
    from fcnx.method import evidence, geometry, metrics

    size, sizes, kernel, stride = (100, 150), [(56, 84), (67, 101), (168, 252)], 56, 8
    cells = [((h - kernel) // stride + 1, (w - kernel) // stride + 1) for h, w in sizes]
    chosen = geometry.cell_to_box((1, 3), size, sizes[2], kernel, stride)
    near = subwindows.overlapping(cells, sizes, size, kernel, stride, chosen)
    for c, s, mask in zip(cells, sizes, near):
        boxes = evidence.windows(c, size, s, kernel, stride)
        iou = metrics.box_iou(boxes, np.broadcast_to(np.asarray(chosen), boxes.shape))
        assert (mask.reshape(-1) == (iou >= evidence.OVERLAP)).all()
    assert near[2][1, 3] and near[2].sum() < near[2].size
    # level 2 (3x the first), windows of 56 / 1.68 = 33.3 image pixels every 8 / 1.68 = 4.76: those meeting a
    # 10-pixel box at x = 50 start before x = 60 and end after x = 50 (columns 4..12), rows before y = 10 (0..2)
    (meets,) = subwindows.meeting(cells[2:], sizes[2:], size, kernel, stride, (50.0, 0.0, 10.0, 10.0))
    assert np.argwhere(meets.any(axis=0)).ravel().tolist() == list(range(4, 13))
    assert np.argwhere(meets.any(axis=1)).ravel().tolist() == [0, 1, 2]
