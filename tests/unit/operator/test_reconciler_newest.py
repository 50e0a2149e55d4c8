"""`reconciler.newest`: which copy of a pipeline a reconcile may trust without reading it back."""

from __future__ import annotations

from typing import Any

from pulsetrain_operator.reconciler import newest


def copy(rv: Any) -> dict[str, Any]:
    return {"metadata": {"name": "digits", "resourceVersion": rv}}


def test_the_higher_resource_version_wins_whichever_arrives_last() -> None:
    old, new = copy("41"), copy("1207")  # numeric order, not string order ("41" > "1207" as strings)
    assert newest(old, new) is new
    assert newest(new, old) is new  # a watch event older than our own status patch's answer is ignored


def test_an_equal_version_takes_the_candidate() -> None:
    known, candidate = copy("7"), copy("7")
    assert newest(known, candidate) is candidate


def test_nothing_known_takes_the_candidate_and_no_candidate_keeps_what_is_known() -> None:
    known = copy("3")
    assert newest(None, known) is known
    assert newest(known, None) is known
    assert newest(None, None) is None


def test_versions_that_are_not_integers_turn_the_shortcut_off() -> None:
    assert newest(copy("3"), copy("opaque-token")) is None
    assert newest(copy(None), copy("3")) is None
    assert newest({"metadata": {}}, copy("3")) is None
