"""`python -m pulsetrain.worker --config FILE`: one training worker, as run in every pod.

Order matters here: parse and validate the configuration (exit 2 on a bad one, before anything slow);
start the telemetry endpoint; hold our own collective port open and wait until every peer's address
resolves and accepts connections (exit 3 naming the missing peer, instead of TensorFlow hanging
without explanation); only then import TensorFlow and train. SIGTERM or SIGINT asks the gang to stop
after the current step, checkpoint and acknowledge; the worker then exits 0. With `--termination-log
PATH` it leaves, however it exits, its final progress document there with the outcome as `state`:
`finished`, `stopped` or `failed` (see `pulsetrain.outcome`).

Exit codes: 0 done, 1 unexpected error (retryable), 2 invalid configuration (permanent),
3 peers unreachable (retryable), 4 a bounded run that trained nothing: no message before the idle timeout,
so no model is exported (retryable: a producer may start late).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from pulsetrain.config import ConfigError, TFConfig, TokenAuth, WorkerConfig, load_config_file, tf_config_from_env
from pulsetrain.gc_tuning import freeze_long_lived
from pulsetrain.http_server import serve
from pulsetrain.outcome import NothingTrained, TerminationLog, stop_message
from pulsetrain.peers import PeerTimeout, parse_address, wait_for_peers
from pulsetrain.pulsar_io import backlog
from pulsetrain.stop_request import StopRequest
from pulsetrain.telemetry import Telemetry

log = logging.getLogger("pulsetrain.worker")
EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_PEERS, EXIT_NOTHING_TRAINED = 0, 1, 2, 3, 4
BACKLOG_EVERY_S = 10.0
PEER_DEADLINE_S = float(os.environ.get("PULSETRAIN_PEER_DEADLINE_SECONDS", "300"))


class PortHolder:
    """Accepts (and closes) connections on our collective port until TensorFlow takes it over, so
    peers checking for us see the port open while we check for them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=2)


def wait_for_gang(tf_config: TFConfig) -> None:
    _, port = parse_address(tf_config.workers[tf_config.task_index])
    holder = PortHolder(port)
    try:
        wait_for_peers(list(tf_config.workers), tf_config.task_index, PEER_DEADLINE_S)
    finally:
        holder.close()


def watch_backlog(config: WorkerConfig, telemetry: Telemetry, stop: threading.Event) -> None:
    """The chief reports the subscription's backlog (from the admin API, with the worker's token when it has
    one, read again each time so that a rotated token is used) every 10 s."""
    pulsar_cfg = config.source.pulsar
    if not pulsar_cfg.admin_url:
        return

    def loop() -> None:
        while not stop.wait(BACKLOG_EVERY_S):
            token = None
            if isinstance(pulsar_cfg.authentication, TokenAuth):
                with contextlib.suppress(ConfigError):  # the source reports that one
                    token = pulsar_cfg.authentication.read().reveal()
            telemetry.set_backlog(backlog(pulsar_cfg.admin_url or "", pulsar_cfg.topic, pulsar_cfg.subscription,
                                          token=token))

    threading.Thread(target=loop, name="backlog", daemon=True).start()


def train(config: WorkerConfig, tf_config: TFConfig | None, telemetry: Telemetry, stop: threading.Event,
          install_signal_handlers: Callable[[], None]) -> dict[str, object]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pulsetrain.trainer import Trainer  # TensorFlow is imported only now

    trainer = Trainer(config, tf_config, telemetry, stop)
    freeze_long_lived()  # TensorFlow, the model and the strategy out of every full collection (see gc_tuning.py)
    install_signal_handlers()  # TensorFlow's gRPC server replaced the process's SIGTERM handler: take it back
    return trainer.run()


def task_index_from_env() -> int:
    """This worker's index from TF_CONFIG, 0 when there is none or it is invalid."""
    with contextlib.suppress(ConfigError):
        tf_config = tf_config_from_env()
        return tf_config.task_index if tf_config else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulsetrain.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the worker configuration (JSON)")
    parser.add_argument("--summary", type=Path, help="write the final summary (JSON) to this file")
    parser.add_argument("--termination-log", type=Path, metavar="PATH",
                        help="at exit, write the outcome (a progress document of at most 4096 bytes) to this "
                             "file, e.g. /dev/termination-log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with TerminationLog(args.termination_log, worker=task_index_from_env()) as outcome:
        return run(args, outcome)


def run(args: argparse.Namespace, outcome: TerminationLog) -> int:
    try:
        config = load_config_file(args.config)
        tf_config = tf_config_from_env()
    except ConfigError as exc:
        print(f"pulsetrain worker: invalid configuration: {exc}", file=sys.stderr)
        outcome.report("failed", f"invalid configuration: {exc}")
        return EXIT_CONFIG
    index = tf_config.task_index if tf_config else 0
    telemetry = Telemetry(pipeline=config.pipeline.name, namespace=config.pipeline.namespace, worker=index,
                          is_chief=index == 0)
    outcome.progress = telemetry.snapshot
    port = int(os.environ.get("PULSETRAIN_METRICS_PORT", config.observability.port))  # local gangs share a host
    server = serve(telemetry, config.observability.host, port)
    stop = StopRequest(lambda: telemetry.set_state("stopping"), log, "the current step (checkpoint, acknowledge, exit)")
    stop.install()
    finished = threading.Event()
    if index == 0:
        watch_backlog(config, telemetry, finished)
    try:
        if tf_config is not None and tf_config.num_workers > 1:
            telemetry.set_state("waiting-for-peers")
            wait_for_gang(tf_config)
        summary = train(config, tf_config, telemetry, stop.event, stop.install)
    except (PeerTimeout, NothingTrained) as exc:  # expected ends, each with its own exit code; no traceback
        telemetry.set_state("failed", str(exc))
        outcome.report("failed", str(exc))
        log.error("%s", exc)
        return EXIT_PEERS if isinstance(exc, PeerTimeout) else EXIT_NOTHING_TRAINED
    except ConfigError as exc:
        telemetry.set_state("failed", str(exc))
        outcome.report("failed", f"invalid configuration: {exc}")
        print(f"pulsetrain worker: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        finished.set()
        server.close()
    if summary.get("stopRequested") or stop.event.is_set():
        outcome.report("stopped", stop_message(stop.signals[0] if stop.signals else None))
    else:
        outcome.report("finished")
    line = json.dumps({"worker": index, **summary})
    print(f"pulsetrain: finished {line}", flush=True)
    if args.summary:
        args.summary.write_text(line + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
