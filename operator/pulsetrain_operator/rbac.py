"""The operator's RBAC rules, the one source for the plain manifests and the Helm chart.

Why this exists: least privilege has to be written down once. The operator reads and updates
pipelines and their status, runs the workers' pods, Services and ConfigMaps, and posts Events; Kopf
itself lists CRDs and namespaces to discover what to watch. Workers get no API access at all (their
pods do not even mount a token), so no per-pipeline Role is created.
"""

from __future__ import annotations

from typing import Any

OPERATOR_NAME = "pulsetrain-operator"

RULES: list[dict[str, Any]] = [
    {"apiGroups": ["pulsetrain.dev"], "resources": ["trainingpipelines"],
     "verbs": ["get", "list", "watch", "patch", "delete"]},
    {"apiGroups": ["pulsetrain.dev"], "resources": ["trainingpipelines/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
"""Rules needed in every watched namespace (a ClusterRole, bound cluster-wide or per namespace)."""

DISCOVERY_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]
"""Cluster-scoped reads Kopf uses to discover resources and namespaces (always cluster-wide)."""


def objects(namespace: str, watched: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRoles and bindings for an operator in `namespace`.

    With no `watched` namespaces the rules are bound cluster-wide; otherwise with one RoleBinding in
    each watched namespace (the ClusterRole is then only a reusable set of rules).
    """
    labels = {"app.kubernetes.io/name": OPERATOR_NAME, "app.kubernetes.io/part-of": "pulsetrain"}
    subject = [{"kind": "ServiceAccount", "name": OPERATOR_NAME, "namespace": namespace}]
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": OPERATOR_NAME, "namespace": namespace, "labels": labels},
         "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": OPERATOR_NAME, "labels": labels}, "rules": RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"{OPERATOR_NAME}-discovery", "labels": labels}, "rules": DISCOVERY_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{OPERATOR_NAME}-discovery", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": f"{OPERATOR_NAME}-discovery"}, "subjects": subject},
    ]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR_NAME}
    if not watched:
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": OPERATOR_NAME, "labels": labels}, "roleRef": role_ref, "subjects": subject})
    for ns in watched:
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": OPERATOR_NAME, "namespace": ns, "labels": labels},
                    "roleRef": role_ref, "subjects": subject})
    return out
