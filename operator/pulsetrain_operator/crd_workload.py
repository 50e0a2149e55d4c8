"""`spec.worker` and `spec.runPolicy` of the CRD: how the worker pods run, and when a pipeline gives up.

Why a module of its own: these are the Kubernetes-facing parts of the spec (pod settings as in a Pod,
restart and clean-up policy), read by the operator's builders and `lifecycle`, not by the worker's
configuration; `crd.py` puts them into `spec`. Built from `crd_schema.py`'s blocks and `defaults.py`.
"""

from __future__ import annotations

from pulsetrain_operator import defaults
from pulsetrain_operator.crd_schema import (
    DNS_SUBDOMAIN_PATTERN,
    Schema,
    _array,
    _bool,
    _choice,
    _int,
    _map,
    _object,
    _resources,
    _rule,
    _string,
)


def _toleration() -> Schema:
    return _object("One toleration, as in a Pod.", {
        "key": _string("The taint key; empty with operator `Exists` matches every taint."),
        "operator": _choice("`Equal` (default) or `Exists`.", ("Equal", "Exists")),
        "value": _string("The taint value to match (empty with `Exists`)."),
        "effect": _choice("The taint effect to match; empty matches all.", ("NoSchedule", "PreferNoSchedule",
                                                                             "NoExecute")),
        "tolerationSeconds": _int("How long a `NoExecute` taint is tolerated; default forever.", ge=0),
    })


def _env_var() -> Schema:
    return _object("One environment variable, as in a Pod.", {
        "name": _string("The variable's name.", minLength=1),
        "value": _string("The value; `$(VAR)` references are expanded as in a Pod."),
        "valueFrom": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                      "description": "Where the value comes from (secretKeyRef, configMapKeyRef, fieldRef, "
                                     "resourceFieldRef), as in a Pod."},
    }, required=["name"])


def worker_schema() -> Schema:
    """The schema of `spec.worker`."""
    return _object("The worker pods. Changes restart the gang gracefully from its last checkpoint.", {
        "image": _string("The worker image. Default: the operator's `PULSETRAIN_WORKER_IMAGE`.", minLength=1),
        "imagePullPolicy": _choice(f"When the image is pulled. Default `{defaults.IMAGE_PULL_POLICY}`.",
                                   defaults.IMAGE_PULL_POLICIES, defaults.IMAGE_PULL_POLICY),
        "command": _array("The worker container's command; the operator appends `--config <file> --termination-log "
                         "/dev/termination-log`, so a custom command must accept both.",
                          _string("One argument."), min_items=1, default=defaults.WORKER_COMMAND),
        "resources": _resources(),
        "nodeSelector": _map("Node labels every worker pod's node must have.",
                             _string("The label value the node must have.")),
        "tolerations": _array("Tolerations of every worker pod.", _toleration()),
        "affinity": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "description": "Affinity of every worker pod (nodeAffinity, podAffinity, podAntiAffinity), "
                                    "as in a Pod."},
        "env": _array("Extra environment variables of every worker container.", _env_var(), map_keys=["name"]),
        "serviceAccountName": _string("The service account the worker pods run as.",
                                      pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
        "imagePullSecrets": _array(
            "Secrets in the pipeline's namespace to pull the image with (worker and predictor pods), as in a Pod. "
            "Default: the operator's `PULSETRAIN_WORKER_IMAGE_PULL_SECRETS` (the chart's `workerImage.pullSecrets`).",
            _object("A kubernetes.io/dockerconfigjson Secret.", {
                "name": _string("The Secret's name.", pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
            }, required=["name"]), map_keys=["name"]),
        "port": _int(f"The collective (gRPC) port in `TF_CONFIG`. Default {defaults.COLLECTIVE_PORT}.",
                     ge=1, le=65535, default=defaults.COLLECTIVE_PORT),
        "metricsPort": _int(f"The port of `/metrics`, `/progress`, `/healthz` and `/readyz`. "
                            f"Default {defaults.METRICS_PORT}.", ge=1, le=65535, default=defaults.METRICS_PORT),
    }, default={}, rules=[
        _rule("!has(self.port) || !has(self.metricsPort) || self.port != self.metricsPort",
              "worker.metricsPort must differ from worker.port", field_path=".metricsPort"),
    ])


def run_policy_schema() -> Schema:
    """The schema of `spec.runPolicy`."""
    return _object("When the pipeline gives up, cleans up and pauses.", {
        "backoffLimit": _int(f"Gang restarts allowed after failures before the pipeline is Failed. "
                             f"Default {defaults.BACKOFF_LIMIT}.", ge=0, default=defaults.BACKOFF_LIMIT),
        "activeDeadlineSeconds": _int("The pipeline is Failed once it has run this long since `status.startTime` "
                                      "(as for a Job, the clock stops while suspended and starts again on resume). "
                                      "Default: no deadline.", ge=1),
        "ttlSecondsAfterFinished": _int("The pipeline is deleted this long after it Succeeded or Failed. "
                                        "Default: kept.", ge=0),
        "cleanPodPolicy": _choice(f"Which worker pods are deleted once the pipeline finished: `None` (keep all "
                                  f"pods and their logs), `Running` (only those still running) or `All`. "
                                  f"Default `{defaults.CLEAN_POD_POLICY}`.",
                                  defaults.CLEAN_POD_POLICIES, defaults.CLEAN_POD_POLICY),
        "suspend": _bool("True stops the gang gracefully (a last checkpoint is kept) and keeps it stopped; "
                         "false resumes it. Default false."),
        "pendingTimeoutSeconds": _int(f"A worker pod Pending this long fails the pipeline (no retry). "
                                      f"Default {defaults.PENDING_TIMEOUT_SECONDS}.",
                                      ge=1, default=defaults.PENDING_TIMEOUT_SECONDS),
        "terminationGracePeriodSeconds": _int(f"How long a stopping worker may take to checkpoint and exit. "
                                              f"Default {defaults.TERMINATION_GRACE_PERIOD_SECONDS}.",
                                              ge=0, default=defaults.TERMINATION_GRACE_PERIOD_SECONDS),
        "restartBackoffSeconds": _int(f"Wait before the first gang restart; it doubles with each restart, capped at "
                                      f"{defaults.RESTART_BACKOFF_CAP_SECONDS}. "
                                      f"Default {defaults.RESTART_BACKOFF_SECONDS}.",
                                      ge=1, le=defaults.RESTART_BACKOFF_CAP_SECONDS,
                                      default=defaults.RESTART_BACKOFF_SECONDS),
    }, default={})
