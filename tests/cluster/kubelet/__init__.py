"""The process kubelet: runs the pods the scheduler binds to its node as local processes.

It is the one part of the test bed that is not upstream Kubernetes. It does what a kubelet does that
the project's tests can observe (node registration, pod sandboxes with their own network namespace
and IP, /etc/hosts with pod and headless-service names, env and volumes, restart policies, probes,
status, graceful deletion, `kubectl logs`) and nothing else (no images, no cgroups, no kube-proxy).
"""
