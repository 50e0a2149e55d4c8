"""The ConfigMap `{name}-worker-config`: the rendered worker configuration every worker pod mounts.

Why this exists: the workers read their configuration from a file (`--config`), not from the spec; the
ConfigMap carries that file into the pods (mounted at `defaults.CONFIG_DIR`, key `defaults.CONFIG_KEY`).
The JSON is indented and key-sorted so that the same spec always gives the same bytes (no needless
updates) and `kubectl get cm -o yaml` stays readable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulsetrain_operator.builders.config import identity, worker_config
from pulsetrain_operator.defaults import CONFIG_KEY
from pulsetrain_operator.names import child_metadata, common_labels, config_map_name


def worker_config_map(tp: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap object for pipeline `tp`."""
    name, _ = identity(tp)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(tp, config_map_name(name), common_labels(name)),
        "data": {CONFIG_KEY: json.dumps(worker_config(tp), indent=2, sort_keys=True)},
    }
