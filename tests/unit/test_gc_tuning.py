"""`freeze_long_lived`: what is alive at start-up leaves the collector's sight; what comes later is still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pulsetrain.gc_tuning import freeze_long_lived


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as before


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_objects_alive_at_the_freeze_are_frozen(unfrozen: None) -> None:
    survivor = Node()
    frozen = freeze_long_lived()
    assert frozen == gc.get_freeze_count() > 0
    assert all(o is not survivor for o in gc.get_objects())  # what collections walk: the three generations


def test_a_cycle_made_after_the_freeze_is_still_collected(unfrozen: None) -> None:
    freeze_long_lived()
    ref = cycle()
    assert ref() is not None  # only a collection can free a reference cycle
    gc.collect()
    assert ref() is None


def test_a_cycle_dropped_before_the_freeze_is_collected_first_not_frozen(unfrozen: None) -> None:
    ref = cycle()
    freeze_long_lived()
    assert ref() is None
