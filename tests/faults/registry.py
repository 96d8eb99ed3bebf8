"""A schema registry in this process: the two endpoints of the Confluent REST API the
pipeline uses, served over real HTTP so the real client code talks to it."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalRegistry:
    def __init__(self, port: int, schemas: dict[int, str], writable: bool = True):
        self.port = port
        self.schemas = schemas
        self.writable = writable  # False: like a registry in READONLY mode
        self.subjects: dict[str, list[int]] = {}
        self.auth_headers: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LocalRegistry":
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = self._parts()
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit() \
                        and int(parts[2]) in registry.schemas:
                    code, body = 200, {"schema": registry.schemas[int(parts[2])]}
                else:
                    code, body = 404, {"error_code": 40403, "message": "Schema not found"}
                self._answer(code, body)

            def do_POST(self):  # noqa: N802  (POST /subjects/{subject}/versions)
                parts = self._parts()
                text = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))["schema"]
                if not (len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions"):
                    code, body = 404, {"error_code": 404, "message": "HTTP 404 Not Found"}
                elif not registry.writable:
                    code, body = 422, {"error_code": 42205, "message": "Subject is in read-only mode"}
                else:
                    code, body = 200, {"id": registry.register(parts[1], text)}
                self._answer(code, body)

            def _parts(self) -> list[str]:
                """The path's segments (no query string); records the Authorization header."""
                registry.auth_headers.append(self.headers.get("Authorization", ""))
                return self.path.split("?")[0].strip("/").split("/")

            def _answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def register(self, subject: str, text: str) -> int:
        """The same schema text keeps its id; a new one gets the next id."""
        known = next((i for i, t in self.schemas.items() if json.loads(t) == json.loads(text)), None)
        schema_id = known if known is not None else max(self.schemas, default=100) + 1
        self.schemas[schema_id] = text
        versions = self.subjects.setdefault(subject.replace("%2F", "/"), [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
