"""The schema of a `TrainingPipeline`'s `status`: what the operator reports and `kubectl get tp` shows.

Why this exists: the status is written only by the operator (through the status subresource), but the
API server prunes and checks it against this schema, so every field the operator writes must be declared
here, with the type it writes. Kept apart from `crd.py` so that the spec schema stays readable; the
printer columns in `crd.py` point at fields declared here (`workersReady`, `progress.step`...).
"""

from __future__ import annotations

from typing import Final

from pulsetrain.progress_doc import STATES
from pulsetrain_operator.crd_schema import (
    Schema,
    _array,
    _choice,
    _int,
    _map,
    _number,
    _object,
    _string,
)
from pulsetrain_operator.status import CONDITION_TYPES, PHASES

"""Every value of `status.phase`."""
CONDITION_STATUSES: Final = ("True", "False", "Unknown")
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def _time(description: str) -> Schema:
    return _string(description, format="date-time")


def _count(description: str) -> Schema:
    return _int(description, ge=0)


def _conditions() -> Schema:
    condition = _object("One aspect of the pipeline's state, as in every Kubernetes object.", {
        "type": _string("The condition's type: " + ", ".join(f"`{t}`" for t in CONDITION_TYPES) + ".",
                        minLength=1, maxLength=316),
        "status": _choice("Whether the condition holds.", CONDITION_STATUSES),
        "reason": _string("Why, in one CamelCase word.", pattern=CONDITION_REASON_PATTERN, maxLength=1024),
        "message": _string("Why, for a person."),
        "lastTransitionTime": _time("When `status` last changed."),
        "observedGeneration": _count("The `metadata.generation` the condition was computed from."),
    }, required=["type", "status"])
    return _array("The pipeline's conditions, one per type.", condition, map_keys=["type"])


def _workers() -> Schema:
    return _object("The current attempt's worker pods, counted by state.", {
        "desired": _count("Worker pods the gang should have (`spec.training.workers`)."),
        "ready": _count("Worker pods that are running and ready."),
        "running": _count("Worker pods in phase Running."),
        "succeeded": _count("Worker pods that exited successfully."),
        "failed": _count("Worker pods that failed."),
    })


def _progress() -> Schema:
    return _object("Training progress, copied from the chief worker's `/progress` document.", {
        "step": _count("Training steps done over the whole life of the pipeline."),
        "samples": _count("Real samples trained (padding left out) over the whole life of the pipeline."),
        "messagesAcknowledged": _count("Messages acknowledged to Pulsar (covered by a durable checkpoint)."),
        "deadLettered": _count("Messages sent to the dead-letter topic."),
        "loss": _number("The latest training loss."),
        "metrics": _map("The latest training metrics, by name.", _number("A metric's latest value.")),
        "samplesPerSecond": _number("Recent training throughput, in samples per second.", ge=0),
        "lastCheckpointStep": _count("The step the newest durable checkpoint holds."),
        "lastCheckpointTime": _time("When the newest durable checkpoint was written."),
        "state": _string(f"The chief worker's state: one of {', '.join(STATES)}."),
        "message": _string("The chief worker's own message (why the source is unavailable, why it failed...)."),
    })


def _serving() -> Schema:
    return _object("The predictors (`spec.serving`): their Deployment's pods, and what they answered, summed over "
                   "the running ones' `/progress` documents.", {
        "replicas": _count("Predictor pods wanted (`spec.serving.replicas`); 0 until a first model version exists."),
        "readyReplicas": _count("Predictor pods that are ready."),
        "modelVersion": _count("The model version the predictors serve (the lowest, while a new one rolls in)."),
        "predictions": _count("Inputs answered by the running predictors since they (last) started."),
        "predictionsPerSecond": _number("Recent answers per second, over the running predictors.", ge=0),
        "deadLettered": _count("Inputs sent to the serving dead-letter topic by the running predictors since "
                               "they (last) started."),
        "message": _string("What the predictors are doing, for a person (waiting for a model, serving...), and "
                           "why one is not ready."),
    })


def status_schema() -> Schema:
    """The schema of `status`."""
    return _object("The pipeline's observed state, written by the operator only.", {
        "phase": _choice(f"Where the pipeline is in its life: {', '.join(PHASES)}.", PHASES),
        "conditions": _conditions(),
        "observedGeneration": _count("The `metadata.generation` this status was computed from."),
        "workers": _workers(),
        "workersReady": _string("Ready worker pods / desired worker pods, such as `2/2` (the READY column)."),
        "attempt": _count("The gang's attempt: 1 for the first gang, one more each time the gang is restarted."),
        "restarts": _count("Gang restarts so far; the pipeline fails once failures pass "
                           "`spec.runPolicy.backoffLimit`."),
        "progress": _progress(),
        "model": _object("The newest exported model.", {
            "exportPath": _string("The export directory, as the workers see it: version N is the SavedModel in "
                                  "`{exportPath}/{N}`."),
            "version": _count("The newest exported version (the SavedModel directory's name)."),
        }),
        "startTime": _time("When the operator first started the pipeline's workers, or when it last resumed "
                           "from `runPolicy.suspend`: `runPolicy.activeDeadlineSeconds` counts from it, as for a Job."),
        "completionTime": _time("When the pipeline Succeeded or Failed."),
        "reason": _string("Why the pipeline is in its phase, in one CamelCase word."),
        "message": _string("Why the pipeline is in its phase, for a person."),
        "attemptSpecHash": _string("Hash of the spec the current attempt's pods were built from; a different "
                                   "hash means the spec changed and the gang restarts gracefully."),
        "stopReason": _string("Why the current attempt is being stopped (WorkerFailed, Rescaling, SpecChanged, "
                              "Suspended, Resumed, WorkersStopped, WorkerLost); absent while it runs."),
        "nextAttemptAfter": _time("End of the restart back-off: the next attempt starts no earlier."),
        "serving": _serving(),
    })
