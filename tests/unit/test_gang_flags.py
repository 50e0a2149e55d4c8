"""The gang's per-iteration flags and the commit rule read from their sums."""

from __future__ import annotations

import numpy as np
import pytest

from pulsetrain.gang_flags import (
    CONNECTION_LOST,
    FLAG_COUNT,
    ROWS,
    STALL_COMMIT_SECONDS,
    SUBSCRIPTION_UNACKED_LIMIT,
    Flags,
    GangFlags,
    stall_seconds,
)


def flags(**given: float) -> Flags:
    values = dict(rows=0.0, idle=0.0, stop=0.0, checkpoint_due=0.0, export_due=0.0, connection_lost=0.0,
                  unacknowledged=0.0, stalled=0.0)
    return Flags(**{**values, **given})


def gang_of(*workers: Flags) -> GangFlags:
    return GangFlags.of(np.sum([w.vector() for w in workers], axis=0))


def test_the_vector_round_trips_through_the_sums_in_field_order() -> None:
    a, b = flags(rows=32, unacknowledged=100, stalled=1), flags(rows=5, stop=1, unacknowledged=7)
    gang = gang_of(a, b)
    assert (gang.rows, gang.stop, gang.unacknowledged, gang.stalled) == (37, 1, 107, 1)
    assert gang.idle == gang.checkpoint_due == gang.export_due == gang.connection_lost == 0


def test_one_workers_due_checkpoint_makes_the_gang_commit() -> None:
    assert gang_of(flags(checkpoint_due=1), flags()).commit_due(2, dirty=False)
    assert not gang_of(flags(), flags()).commit_due(2, dirty=True)


def test_the_subscriptions_unacknowledged_limit_makes_a_commit_due() -> None:
    half = SUBSCRIPTION_UNACKED_LIMIT / 2
    assert gang_of(flags(unacknowledged=half), flags(unacknowledged=half)).commit_due(2, dirty=True)
    assert not gang_of(flags(unacknowledged=half), flags(unacknowledged=half - 1)).commit_due(2, dirty=True)


@pytest.mark.parametrize(("stalled", "dirty", "due"), [
    ((1, 1), True, True),  # everyone waits, and the gang holds what the broker may be waiting for
    ((1, 0), True, False),  # one worker still receives: not a stall
    ((1, 1), False, False),  # nothing trained since the last commit: a commit would acknowledge nothing
])
def test_a_stalled_gang_commits_only_when_it_holds_uncommitted_messages(stalled: tuple[int, int], dirty: bool,
                                                                         due: bool) -> None:
    gang = gang_of(*(flags(stalled=s) for s in stalled))
    assert gang.stalled_with_uncommitted(2, dirty) is due
    assert gang.commit_due(2, dirty) is due


@pytest.mark.parametrize(("idle_timeout", "expected"), [
    (None, STALL_COMMIT_SECONDS), (0, STALL_COMMIT_SECONDS), (60, STALL_COMMIT_SECONDS), (3, 1.5), (4, 2.0)])
def test_a_stall_is_at_most_half_the_idle_timeout(idle_timeout: float | None, expected: float) -> None:
    assert stall_seconds(idle_timeout) == expected


def test_a_gang_with_rows_left_to_train_is_not_stalled() -> None:
    gang = gang_of(flags(stalled=1, rows=32), flags(stalled=1))  # one still trains from its buffer
    assert not gang.stalled_with_uncommitted(2, dirty=True) and not gang.commit_due(2, dirty=True)


@pytest.mark.parametrize(("rows", "lost", "trains"), [
    ((3, 0), (0, 0), True),  # one worker's rows are enough: the other pads
    ((0, 0), (0, 0), False),  # nothing to train: the step leaves the model alone
    ((3, 5), (0, 1), False),  # a consumer lost its connection: the gang rolls back instead
])
def test_the_gang_trains_when_it_has_rows_and_no_lost_connection(rows: tuple[int, int], lost: tuple[int, int],
                                                                 trains: bool) -> None:
    assert gang_of(*(flags(rows=r, connection_lost=c) for r, c in zip(rows, lost, strict=True))).trains is trains


def test_the_positions_the_step_reads_in_its_graph_are_those_of_the_vector() -> None:
    vector = flags(rows=7, connection_lost=1).vector()
    assert len(vector) == FLAG_COUNT
    assert (vector[ROWS], vector[CONNECTION_LOST]) == (7, 1) and vector.sum() == 8
