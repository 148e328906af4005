"""Which cell of which pyramid level holds the category: the paper's selection, and the authors' variant.

Pure numpy. A pyramid level is seen through :class:`Level`: for one category, each net's
probability of it at every cell (``nets x h x w``) and whether it is the net's top class there
(its *vote*). Cells of all nets are already aligned on one grid (see ``docs/crop.md``).

Rules (``rule=``):

``"paper"`` (default, Sec. IV-A of the paper)
    per level, the cell with the largest probability summed over nets; across levels, the most
    votes at that cell, then the largest summed probability.
``"votes-first"`` (the authors' code)
    per level, the cell with the most votes, then the largest summed probability; across levels
    as above. With ``early_stop`` the pyramid stops at the first level whose chosen cell has the
    votes of every net (that level then wins: no earlier level had as many votes).

Ties are broken deterministically: within a level the first cell in row-major order, across
levels the smallest scale (levels must be given in increasing scale order). Sums are taken in
float64.

``found`` is ``False`` when no net votes for the category at any cell of any level examined:
the paper's signal of a likely wrong label. A choice is returned either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

RULES = ("paper", "votes-first")
#: the rule used when none is given: the paper's
DEFAULT_RULE = "paper"


@dataclass(frozen=True)
class Level:
    """One pyramid level, for one category: ``prob`` (float, ``nets x h x w``) and ``vote`` (bool, same shape)."""

    prob: np.ndarray
    vote: np.ndarray

    def __post_init__(self) -> None:
        if self.prob.ndim != 3 or self.prob.shape != self.vote.shape or 0 in self.prob.shape:
            raise ValueError(
                f"a level needs prob and vote of one shape nets x h x w, got {self.prob.shape} and {self.vote.shape}"
            )

    @property
    def nets(self) -> int:
        return self.prob.shape[0]

    def summed(self) -> np.ndarray:
        """Probability summed over nets (``h x w``, float64)."""
        return self.prob.sum(axis=0, dtype=np.float64)

    def votes(self) -> np.ndarray:
        """Nets voting for the category at each cell (``h x w``, int)."""
        return self.vote.sum(axis=0, dtype=np.int64)


def level_from_probs(probs: np.ndarray, category: int) -> Level:
    """The :class:`Level` of ``category`` from all classes' probabilities ``nets x classes x h x w``.

    A net votes where ``category`` is its top class (on equal probabilities the lowest class index is top).
    """
    probs = np.asarray(probs)
    if probs.ndim != 4:
        raise ValueError(f"expected probabilities nets x classes x h x w, got shape {probs.shape}")
    if not 0 <= category < probs.shape[1]:
        raise ValueError(f"category {category} is not one of the {probs.shape[1]} classes")
    return Level(prob=probs[:, category], vote=probs.argmax(axis=1) == category)


def best_cell(level: Level, rule: str = DEFAULT_RULE) -> tuple[int, int]:
    """The chosen cell ``(i, j)`` of one level under ``rule`` (first in row-major order on ties)."""
    summed = level.summed()
    if rule == "paper":
        flat = int(np.argmax(summed))
    elif rule == "votes-first":
        votes = level.votes()
        flat = int(np.argmax(np.where(votes == votes.max(), summed, -np.inf)))
    else:
        raise ValueError(f"unknown selection rule {rule!r}; use one of {', '.join(RULES)}")
    i, j = np.unravel_index(flat, summed.shape)
    return int(i), int(j)


@dataclass(frozen=True)
class Choice:
    """The selected cell: where, how strongly, and by which nets.

    ``level`` indexes the levels given; ``confidence`` is the probability summed over nets at the
    cell; ``heatmap`` is that level's summed probability (``h x w``), e.g. to draw it; ``summed``
    holds every examined level's (the evidence of :mod:`fcnx.method.evidence`).
    """

    level: int
    cell: tuple[int, int]
    votes: int
    confidence: float
    net_scores: tuple[float, ...]
    net_votes: tuple[bool, ...]
    found: bool
    levels_examined: int
    stopped_early: bool
    heatmap: np.ndarray = field(repr=False, compare=False)
    summed: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    @property
    def nets(self) -> int:
        return len(self.net_scores)

    @property
    def mean_confidence(self) -> float:
        return self.confidence / self.nets


class Selector:
    """Selection fed one level at a time, in increasing scale order, so a caller can stop early.

    ``add(level)`` returns ``True`` once the choice is final (early stop); ``result()`` gives it.
    """

    def __init__(self, rule: str = DEFAULT_RULE, early_stop: bool = False) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown selection rule {rule!r}; use one of {', '.join(RULES)}")
        self.rule = rule
        self.early_stop = early_stop
        self.done = False
        self._best: Choice | None = None
        self._examined = 0
        self._found = False
        self._summed: list[np.ndarray] = []

    def add(self, level: Level) -> bool:
        """Consider the next (larger) level; ``True`` when no further level can change the choice."""
        if self.done:
            raise RuntimeError("selection already stopped early; no further level is needed")
        if self._best is not None and level.nets != self._best.nets:
            raise ValueError(f"level has {level.nets} nets, earlier levels had {self._best.nets}")
        index, self._examined = self._examined, self._examined + 1
        self._found = self._found or bool(level.vote.any())
        i, j = best_cell(level, self.rule)
        summed = level.summed()
        self._summed.append(summed)
        votes, confidence = int(level.vote[:, i, j].sum()), float(summed[i, j])
        best = self._best
        if best is None or (votes, confidence) > (best.votes, best.confidence):
            best = Choice(
                level=index,
                cell=(i, j),
                votes=votes,
                confidence=confidence,
                net_scores=tuple(float(p) for p in level.prob[:, i, j]),
                net_votes=tuple(bool(v) for v in level.vote[:, i, j]),
                found=False,
                levels_examined=0,
                stopped_early=False,
                heatmap=summed,
            )
        self._best = best
        self.done = self.early_stop and votes == level.nets
        return self.done

    def result(self) -> Choice:
        """The choice over the levels added so far."""
        if self._best is None:
            raise ValueError("no level was given")
        return dataclasses.replace(
            self._best,
            found=self._found,
            levels_examined=self._examined,
            stopped_early=self.done,
            summed=tuple(self._summed),
        )


def select(levels: Iterable[Level], rule: str = DEFAULT_RULE, early_stop: bool = False) -> Choice:
    """Choose the cell and level for one category; ``levels`` in increasing scale order."""
    selector = Selector(rule, early_stop)
    for level in levels:
        if selector.add(level):
            break
    return selector.result()


def top_category(maps: Sequence[tuple[np.ndarray, np.ndarray]]) -> int:
    """The category when none is given: the ensemble's top class at its most confident cell.

    ``maps`` holds, per level, the largest probability summed over nets at each cell and the
    class reaching it (``h x w`` each; :func:`top_class_map` computes them). The category is
    that class at the cell with the largest such value over all levels; ties go to the
    smallest level, then the first cell in row-major order (and, inside the maps, to the
    lowest class index).
    """
    best_value, best_class = -np.inf, -1
    for values, classes in maps:
        flat = int(np.argmax(values))
        value = float(values.flat[flat])
        if value > best_value:
            best_value, best_class = value, int(classes.flat[flat])
    if best_class < 0:
        raise ValueError("no level was given")
    return best_class


def top_class_map(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of ``nets x classes x h x w`` probabilities: the largest summed probability and its class."""
    summed = np.asarray(probs).sum(axis=0, dtype=np.float64)
    return summed.max(axis=0), summed.argmax(axis=0)
