"""pulsetrain's Kopf operator: `TrainingPipeline` resources in, worker pods and status out.

Layering (Kopf's own, and KubeRay's one-builder-per-object): `crd` is the one source of the API schema;
`builders/` turn a spec into Pod/Service/ConfigMap dicts and the worker configuration without touching a
cluster; `lifecycle` decides what a pipeline needs next from what exists; `handlers` are thin Kopf
handlers that read the cluster, call those pure functions and apply their answer.
"""
