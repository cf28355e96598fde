"""Disjoint sets, for turning confirmed duplicate pairs into groups.

Iterative throughout (no recursion, so a group of any size is fine): `find` halves paths as it walks them and
`union` hangs the smaller set under the larger, so any sequence of m operations on n items costs O(m alpha(n))
(alpha: the inverse Ackermann function, below 5 for any n) — a chain of a million unions is as cheap as a million
unrelated ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class UnionFind(Generic[T]):
    def __init__(self, items: Iterable[T] = ()) -> None:
        self._parent: dict[T, T] = {}
        self._size: dict[T, int] = {}
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return len(self._parent)

    def __contains__(self, item: object) -> bool:
        return item in self._parent

    def add(self, item: T) -> None:
        if item not in self._parent:
            self._parent[item] = item
            self._size[item] = 1

    def find(self, item: T) -> T:
        """The representative of the item's set (the item joins as a set of its own if it is new)."""
        parent = self._parent
        if item not in parent:
            self.add(item)
            return item
        while True:
            up = parent[item]
            if up == item:
                return item
            grand = parent[up]
            if grand == up:
                return up
            parent[item] = grand  # path halving: every other node on the path now skips a level
            item = grand

    def union(self, a: T, b: T) -> bool:
        """Joins the two items' sets; False if they were one set already."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        if self._size[root_a] < self._size[root_b]:
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a
        self._size[root_a] += self._size.pop(root_b)
        return True

    def connected(self, a: T, b: T) -> bool:
        return self.find(a) == self.find(b)

    def groups(self) -> list[list[T]]:
        """Every set, its items in the order they were first added."""
        by_root: dict[T, list[T]] = {}
        for item in self._parent:
            by_root.setdefault(self.find(item), []).append(item)
        return list(by_root.values())
