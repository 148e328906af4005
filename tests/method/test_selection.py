"""The selection rules on hand-built heatmaps: exact cells, levels, votes and ties."""

from __future__ import annotations

import numpy as np
import pytest

from fcnx.method.selection import Level, Selector, best_cell, level_from_probs, select, top_category, top_class_map


def probs(nets: int, classes: int, h: int, w: int, fill: float | None = None) -> np.ndarray:
    """Uniform probabilities ``nets x classes x h x w`` (each cell sums to 1)."""
    return np.full((nets, classes, h, w), 1.0 / classes if fill is None else fill)


def put(p: np.ndarray, net: int, cell: tuple[int, int], values: list[float]) -> None:
    """Set one net's class distribution at one cell."""
    p[net, :, cell[0], cell[1]] = values


def test_level_from_probs_takes_category_and_top_class_votes():
    p = probs(2, 3, 1, 2)
    put(p, 0, (0, 0), [0.2, 0.5, 0.3])
    put(p, 1, (0, 0), [0.6, 0.3, 0.1])
    level = level_from_probs(p, 1)
    assert level.prob[:, 0, 0].tolist() == [0.5, 0.3]
    assert level.vote[:, 0, 0].tolist() == [True, False]
    # uniform cell: the lowest class index is the top class, so only category 0 gets votes there
    assert level.vote[:, 0, 1].tolist() == [False, False]
    assert level_from_probs(p, 0).vote[:, 0, 1].tolist() == [True, True]


def test_paper_rule_takes_the_largest_summed_probability_per_level():
    p = probs(2, 3, 2, 3)
    put(p, 0, (1, 2), [0.1, 0.8, 0.1])
    put(p, 1, (1, 2), [0.1, 0.3, 0.6])  # sum 1.1 for class 1, one vote
    put(p, 0, (0, 1), [0.1, 0.5, 0.4])
    put(p, 1, (0, 1), [0.1, 0.5, 0.4])  # sum 1.0 for class 1, two votes
    level = level_from_probs(p, 1)
    assert best_cell(level, "paper") == (1, 2)
    assert best_cell(level, "votes-first") == (0, 1)


def test_ties_inside_a_level_go_to_the_first_cell_in_row_major_order():
    p = probs(2, 2, 3, 3)
    for cell in [(2, 0), (1, 2), (2, 2)]:
        for net in range(2):
            put(p, net, cell, [0.9, 0.1])
    level = level_from_probs(p, 0)
    assert best_cell(level, "paper") == (1, 2)
    assert best_cell(level, "votes-first") == (1, 2)


def test_votes_first_breaks_equal_votes_by_summed_probability_then_row_major():
    p = probs(3, 2, 2, 2)
    put(p, 0, (0, 0), [0.6, 0.4])  # one vote, sum 0.6 + 0.5 + 0.5
    put(p, 0, (0, 1), [0.7, 0.3])  # one vote, larger sum
    put(p, 0, (1, 0), [0.7, 0.3])  # same votes and sum as (0, 1): later in row-major order
    level = level_from_probs(p, 0)
    # uniform cells vote for class 0 too (lowest index on ties): every cell has all 3 votes
    assert level.votes().tolist() == [[3, 3], [3, 3]]
    assert best_cell(level, "votes-first") == (0, 1)


def test_across_levels_votes_come_before_confidence_and_ties_keep_the_smallest_scale():
    small = probs(2, 3, 1, 1)
    put(small, 0, (0, 0), [0.1, 0.9, 0.0])
    put(small, 1, (0, 0), [0.1, 0.45, 0.45])  # 2 votes for class 1 (0.45 ties with class 2: lower index wins)
    big = probs(2, 3, 2, 2)
    put(big, 0, (1, 1), [0.0, 0.99, 0.01])
    put(big, 1, (1, 1), [0.6, 0.4, 0.0])  # 1 vote, larger sum 1.39
    choice = select([level_from_probs(small, 1), level_from_probs(big, 1)])
    assert (choice.level, choice.cell, choice.votes) == (0, (0, 0), 2)
    assert choice.confidence == pytest.approx(1.35)
    assert choice.net_scores == (0.9, 0.45) and choice.net_votes == (True, True)
    assert choice.found and choice.levels_examined == 2 and not choice.stopped_early
    # identical levels: the smaller scale wins
    twice = select([level_from_probs(big, 1), level_from_probs(big.copy(), 1)])
    assert (twice.level, twice.cell) == (0, (1, 1))


def test_rules_can_choose_different_levels():
    # level 0: best sum at a cell with one vote; a two-vote cell exists with a lower sum
    first = probs(2, 2, 1, 2)
    put(first, 0, (0, 0), [0.99, 0.01])
    put(first, 1, (0, 0), [0.4, 0.6])
    put(first, 0, (0, 1), [0.55, 0.45])
    put(first, 1, (0, 1), [0.55, 0.45])
    # level 1: a single cell with two votes and a lower sum (0.5/0.5 is a vote: lowest index on ties)
    second = probs(2, 2, 1, 1)
    put(second, 0, (0, 0), [0.55, 0.45])
    put(second, 1, (0, 0), [0.5, 0.5])
    levels = [level_from_probs(first, 0), level_from_probs(second, 0)]
    paper = select(levels, "paper")
    votes_first = select(levels, "votes-first")
    # paper: level 0 offers (1 vote, 1.39), level 1 (2 votes, 1.05) -> level 1
    assert (paper.level, paper.cell, paper.votes) == (1, (0, 0), 2)
    assert paper.confidence == pytest.approx(1.05)
    # votes-first: level 0 offers (2 votes, 1.1) at cell (0, 1), level 1 (2 votes, 1.05) -> level 0
    assert (votes_first.level, votes_first.cell, votes_first.votes) == (0, (0, 1), 2)


def test_found_is_false_only_when_no_net_votes_anywhere():
    p = probs(2, 3, 2, 2)
    p[:, 2] = 0.5
    p[:, 0] = 0.3
    p[:, 1] = 0.2  # class 2 is every net's top class everywhere
    nobody = select([level_from_probs(p, 1)])
    assert not nobody.found and nobody.votes == 0
    assert nobody.cell == (0, 0)  # a box is still returned, flagged
    # one vote at a cell the paper rule does not choose still counts as found
    q = p.copy()
    put(q, 0, (1, 1), [0.0, 0.6, 0.4])
    put(q, 1, (0, 0), [0.0, 0.45, 0.55])
    put(q, 0, (0, 0), [0.0, 0.45, 0.55])
    q[:, 1, 0, 1] = 0.2
    choice = select([level_from_probs(q, 1)], "paper")
    assert choice.cell == (0, 0) and choice.votes == 0 and choice.found


def test_early_stop_ends_at_the_first_level_where_every_net_votes():
    def level(votes: int) -> Level:
        vote = np.zeros((2, 1, 1), bool)
        vote[:votes] = True
        return Level(prob=np.full((2, 1, 1), 0.4 + 0.1 * votes), vote=vote)

    levels = [level(1), level(2), level(2), level(0)]
    stopped = select(levels, "votes-first", early_stop=True)
    assert (stopped.level, stopped.levels_examined, stopped.stopped_early) == (1, 2, True)
    full = select(levels, "votes-first")
    assert (full.level, full.levels_examined, full.stopped_early) == (1, 4, False)
    selector = Selector("paper", early_stop=True)
    assert selector.add(levels[0]) is False and selector.add(levels[1]) is True
    with pytest.raises(RuntimeError, match="stopped early"):
        selector.add(levels[2])


def test_top_category_is_the_class_of_the_most_confident_cell_over_all_levels():
    a = probs(2, 3, 1, 2)
    put(a, 0, (0, 1), [0.1, 0.2, 0.7])
    put(a, 1, (0, 1), [0.1, 0.2, 0.7])  # summed 1.4 for class 2
    b = probs(2, 3, 2, 2)
    put(b, 0, (1, 0), [0.75, 0.2, 0.05])
    put(b, 1, (1, 0), [0.75, 0.2, 0.05])  # summed 1.5 for class 0
    assert top_category([top_class_map(a), top_class_map(b)]) == 0
    assert top_category([top_class_map(a)]) == 2
    # a tie across levels goes to the smaller level
    c = probs(2, 3, 1, 1)
    put(c, 0, (0, 0), [0.1, 0.7, 0.2])
    put(c, 1, (0, 0), [0.1, 0.7, 0.2])
    # c's best is class 1 with 1.4 and a's best is class 2 with 1.4: the earlier level wins
    assert top_category([top_class_map(c), top_class_map(a)]) == top_class_map(c)[1][0, 0] == 1


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        Level(prob=np.zeros((2, 2, 2)), vote=np.zeros((2, 2, 3), bool))
    with pytest.raises(ValueError, match="unknown selection rule"):
        Selector("max")
    with pytest.raises(ValueError, match="not one of the 3 classes"):
        level_from_probs(probs(1, 3, 1, 1), 3)
    with pytest.raises(ValueError, match="no level"):
        select([])
