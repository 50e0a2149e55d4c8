"""What a pipeline needs next: a pure function from what exists to a plan and the new status.

Why this exists: the hard part of the operator is deciding, from a spec, the last status and the pods
that exist right now, what to do: start an attempt, restart the gang, stop it gracefully for a spec
change or a suspend, declare success or failure, clean up. Keeping that a pure function
(`decide(Observation) -> Plan`) makes every rule unit-testable without a cluster, makes the operator
level-triggered (it may run any number of times, after any restart, and reach the same answer), and
keeps the Kopf handlers thin.

State lives only on the resource: `status.attempt` (pods carry it as a label), `status.restarts`,
`status.attemptSpecHash` (what the running attempt was built from), `status.stopReason` (why the
current attempt is being stopped) and `status.nextAttemptAfter` (end of the restart back-off).

The rules, in order:
1. A finished pipeline (Succeeded/Failed) only gets cleaned up (`cleanPodPolicy`, then
   `ttlSecondsAfterFinished`).
2. Pods of older attempts are deleted; no new attempt starts until they are gone (a gang must never
   overlap its predecessor: both would train from the same checkpoint). The same holds for the pods of a
   deleted pipeline of the same name that are still stopping: an attempt that finds them starts over.
3. Past `activeDeadlineSeconds` → Failed. `suspend` → stop the gang gracefully, phase Suspended.
4. While an attempt is being stopped, wait until its pods are gone and the back-off has passed, then
   start the next attempt from the last checkpoint.
5. In a running attempt: a failed worker → gang restart (or Failed when the exit code is permanent or
   `backoffLimit` is used up); a worker pod someone else is deleting (a drain, an eviction) → the same
   graceful stop as for a spec change, not a failure (its worker's SIGTERM stops the gang at a checkpoint);
   all workers ended with the chief reporting `finished` → Succeeded; the spec changed (e.g.
   `training.workers`) → graceful stop and a new attempt; a pod not starting → said at once, and Failed
   once Pending past `pendingTimeoutSeconds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulsetrain.progress_doc import parse_rfc3339, rfc3339
from pulsetrain_operator import defaults
from pulsetrain_operator.failures import describe_exit, is_permanent, restart_backoff
from pulsetrain_operator.observed import WorkerPod
from pulsetrain_operator.plan import Event, Observation, Plan
from pulsetrain_operator.status import (
    FINISHED_PHASES,
    model_status,
    progress_status,
    set_condition,
    worker_counts,
)

FAILURE_GRACE_SECONDS = 5
"""Grace for the survivors of a failed gang: they cannot checkpoint without the lost peer anyway."""
STALE_PENDING = ("WorkersNotStarting", "FailedCreate")
"""Pending reasons that stop being true on their own (the pod starts, the create goes through), so a later
reconcile that finds the workers starting normally replaces them."""


class _Decision:
    """One run of the rules over an observation, accumulating the plan."""

    def __init__(self, obs: Observation) -> None:
        self.obs = obs
        self.spec = obs.spec
        self.run_policy: Mapping[str, Any] = obs.spec.get("runPolicy") or {}
        self.training: Mapping[str, Any] = obs.spec.get("training") or {}
        self.desired = int(self.training.get("workers", defaults.WORKERS))
        status = dict(obs.status)
        status["observedGeneration"] = obs.generation
        status.setdefault("attempt", 0)
        status.setdefault("restarts", 0)
        status.setdefault("conditions", [])
        status["model"] = model_status(obs.export_dir, obs.progress, status.get("model"))
        self.plan = Plan(status=status)
        self.attempt = int(status["attempt"])
        # A deleted predecessor's pods (being stopped by the garbage collector) are none of this pipeline's
        # business, but hold the names its pods need: they are left alone, and creating waits until they are gone.
        self.foreign = [p for p in obs.pods if not p.belongs_to(obs.uid)]
        own = [p for p in obs.pods if p not in self.foreign]
        self.current = [p for p in own if p.attempt == self.attempt]
        self.stale = [p for p in own if p.attempt != self.attempt]

    # -- helpers ---------------------------------------------------------------------------
    @property
    def status(self) -> dict[str, Any]:
        return self.plan.status

    def condition(self, type_: str, value: bool, reason: str, message: str) -> None:
        self.status["conditions"] = set_condition(self.status["conditions"], type_, value, reason, message,
                                                  self.obs.now)

    def phase(self, phase: str, reason: str, message: str, warning: bool = False) -> None:
        """Move to `phase`; an Event and the `reason`/`message` fields record every change."""
        if self.status.get("phase") != phase or self.status.get("reason") != reason:
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.status.update(phase=phase, reason=reason, message=message)

    def stop(self, pods: list[WorkerPod], grace: int | None = None) -> None:
        for pod in pods:
            if pod.alive and not pod.deleting:
                self.plan.delete.append((pod.name, grace))

    def counts(self) -> None:
        counts = worker_counts(self.desired if self.attempt else 0, self.current)
        self.status["workers"] = counts
        self.status["workersReady"] = f"{counts['ready']}/{self.desired}"

    def finish(self, phase: str, reason: str, message: str) -> None:
        self.phase(phase, reason, message, warning=phase == "Failed")
        self.status["completionTime"] = rfc3339(self.obs.now)
        self.status.pop("stopReason", None)
        self.status.pop("nextAttemptAfter", None)
        self.condition("Running", False, reason, message)
        self.condition("Restarting", False, reason, "")
        self.condition(phase, True, reason, message)

    # -- the rules -------------------------------------------------------------------------
    def run(self) -> Plan:
        self.counts()
        # the live document while the chief runs; once it has ended, the one it left as its termination message
        chief_outcome = next((p.outcome for p in self.current if p.index == 0 and p.outcome is not None), None)
        if (latest := self.obs.progress or chief_outcome) is not None:
            self.status["progress"] = progress_status(latest)
        if self.status.get("phase") in FINISHED_PHASES:
            self.spec_change_ignored()
            self.cleanup()
            return self.plan
        self.stop([p for p in self.stale if not p.deleting])
        if self.deadline_passed() or self.suspended():
            return self.plan
        if self.status.get("stopReason") or self.attempt == 0:
            self.next_attempt()
        else:
            self.watch_attempt()
        self.counts()
        return self.plan

    def spec_change_ignored(self) -> None:
        """A finished pipeline trains nothing again: say so, once per edit of what shapes the workers, rather than
        let `observedGeneration` alone suggest the edit took effect (edits of `serving` and `runPolicy` do)."""
        seen = self.obs.status.get("observedGeneration")
        if (seen is not None and int(seen) != self.obs.generation
                and self.status.get("attemptSpecHash") != self.obs.desired_hash):
            self.plan.events.append(Event(
                "Warning", "SpecChangeIgnored",
                f"the pipeline has finished ({self.status['phase']}); a changed spec starts nothing: delete and "
                "re-create it to train again (it resumes from its last checkpoint)"))

    def spec_refused(self) -> None:
        """An edit the workers would refuse, made while a gang runs: say so once per edit, and keep the gang."""
        if self.obs.status.get("observedGeneration") != self.obs.generation:
            self.plan.events.append(Event(
                "Warning", "SpecRefused", f"the workers would refuse the changed spec ({self.obs.config_refusal}); "
                "the running workers go on with the spec they started with; fix or revert the change"))

    def cleanup(self) -> None:
        policy = self.run_policy.get("cleanPodPolicy", defaults.CLEAN_POD_POLICY)
        if policy == "All":
            self.plan.delete += [(p.name, None) for p in self.obs.pods if not p.deleting]
        elif policy == "Running" or self.status.get("phase") == "Failed":  # a failed gang's stop, again if refused
            self.stop(self.obs.pods)
        ttl = self.run_policy.get("ttlSecondsAfterFinished")
        completed = self.status.get("completionTime")
        if ttl is not None and completed:
            remaining = parse_rfc3339(completed) + int(ttl) - self.obs.now
            if remaining <= 0:
                self.plan.delete_pipeline = True
            else:
                self.plan.requeue(remaining)

    def deadline_passed(self) -> bool:
        """Past `activeDeadlineSeconds` since `startTime` → Failed. As for a Job, the clock does not run while
        the pipeline is suspended, and starts again when it resumes (see `suspended`)."""
        deadline = self.run_policy.get("activeDeadlineSeconds")
        started = self.status.get("startTime")
        if (deadline is None or not started or self.run_policy.get("suspend", False)
                or self.status.get("phase") == "Suspended"):  # suspended, or resuming now: no clock running
            return False
        remaining = parse_rfc3339(started) + int(deadline) - self.obs.now
        if remaining > 0:
            self.plan.requeue(remaining)
            return False
        self.stop(self.obs.pods)
        self.finish("Failed", "DeadlineExceeded",
                    f"the pipeline ran longer than runPolicy.activeDeadlineSeconds ({deadline} s)")
        return True

    def suspended(self) -> bool:
        if not self.run_policy.get("suspend", False):
            if self.status.get("phase") == "Suspended":
                self.condition("Suspended", False, "Resumed", "runPolicy.suspend is false")
                self.status["stopReason"] = "Resumed"
                self.status.pop("startTime", None)  # the next attempt sets it: the deadline counts from the resume
            return False
        alive = [p for p in self.obs.pods if p.alive]
        self.stop(alive)
        message = (f"stopping {len(alive)} worker(s) gracefully; they checkpoint before exiting" if alive
                   else "suspended; set runPolicy.suspend to false to resume from the last checkpoint")
        self.phase("Suspended", "Suspended", message)
        self.condition("Suspended", True, "Suspended", message)
        self.condition("Running", False, "Suspended", message)
        self.status["stopReason"] = "Suspended"
        self.status.pop("nextAttemptAfter", None)
        return True

    def next_attempt(self) -> None:
        """Start the next attempt once the previous one's pods are gone and the back-off has passed."""
        if self.obs.pods:  # ended pods too: the next attempt reuses their names
            self.plan.delete += [(p.name, None if p.alive else 0) for p in self.obs.pods if not p.deleting]
            return
        after = self.status.get("nextAttemptAfter")
        if after and parse_rfc3339(after) > self.obs.now:
            self.plan.requeue(parse_rfc3339(after) - self.obs.now)
            return
        if self.obs.config_refusal is not None:  # its pods would exit 2: say why now, and start none
            self.finish("Failed", "InvalidSpec", f"the workers would refuse this pipeline: {self.obs.config_refusal}; "
                        "delete it and create it again with that fixed")
            return
        first = self.attempt == 0
        self.attempt += 1
        self.current = []
        self.status.update(attempt=self.attempt, attemptSpecHash=self.obs.desired_hash)
        self.status.pop("stopReason", None)
        self.status.pop("nextAttemptAfter", None)
        self.status.setdefault("startTime", rfc3339(self.obs.now))
        self.plan.create = list(range(self.desired))
        if first:
            message = f"created {self.desired} worker pod(s)"
            self.condition("Created", True, "Created", message)
            self.phase("Pending", "Created", message)
        else:
            message = f"attempt {self.attempt}: {self.desired} worker pod(s) resume from the last checkpoint"
            self.condition("Restarting", False, "AttemptStarted", message)
            self.phase("Pending", "AttemptStarted", message)

    def restart(self, stop_reason: str, message: str, failure: bool) -> None:
        """Stop the current attempt; the next one starts when its pods are gone (after back-off if failed)."""
        self.status["stopReason"] = stop_reason
        if failure:
            base = float(self.run_policy.get("restartBackoffSeconds", defaults.RESTART_BACKOFF_SECONDS))
            delay = restart_backoff(base, int(self.status["restarts"]))
            self.status["restarts"] = int(self.status["restarts"]) + 1
            self.status["nextAttemptAfter"] = rfc3339(self.obs.now + delay)
            message = f"{message}; restart {self.status['restarts']} in {delay:.0f} s"
            self.stop(self.current, FAILURE_GRACE_SECONDS)
        else:
            self.stop(self.current)
        self.phase("Restarting", stop_reason, message, warning=failure)
        self.condition("Restarting", True, stop_reason, message)
        self.condition("Running", False, stop_reason, message)

    def watch_attempt(self) -> None:
        if self.foreign:  # an attempt created while a predecessor's gang was still stopping: start it over after
            names = ", ".join(sorted(p.name for p in self.foreign))
            self.restart("PredecessorStopping", f"pod(s) {names} of a deleted pipeline of the same name are still "
                         "stopping (they write to the same checkpoints); starting again once they are gone",
                         failure=False)
            return
        present = {p.index for p in self.current}
        missing = [i for i in range(self.desired) if i not in present]
        started = any(p.phase != "Pending" for p in self.current)
        creating = self.status.get("reason") == "FailedCreate"  # the attempt's pods are not all created yet
        if self.failed_worker():
            return
        # a pod being deleted while no stop of ours is under way (we set stopReason when we delete one); after a
        # spec change the restart below says so instead
        disrupted = sorted(p.name for p in self.current if p.deleting)
        if disrupted and self.status.get("attemptSpecHash") == self.obs.desired_hash:
            self.restart("WorkerDisrupted", f"worker pod(s) {', '.join(disrupted)} are being deleted (a node drain, an "
                         "eviction or kubectl delete): the gang stops gracefully and continues from its last "
                         "checkpoint", failure=False)
            return
        if missing and started and not creating and self.status.get("attemptSpecHash") == self.obs.desired_hash:
            self.restart("WorkerLost", f"worker pod(s) {missing} disappeared", failure=True)
            return
        if missing and (creating or not started):
            self.plan.create = [i for i in missing if i < self.desired]
        if self.status.get("attemptSpecHash") != self.obs.desired_hash and self.obs.config_refusal is not None:
            self.spec_refused()  # a restart would start nothing: the running gang goes on with the spec it has
        elif self.status.get("attemptSpecHash") != self.obs.desired_hash:
            workers = len(present)
            reason = "Rescaling" if workers != self.desired else "SpecChanged"
            self.restart(reason, f"the spec changed ({workers} → {self.desired} workers)" if reason == "Rescaling"
                         else "the spec changed; restarting the workers gracefully from the last checkpoint",
                         failure=False)
            return
        if self.current and all(p.phase == "Succeeded" for p in self.current) and not missing:
            self.ended()
            return
        if not self.pending_timeout():
            self.running_or_pending()

    def failed_worker(self) -> bool:
        failed = sorted((p for p in self.current if p.phase == "Failed"), key=lambda p: p.index)
        if not failed:
            return False
        first = failed[0]
        code = first.exit_code if first.exit_code is not None else 1
        what = f"worker {first.index} ({first.name}) failed with {describe_exit(code)}"
        if first.reason:
            what += f": {first.reason}"
        limit = int(self.run_policy.get("backoffLimit", defaults.BACKOFF_LIMIT))
        if is_permanent(code):
            self.stop(self.current, FAILURE_GRACE_SECONDS)
            self.finish("Failed", "PermanentError", what)
        elif int(self.status["restarts"]) >= limit:
            self.stop(self.current, FAILURE_GRACE_SECONDS)
            self.finish("Failed", "BackoffLimitExceeded", f"{what}; runPolicy.backoffLimit ({limit}) reached")
        else:
            self.restart("WorkerFailed", what, failure=True)
        return True

    def ended(self) -> None:
        chief = next((p for p in self.current if p.index == 0), None)
        outcome = chief.outcome if chief else None
        if outcome is not None:
            self.status["progress"] = progress_status(outcome)
            self.status["model"] = model_status(self.obs.export_dir, outcome, self.status.get("model"))
        state = outcome.state if outcome is not None else None
        if state == "finished" or (state is None and self.training.get("mode", defaults.MODE) == "bounded"):
            version = self.status["model"].get("version")
            where = f"; model version {version} in {self.obs.export_dir}" if version is not None else ""
            self.finish("Succeeded", "TrainingFinished", f"training finished at step "
                        f"{self.status.get('progress', {}).get('step', '?')}{where}")
        else:
            self.restart("WorkersStopped", "every worker stopped without finishing (state "
                         f"{state or 'unknown'}); continuing from the last checkpoint", failure=False)

    def pending_timeout(self) -> bool:
        limit = int(self.run_policy.get("pendingTimeoutSeconds", defaults.PENDING_TIMEOUT_SECONDS))
        stuck = [p for p in self.current if p.phase == "Pending" and not p.deleting]
        if not stuck:
            return False
        oldest = min(stuck, key=lambda p: p.created_at)
        waited = self.obs.now - oldest.created_at
        if waited < limit:
            self.plan.requeue(limit - waited)
            return False
        self.stop(self.current, FAILURE_GRACE_SECONDS)
        detail = f": {oldest.reason}" if oldest.reason else ""
        self.finish("Failed", "PodPendingTimeout", f"pod {oldest.name} was Pending for more than "
                    f"runPolicy.pendingTimeoutSeconds ({limit} s){detail}")
        return True

    def running_or_pending(self) -> None:
        """Running once every worker runs; until then Pending, saying why when a pod is not starting (the
        scheduler cannot place it, its image cannot be pulled...) rather than only at `pendingTimeoutSeconds`."""
        running = sum(p.phase == "Running" for p in self.current)
        stuck = next((p for p in sorted(self.current, key=lambda p: p.index) if p.not_starting), None)
        if running == self.desired:
            message = f"{running} worker(s) running (attempt {self.attempt})"
            self.condition("Running", True, "WorkersRunning", message)
            self.condition("Restarting", False, "WorkersRunning", "")
            self.phase("Running", "WorkersRunning", message)
        elif stuck is not None:
            self.phase("Pending", "WorkersNotStarting", f"{running}/{self.desired} worker(s) running; pod "
                       f"{stuck.name} is not starting: {stuck.reason}", warning=True)
        elif self.status.get("phase") not in ("Pending", "Running") or self.status.get("reason") in STALE_PENDING:
            self.phase("Pending", "WorkersStarting", f"{running}/{self.desired} worker(s) running")


REFUSED_RETRY_SECONDS = 30.0
"""How soon a child write the API server refused is tried again (a quota may free up, a policy be fixed)."""


def refused(plan: Plan, before: Mapping[str, Any], reason: str, why: str) -> Plan:
    """`plan` once the API server refused one of its child writes (`reason` and `why` from `kube.Refused`; `before`
    is the status as read). The decided status stands, an attempt being created included, but its `reason` and
    `message` say what was refused, with a Warning event for each new cause, and the next try comes soon: a
    `FailedCreate` attempt's missing pods are created by the next reconcile, not counted lost (`watch_attempt`),
    and its creates that went through are not made again (the API server checks a quota before it finds that a
    pod exists already).
    A pipeline this plan finishes keeps the reason and message of its end (the refusal is its event; a Failed
    pipeline's stop is tried again by `cleanup`). A refusal seen already posts nothing: the plan's own events
    would repeat the same transition, back from the refusal, at every try."""
    status = dict(plan.status)
    if status.get("phase") in FINISHED_PHASES:
        repeated = before.get("phase") in FINISHED_PHASES  # reported when it finished
    else:
        repeated = before.get("reason") == reason and before.get("message") == why
        status.update(reason=reason, message=why)
    events = [] if repeated else [e for e in plan.events if e.reason != "WorkersStarting"]
    if not repeated:
        events.append(Event("Warning", reason, why))
    retried = Plan(status=status, events=events, requeue_after=plan.requeue_after,
                   delete_pipeline=plan.delete_pipeline)
    retried.requeue(REFUSED_RETRY_SECONDS)
    return retried


def decide(obs: Observation) -> Plan:
    """The plan and new status for one pipeline, from what exists now. Pure: no I/O, no clock."""
    return _Decision(obs).run()
