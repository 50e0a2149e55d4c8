"""`python -m tests.cluster up|down|status|install|logs|env`: keep the test bed running between test runs.

Test runs reuse a running test bed (and leave it running); without one, pytest starts its own and
stops it at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tests.cluster import testbed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="install what is missing and start the test bed")
    p_up.add_argument("--no-pulsar", action="store_true", help="start without Pulsar")
    p_up.add_argument("--gpus", type=int, default=0, help="fake nvidia.com/gpu count on the node")
    sub.add_parser("down", help="stop everything and remove the pod network")
    sub.add_parser("status", help="which servers are running")
    sub.add_parser("install", help="only build/download the tools into the cache")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and the Pulsar URLs")
    p_logs = sub.add_parser("logs", help="a pod's container log (kubectl logs)")
    p_logs.add_argument("pod", help="NAMESPACE/POD")
    p_logs.add_argument("-c", "--container")
    p_logs.add_argument("-p", "--previous", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "install":
        testbed.install()
    elif args.command == "up":
        print(_exports(testbed.up(with_pulsar=not args.no_pulsar, gpus=args.gpus)))
    elif args.command == "down":
        testbed.down()
    elif args.command == "status":
        states = testbed.status()
        for name, running in states.items():
            print(f"{name:26} {'running' if running else 'stopped'}")
        return 0 if all(states.values()) else 1
    elif args.command in ("env", "logs"):
        info = testbed.TestBedInfo.load()
        if info is None:
            print("no test bed is running: python -m tests.cluster up", file=sys.stderr)
            return 1
        if args.command == "env":
            print(_exports(info))
            return 0
        namespace, _, pod = args.pod.rpartition("/")
        cmd = [info.kubectl, f"--kubeconfig={info.kubeconfig}", "logs", "-n", namespace or "default", pod]
        cmd += ["-c", args.container] if args.container else []
        cmd += ["--previous"] if args.previous else []
        return subprocess.run(cmd, check=False).returncode
    return 0


def _exports(info: testbed.TestBedInfo) -> str:
    return "\n".join([
        f"export KUBECONFIG={info.kubeconfig}",
        f"export PULSETRAIN_PULSAR_URL={info.pulsar_service_url}",
        f"export PULSETRAIN_PULSAR_ADMIN_URL={info.pulsar_admin_url}",
        f"alias kubectl={info.kubectl} helm={info.helm}",
    ])


if __name__ == "__main__":
    sys.exit(main())
