"""The pulsetrain test bed: a real Kubernetes control plane, a process kubelet and Pulsar standalone.

These machines have no Docker engine, so kind cannot run here; mocks of the API server or of Pulsar
would hide the bugs that matter (schema pruning, CEL, RBAC, garbage collection, redelivery). So the
project builds and starts the real servers itself, and replaces only the kubelet.
"""
