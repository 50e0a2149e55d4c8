"""What the serving stage of one pipeline should look like: a pure decision, like `lifecycle` for training.

Why this exists: the predictors follow the trained model, not the gang. The rule is one line, and it
covers both modes: a pipeline with `spec.serving` gets its predictor Deployment once `status.model`
names a first exported version (a bounded pipeline exports when training has succeeded; a continuous
one at its first periodic export), and keeps it while `spec.serving` is there, whatever training does
next (a gang restart does not stop the answers). Removing `spec.serving` removes the predictors.
`status.serving` sums the running predictors' own progress documents, and when predictors are not ready, says
why from their pods (`predictor_trouble`) or, for one that runs but is not ready, from its own progress
document (`progress_trouble`): a crash-looping predictor (a pinned version that does not exist, a configuration
it refuses) or one that has lost the broker must not read as "starting" for ever. A `spec.serving` the
predictors' own parser refuses (`builders.predictor.predictor_refusal`) creates or rolls no pod: the status says
why, and predictors already running keep the configuration they started with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulsetrain.predict_progress import PredictorProgress
from pulsetrain_operator.builders.predictor import (
    CONFIG_HASH_ANNOTATION,
    predictor_config_map,
    predictor_deployment,
    predictor_refusal,
    replicas,
    serving_spec,
)
from pulsetrain_operator.names import COMPONENT_LABEL
from pulsetrain_operator.observed import STARTING_REASONS, last_words, pod_ready, unscheduled
from pulsetrain_operator.settings import Settings

TROUBLE_CHARS = 300
"""The most of a predictor's own message that goes into `status.serving.message`."""


@dataclass(frozen=True)
class ServingPlan:
    """Desired predictor objects (None: there should be none) and the `status.serving` to report."""

    deployment: dict[str, Any] | None
    config_map: dict[str, Any] | None
    update: bool
    """The Deployment is missing or differs from the desired one: write the ConfigMap, then the Deployment."""
    delete: bool
    """A Deployment exists that should not."""
    status: dict[str, Any] | None
    """`status.serving`; None removes it."""

    @property
    def active(self) -> bool:
        """Predictors run (or should): their figures are worth polling often."""
        return self.deployment is not None


def _differs(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    def shape(deployment: Mapping[str, Any]) -> tuple[Any, Any]:
        spec = deployment.get("spec") or {}
        annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        return spec.get("replicas"), annotations.get(CONFIG_HASH_ANNOTATION)

    return shape(existing) != shape(desired)


def predictor_trouble(pods: Sequence[Mapping[str, Any]]) -> str:
    """Why a predictor pod among `pods` (the pipeline's pods) is not ready, for a person: the scheduler's words if
    it could not place it, its container's waiting reason (not the usual start-up ones) and how its last run
    ended (exit code and the last line of its termination message, the log tail); empty when no pod has anything
    to say."""
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if (meta.get("labels") or {}).get(COMPONENT_LABEL) != "predictor" or pod_ready(pod):
            continue
        container: Mapping[str, Any] = next(iter(status.get("containerStatuses") or []), {})
        waiting = (container.get("state") or {}).get("waiting") or {}
        ended = (container.get("state") or {}).get("terminated") or (container.get("lastState") or {}).get(
            "terminated") or {}
        parts = [scheduling] if (scheduling := unscheduled(pod)) else []
        if waiting.get("reason") and waiting["reason"] not in STARTING_REASONS:
            parts.append(str(waiting["reason"]))
        if ended:
            said = last_words(str(ended.get("message") or "")) or str(ended.get("reason") or "")
            parts.append(f"exited with code {ended.get('exitCode')}" + (f": {said}" if said else ""))
        if parts:
            return f"pod {meta.get('name')}: {'; '.join(parts)}"
    return ""


def progress_trouble(progress: Sequence[PredictorProgress]) -> str:
    """What a running predictor that cannot answer says of itself (broker lost, or failed); empty if none does."""
    for doc in progress:
        if doc.state in ("source-unavailable", "failed"):
            return f"predictor {doc.replica}: {(doc.message or doc.state)[:TROUBLE_CHARS]}"
    return ""


def serving_status(desired_replicas: int, deployment: Mapping[str, Any] | None,
                   progress: Sequence[PredictorProgress], model_version: int | None,
                   trouble: str = "") -> dict[str, Any]:
    """`status.serving` from the Deployment's status, the running predictors' progress documents and what
    `predictor_trouble` found (else what `progress_trouble` finds)."""
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    served = [p.model_version for p in progress if p.model_version is not None]
    status: dict[str, Any] = {
        "replicas": desired_replicas,
        "readyReplicas": ready,
        "predictions": sum(p.predictions for p in progress),
        "predictionsPerSecond": round(sum(p.predictions_per_second for p in progress), 3),
        "deadLettered": sum(p.dead_lettered.total for p in progress),
    }
    if served:
        status["modelVersion"] = min(served)
    if model_version is None:
        status["message"] = "waiting for a first exported model version"
    elif desired_replicas == 0:
        status["message"] = "serving.replicas is 0"
    elif served:
        status["message"] = f"serving model version {min(served)} on {ready}/{desired_replicas} predictor(s)"
    else:
        status["message"] = f"starting predictors ({ready}/{desired_replicas} ready)"
    trouble = trouble or progress_trouble(progress)
    if trouble and model_version is not None and ready < desired_replicas:
        status["message"] += f"; {trouble}"
    return status


def plan_serving(tp: Mapping[str, Any], settings: Settings, model_version: int | None,
                 deployment: Mapping[str, Any] | None, progress: Sequence[PredictorProgress],
                 trouble: str = "") -> ServingPlan:
    """The plan for pipeline `tp`'s predictors, given the newest model version, their Deployment as it is
    (None: absent), the running predictors' progress documents and `predictor_trouble`'s words."""
    if serving_spec(tp) is None:
        return ServingPlan(deployment=None, config_map=None, update=False, delete=deployment is not None,
                           status=None)
    if model_version is None:
        return ServingPlan(deployment=None, config_map=None, update=False, delete=False,
                           status=serving_status(0, deployment, progress, None))
    refusal = predictor_refusal(tp)
    if refusal is not None:  # pods with it would exit 2: none is created or rolled, running ones keep theirs
        status = serving_status(replicas(tp), deployment, progress, model_version)
        status["message"] = f"the predictors would refuse this spec: {refusal}" + (
            "; the running predictors keep the configuration they started with" if deployment is not None else "")
        return ServingPlan(deployment=None, config_map=None, update=False, delete=False, status=status)
    desired = predictor_deployment(tp, settings)
    return ServingPlan(deployment=desired, config_map=predictor_config_map(tp),
                       update=deployment is None or _differs(deployment, desired), delete=False,
                       status=serving_status(replicas(tp), deployment, progress, model_version, trouble))
