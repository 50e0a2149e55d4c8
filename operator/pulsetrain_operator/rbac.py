"""The operator's RBAC rules, the one source for the Helm chart and (through it) the plain manifests.

Why this exists: least privilege has to be written down once. The operator reads pipelines (and
deletes them after `ttlSecondsAfterFinished`), patches their status, runs the workers' pods, Services
and ConfigMaps and the predictors' Deployment, and posts Events: exactly the calls in `kube.py`, which
tests/unit/operator/test_rbac.py checks; Kopf itself watches pipelines and pods, and lists CRDs and
namespaces to discover what to watch. Workers
and predictors get no API access at all (their pods do not even mount a token), so no per-pipeline
Role is created. `make render` writes RULES and
DISCOVERY_RULES into the chart (`charts/pulsetrain/templates/_rbac_rules.tpl`), and `manifests/rbac/` is
rendered from the chart.
"""

from __future__ import annotations

from typing import Any

OPERATOR_NAME = "pulsetrain-operator"

RULES: list[dict[str, Any]] = [
    {"apiGroups": ["pulsetrain.dev"], "resources": ["trainingpipelines"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": ["pulsetrain.dev"], "resources": ["trainingpipelines/status"], "verbs": ["patch"]},
    # every child's ownerReference sets blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
    # admission plugin (on by default in OpenShift) allows only to who may update the owner's finalizers
    {"apiGroups": ["pulsetrain.dev"], "resources": ["trainingpipelines/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "update", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
"""Rules needed in every watched namespace (a ClusterRole bound cluster-wide, or a Role per namespace)."""

DISCOVERY_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]
"""Cluster-scoped reads Kopf uses to discover resources and namespaces (always cluster-wide)."""


def objects(namespace: str, watched: tuple[str, ...] = (), name: str = OPERATOR_NAME) -> list[dict[str, Any]]:
    """ServiceAccount `name`, and the same (Cluster)Roles and bindings as the chart, for an operator in
    `namespace`: the e2e harness grants its out-of-cluster operator with these.

    Kopf's discovery reads are always a ClusterRole and ClusterRoleBinding (`{name}-discovery`). With no
    `watched` namespaces RULES are a ClusterRole bound cluster-wide; otherwise a Role and RoleBinding in
    each watched namespace. The chart (`charts/pulsetrain/templates/rbac.yaml`) builds the same objects,
    and tests/integration/test_chart.py compares the two.
    """
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "pulsetrain"}
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    group = "rbac.authorization.k8s.io"

    def role(kind: str, role_name: str, rules: list[dict[str, Any]], ns: str | None = None) -> dict[str, Any]:
        metadata = {"name": role_name, **({"namespace": ns} if ns else {}), "labels": labels}
        return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": metadata, "rules": rules}

    def binding(kind: str, role_kind: str, role_name: str, ns: str | None = None) -> dict[str, Any]:
        metadata = {"name": role_name, **({"namespace": ns} if ns else {}), "labels": labels}
        return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": metadata,
                "roleRef": {"apiGroup": group, "kind": role_kind, "name": role_name}, "subjects": subject}

    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "automountServiceAccountToken": True},
        role("ClusterRole", f"{name}-discovery", DISCOVERY_RULES),
        binding("ClusterRoleBinding", "ClusterRole", f"{name}-discovery"),
    ]
    if not watched:
        out += [role("ClusterRole", name, RULES), binding("ClusterRoleBinding", "ClusterRole", name)]
    for ns in watched:
        out += [role("Role", name, RULES, ns), binding("RoleBinding", "Role", name, ns)]
    return out
