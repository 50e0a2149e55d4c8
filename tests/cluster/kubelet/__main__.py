"""`python -m tests.cluster.kubelet`: run the process kubelet until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from tests.cluster.kubelet.api import Kube
from tests.cluster.kubelet.kubelet import Kubelet, KubeletConfig
from tests.cluster.kubelet.runtime import ImageEnv
from tests.cluster.network import PodNetwork


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.kubelet", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True, help="directory for pods, logs and volumes")
    parser.add_argument("--pki", type=Path, required=True,
                        help="directory with ca.crt and kubelet-serving.crt/.key")
    parser.add_argument("--node-name", default=socket.gethostname().split(".")[0].lower() or "testbed")
    parser.add_argument("--apiserver-port", type=int, default=6443)
    parser.add_argument("--cpu", default="8", help="allocatable cpu (default 8)")
    parser.add_argument("--memory", default="32Gi", help="allocatable memory (default 32Gi)")
    parser.add_argument("--pods", default="110", help="allocatable pods (default 110)")
    parser.add_argument("--gpus", type=int, default=0, help="fake nvidia.com/gpu count (default 0)")
    parser.add_argument("--image-env", action="append", default=[], metavar="PATTERN=PREFIX",
                        help="run images matching PATTERN in the environment at PREFIX (repeatable)")
    parser.add_argument("--extra-host", action="append", default=[], metavar="NAME=IP",
                        help="an extra /etc/hosts entry in every pod (repeatable)")
    parser.add_argument("--backoff-base", type=float, default=2.0, help="first restart back-off seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    net = PodNetwork.from_env()
    capacity = {"cpu": args.cpu, "memory": args.memory, "pods": args.pods, "ephemeral-storage": "100Gi"}
    if args.gpus:
        capacity["nvidia.com/gpu"] = str(args.gpus)
    config = KubeletConfig(
        node_name=args.node_name,
        host_ip=net.host_ip,
        apiserver_port=args.apiserver_port,
        state=args.state,
        pki=args.pki,
        network=net,
        image_envs=[ImageEnv.parse(text) for text in args.image_env],
        capacity=capacity,
        extra_hosts=dict(text.split("=", 1) for text in args.extra_host),
        backoff_base=args.backoff_base,
    )
    kubelet = Kubelet(config, Kube.from_kubeconfig(args.kubeconfig))

    def stop(signum: int, frame: FrameType | None) -> None:
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kubelet.run()
    kubelet.shutdown()


if __name__ == "__main__":
    main()
