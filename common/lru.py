"""A dictionary that holds at most ``capacity`` entries and forgets the least recently used one first.

The server keeps per-source state (token buckets, amplification budgets) for sources it cannot
authenticate, and the replay guard (:mod:`trust.proofs`) a record per signing key, so a flood of new source
addresses or new keys must not grow them without bound: every such map is one of these. What forgetting an
entry means is the owner's to say (and to keep safe).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    """``entry(key, make)``: the entry for ``key`` (made by ``make()`` if absent), now the most recent."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.evicted = 0
        """How many entries were forgotten to make room (a sign of many sources, e.g. a spoofed flood)."""
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def entry(self, key: K, make: Callable[[], V]) -> V:
        """The entry for ``key``, made and stored if absent (forgetting the oldest when full); O(1)."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
            return value
        value = make()
        self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` for ``key``, now the most recent (forgetting the oldest when full); O(1)."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evicted += 1

    def items(self) -> Iterator[tuple[K, V]]:
        """Every entry, least recently used first."""
        return iter(self._entries.items())

    def peek(self, key: K) -> V | None:
        """The entry for ``key`` without making it recent, or ``None``."""
        return self._entries.get(key)
