"""Default values of the `TrainingPipeline` spec, in one place.

Why this exists: the CRD (`crd.py`) publishes these as schema `default`s, so the API server fills them
in; the builders read the same constants when a field is absent (an object created before a default
existed, or a spec handed to `pulsetrain run`), so the two can never disagree.
"""

from __future__ import annotations

from typing import Final

# source.pulsar
SUBSCRIPTION: Final = "pulsetrain"
SUBSCRIPTION_TYPE: Final = "Shared"
SUBSCRIPTION_TYPES: Final = ("Shared", "KeyShared")
INITIAL_POSITION: Final = "Earliest"
INITIAL_POSITIONS: Final = ("Earliest", "Latest")
TOKEN_KEY: Final = "token"
CA_KEY: Final = "ca.crt"

# training
WORKERS: Final = 2
MAX_WORKERS: Final = 64
MODE: Final = "bounded"
MODES: Final = ("bounded", "continuous")

# storage
STORAGE_PATH: Final = "/var/lib/pulsetrain"

# worker
WORKER_COMMAND: Final = ("python", "-m", "pulsetrain.worker")
COLLECTIVE_PORT: Final = 2222
METRICS_PORT: Final = 9100
IMAGE_PULL_POLICY: Final = "IfNotPresent"
IMAGE_PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")

# serving
SERVING_REPLICAS: Final = 1
MAX_SERVING_REPLICAS: Final = 64
PREDICTOR_COMMAND: Final = ("python", "-m", "pulsetrain.predictor")
PREDICTOR_DRAIN_SECONDS: Final = 30
"""After SIGTERM, how long a predictor waits for its last answers' confirmations (`pulsetrain.predictor`)."""
PREDICTOR_TERMINATION_GRACE_PERIOD_SECONDS: Final = PREDICTOR_DRAIN_SECONDS + 30
"""The predictor pods' `terminationGracePeriodSeconds`: the drain plus time to finish the batch in hand and close
the producers, so the kubelet's SIGKILL never cuts a drain short (that would answer inputs twice)."""

# runPolicy
BACKOFF_LIMIT: Final = 3
CLEAN_POD_POLICY: Final = "Running"
CLEAN_POD_POLICIES: Final = ("None", "Running", "All")
PENDING_TIMEOUT_SECONDS: Final = 600
TERMINATION_GRACE_PERIOD_SECONDS: Final = 60
RESTART_BACKOFF_SECONDS: Final = 10
RESTART_BACKOFF_CAP_SECONDS: Final = 300

# paths inside a worker pod
CONFIG_DIR: Final = "/etc/pulsetrain"
CONFIG_KEY: Final = "worker.json"
PREDICTOR_CONFIG_KEY: Final = "predictor.json"
SECRETS_DIR: Final = "/var/run/secrets/pulsetrain"
TERMINATION_LOG: Final = "/dev/termination-log"
