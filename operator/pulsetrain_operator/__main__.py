"""`python -m pulsetrain_operator`: run the operator (what the chart's Deployment starts).

Why a custom entry point instead of `kopf run`: it reads the watched namespaces from the same settings
the rest of the operator uses (`PULSETRAIN_NAMESPACES`, or `--namespace`), always runs standalone (one
replica, no peering objects to grant), and sets up structured logs and the liveness endpoint the chart
probes.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from pulsetrain_operator.settings import Settings, SettingsError

LOG_FORMATS = {"json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL, "plain": kopf.LogFormat.PLAIN}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulsetrain_operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="watch this namespace (repeatable); default: PULSETRAIN_NAMESPACES, else all")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                        help="Kopf liveness endpoint URL (default %(default)s); 'none' turns it off")
    parser.add_argument("--log-format", choices=sorted(LOG_FORMATS), default="json")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"pulsetrain operator: {exc}", file=sys.stderr)
        return 2
    namespaces = tuple(args.namespace) or settings.namespaces
    kopf.configure(verbose=args.verbose, log_format=LOG_FORMATS[args.log_format], log_refkey="k8s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not args.verbose:  # one "Handler ... succeeded" line per watch event drowns the operator's own lines
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    import pulsetrain_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(standalone=True, clusterwide=not namespaces, namespaces=namespaces,
             liveness_endpoint=None if args.liveness == "none" else args.liveness)
    return 0


if __name__ == "__main__":
    sys.exit(main())
