"""The kubelet's HTTPS endpoint, reduced to what `kubectl logs` needs: /containerLogs.

The API server proxies `kubectl logs` (and the client libraries' read_namespaced_pod_log) to the
node's kubelet port with its client certificate; this server checks that certificate against the
cluster CA and streams the container's log file (`previous`, `tailLines`, `follow`).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.cluster.kubelet.kubelet import Kubelet
    from tests.cluster.kubelet.pods import Slot

log = logging.getLogger(__name__)


def _handler(kubelet: Kubelet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = url.path.strip("/").split("/")
            if url.path == "/healthz":
                self._send(200, b"ok")
                return
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._send(404, b"only /containerLogs is served by the process kubelet")
                return
            _, namespace, pod, container = parts
            worker = kubelet.worker(namespace, pod)
            if worker is None:
                self._send(404, f"pod {namespace}/{pod} is not running on this node".encode())
                return
            slot = next((s for s in worker.init_slots + worker.slots if s.record.name == container), None)
            if slot is None:
                self._send(404, f"container {container} is not in pod {namespace}/{pod}".encode())
                return
            restart = slot.record.restart_count - (1 if query.get("previous") == ["true"] else 0)
            path = worker.log_path(container, restart)
            if restart < 0 or not path.exists():
                self._send(400, f"no logs for container {container} (restart {restart})".encode())
                return
            lines = path.read_bytes().splitlines(keepends=True)
            if "tailLines" in query:
                lines = lines[-int(query["tailLines"][0]) :] if int(query["tailLines"][0]) else []
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"".join(lines))
            if query.get("follow") == ["true"]:
                self._follow(path, slot)

        def _follow(self, path: Path, slot: Slot) -> None:
            offset = path.stat().st_size
            while not kubelet.stopping.is_set():
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                if chunk:
                    offset += len(chunk)
                    self.wfile.write(chunk)
                    self.wfile.flush()
                elif slot.process is None:
                    return
                time.sleep(0.3)

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve_logs(kubelet: Kubelet, stopping: threading.Event) -> None:
    pki = kubelet.config.pki
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki / "kubelet-serving.crt"), str(pki / "kubelet-serving.key"))
    context.load_verify_locations(str(pki / "ca.crt"))
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer((kubelet.config.host_ip, kubelet.config.kubelet_port), _handler(kubelet))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="log-server", daemon=True).start()

    def shut_down_when_stopping() -> None:
        stopping.wait()
        server.shutdown()

    threading.Thread(target=shut_down_when_stopping, daemon=True).start()
