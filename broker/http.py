"""/metrics, /healthz and /readyz on one port, for Prometheus and Kubernetes probes."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker.metrics import REGISTRY

FILTER_FAILING_S = 300.0  # /readyz fails when a filter has failed every batch for this long


class HealthServer:
    def __init__(self, pipeline, port: int, host: str = "0.0.0.0"):
        self.pipeline = pipeline
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "HealthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def health(self) -> tuple[bool, str]:
        stalled = time.monotonic() - self.pipeline.last_loop
        budget = self.pipeline.liveness_budget_s
        return stalled < budget, f"loop turned {stalled:.1f}s ago (budget {budget:.0f}s)"

    def ready(self) -> tuple[bool, str]:
        if self.pipeline.fault:
            return False, self.pipeline.fault
        waiting = self.pipeline.tracker.waiting_for()
        if waiting > self.pipeline.settings.timeouts.broker_probe_s:  # Kafka stalled mid-batch
            return False, f"waiting on Kafka (acks or commit) for {waiting:.0f}s"
        if not self.pipeline.assigned:
            return False, "no partitions assigned"
        failing = self.pipeline.filters.failing_for()
        if failing > FILTER_FAILING_S:
            return False, f"a filter has failed every batch for {failing:.0f}s"
        return True, f"{len(self.pipeline.assigned)} partitions, {len(self.pipeline.filters.filters)} filters"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz") or self.path.startswith("/readyz"):
                    ok, why = server.health() if self.path.startswith("/healthz") else server.ready()
                    body, ctype, code = (why + "\n").encode(), "text/plain", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet: probes hit these every few seconds
                pass

        return Handler
