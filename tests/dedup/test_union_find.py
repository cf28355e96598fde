"""The union-find under groups of any size: no recursion, and near-linear time."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import TypeVar

from shared.dedup.union_find import UnionFind

T = TypeVar("T")


def _with_little_stack(run: Callable[[], T], frames: int = 25) -> T:
    """Runs `run` allowing only a few more nested calls than the test already uses: any recursion over a group of
    more than that many items raises RecursionError."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + frames)
    try:
        return run()
    finally:
        sys.setrecursionlimit(limit)


def test_a_million_long_chain_without_recursion() -> None:
    # union(i + 1, i) is the order that makes a naive union-find (hang the second root under the first, no union
    # by size) one path of a million links, which a recursive find then walks a million calls deep.
    sets: UnionFind[int] = UnionFind()

    def build() -> list[list[int]]:
        for item in range(1_000_000):
            sets.union(item + 1, item)
        assert sets.find(0) == sets.find(1_000_000)
        return sets.groups()

    groups = _with_little_stack(build)

    assert len(groups) == 1 and len(groups[0]) == 1_000_001
    assert not sets.union(0, 1_000_000), "already one set"


def test_union_by_size_keeps_the_larger_root_and_paths_short() -> None:
    sets: UnionFind[str] = UnionFind(["a", "b", "c"])
    assert sets.union("a", "b") and sets.union("c", "a")
    root = sets.find("a")
    assert root in {"a", "b"}, "the single item joins the pair's root"
    assert sets.connected("b", "c") and len(sets) == 3 and "d" not in sets
    assert sorted(map(sorted, sets.groups())) == [["a", "b", "c"]]
    assert sets.find("d") == "d" and "d" in sets, "an unknown item is a set of its own"
