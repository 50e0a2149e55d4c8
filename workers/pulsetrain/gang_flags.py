"""What each worker tells the gang every iteration, and the gang-wide decisions read from the sums.

Why this exists: a worker that decided alone to stop, commit or export would leave its peers waiting in
a collective for ever. So every iteration each worker contributes a few numbers (`Flags`), they are
all-reduced with SUM, and every worker reads the same `GangFlags` and takes the same decisions. The
rules live here, free of TensorFlow, so that they can be tested as plain functions.

Why a stalled gang commits: the broker holds some messages back until others are acknowledged. A
Key_Shared subscription keeps a key's messages from the consumer the key moved to (when a consumer
joins) until the messages of that key already sent to its previous consumer are acknowledged; and a
consumer or subscription over its unacknowledged limit gets nothing at all. The workers acknowledge
only at a commit, so without one the gang would wait for messages that wait for it: a bounded run
ended by its idle timeout with most of the stream untrained (seen in CI: 167 of 1,438 messages, Key_Shared,
the second consumer joining after the first had received 146). So when every worker has gone
`stall_seconds` without a message while the gang holds trained messages not yet committed, the gang
commits; its acknowledgements let the broker dispatch again.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np
import numpy.typing as npt

__all__ = ["CONNECTION_LOST", "FLAG_COUNT", "ROWS", "STALL_COMMIT_SECONDS", "SUBSCRIPTION_UNACKED_LIMIT", "Flags",
           "GangFlags", "stall_seconds"]

SUBSCRIPTION_UNACKED_LIMIT = 150_000  # of the broker's 200,000 per subscription, summed over the gang
STALL_COMMIT_SECONDS = 2.0


@dataclass(frozen=True)
class Flags:
    """One worker's contribution to an iteration (all-reduced with SUM into `GangFlags`)."""

    rows: float  # rows this worker trains on in this step
    idle: float  # 1: no message for idleTimeoutSeconds
    stop: float  # 1: a stop was requested of this worker
    checkpoint_due: float  # 1: this worker's time- or unacknowledged-based commit is due
    export_due: float  # 1: a continuous run's time-based export is due
    connection_lost: float  # 1: this worker's consumer lost its connection (the gang rolls back)
    unacknowledged: float  # this worker's unacknowledged messages (the subscription's, summed)
    stalled: float  # 1: no message for `stall_seconds`

    def vector(self) -> npt.NDArray[np.float32]:
        return np.array(astuple(self), np.float32)


FLAG_NAMES = tuple(f.name for f in fields(Flags))
FLAG_COUNT = len(FLAG_NAMES)
ROWS, CONNECTION_LOST = FLAG_NAMES.index("rows"), FLAG_NAMES.index("connection_lost")  # positions in the vector


@dataclass(frozen=True)
class GangFlags(Flags):
    """The sums over the gang (flags become counts of workers): the same on every worker, so every decision
    read from them is too."""

    @classmethod
    def of(cls, sums: npt.ArrayLike) -> GangFlags:
        return cls(*(float(x) for x in np.asarray(sums).ravel()))

    @property
    def trains(self) -> bool:
        """The iteration trains: the gang has rows and no consumer lost its connection (else the gang rolls
        back). `gang_step` decides the same inside its graph, from the positions ROWS and CONNECTION_LOST."""
        return self.rows > 0 and not self.connection_lost

    def stalled_with_uncommitted(self, num_workers: int, dirty: bool) -> bool:
        """Every worker waits for messages, none has rows left to train, and the gang holds trained ones it
        has not acknowledged."""
        return dirty and self.stalled >= num_workers and self.rows == 0

    def commit_due(self, num_workers: int, dirty: bool) -> bool:
        """A commit is due by some worker's clock or limit, by the subscription's unacknowledged limit, or
        because the gang stalled holding unacknowledged messages (see the module docstring)."""
        return (bool(self.checkpoint_due) or self.unacknowledged >= SUBSCRIPTION_UNACKED_LIMIT
                or self.stalled_with_uncommitted(num_workers, dirty))


def stall_seconds(idle_timeout_seconds: float | None) -> float:
    """How long every worker may go without a message, holding uncommitted ones, before the gang commits:
    STALL_COMMIT_SECONDS, but at most half a bounded run's idle timeout, so that what the commit releases
    arrives before the run would end idle."""
    if not idle_timeout_seconds:
        return STALL_COMMIT_SECONDS
    return min(STALL_COMMIT_SECONDS, idle_timeout_seconds / 2)
