"""A loopback stand-in for the Kubernetes API's Lease endpoints (coordination.k8s.io/v1), for the
bot's leader election: no API server can run on the test machines.

It serves HTTPS with its own CA (trustme), checks the ServiceAccount bearer token, and keeps the
API server's semantics the elector relies on: GET 404 for a missing Lease, POST 409 when it
exists, PUT 409 when `metadata.resourceVersion` is not the stored one (optimistic concurrency),
a new resourceVersion on every write. It also writes the folder a pod has mounted at
/var/run/secrets/kubernetes.io/serviceaccount (token, ca.crt, namespace) and gives the
environment that points `KubeLeaseApi.in_cluster` at it.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

PREFIX = "/apis/coordination.k8s.io/v1/namespaces/"


class KubeLeaseServer:
    def __init__(self, folder: Path, namespace: str = "monitoring", token: str = "sa-token-7f3a") -> None:
        self.namespace = namespace
        self.token = token
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._version = 100
        self._lock = threading.Lock()
        self.sa_dir = folder / "serviceaccount"
        self.sa_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.sa_dir / "ca.crt"))
        (self.sa_dir / "token").write_text(token + "\n")
        (self.sa_dir / "namespace").write_text(namespace)
        server_cert = ca.issue_cert("127.0.0.1")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_cert.configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def env(self) -> dict[str, str]:
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
                "ROLLOUT_SERVICE_ACCOUNT_DIR": str(self.sa_dir)}

    def rotate_token(self, token: str) -> None:
        """What the kubelet does to a projected token: a new value in the same file."""
        self.token = token
        (self.sa_dir / "token").write_text(token + "\n")

    def holder(self, name: str) -> str | None:
        lease = self.leases.get((self.namespace, name))
        return None if lease is None else lease["spec"].get("holderIdentity")

    def __enter__(self) -> KubeLeaseServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                server.requests.append((self.command, self.path, status))

            def _status(self, code: int, reason: str, message: str) -> None:
                self._reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": reason, "message": message, "code": code})

            def _route(self) -> tuple[str, str | None] | None:
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._status(401, "Unauthorized", "Unauthorized")
                    return None
                if not self.path.startswith(PREFIX):
                    self._status(404, "NotFound", "not a Lease path")
                    return None
                parts = self.path[len(PREFIX):].split("/")
                if len(parts) < 2 or parts[1] != "leases":
                    self._status(404, "NotFound", "not a Lease path")
                    return None
                return parts[0], (parts[2] if len(parts) > 2 else None)

            def _body(self) -> dict[str, Any]:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
                server._version += 1
                body.setdefault("metadata", {})["resourceVersion"] = str(server._version)
                server.leases[key] = body
                return body

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                route = self._route()
                if route is None:
                    return
                with server._lock:
                    lease = server.leases.get((route[0], route[1] or ""))
                if lease is None:
                    self._status(404, "NotFound", f'leases.coordination.k8s.io "{route[1]}" not found')
                else:
                    self._reply(200, lease)

            def do_POST(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return
                body = self._body()
                key = (route[0], body["metadata"]["name"])
                with server._lock:
                    if key in server.leases:
                        self._status(409, "AlreadyExists", f'leases.coordination.k8s.io "{key[1]}" already exists')
                        return
                    stored = self._store(key, body)
                self._reply(201, stored)

            def do_PUT(self) -> None:  # noqa: N802
                route = self._route()
                if route is None:
                    return
                body = self._body()
                key = (route[0], route[1] or "")
                with server._lock:
                    current = server.leases.get(key)
                    if current is None:
                        self._status(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
                        return
                    if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                        self._status(409, "Conflict", "the object has been modified; please apply your changes "
                                                      "to the latest version and try again")
                        return
                    stored = self._store(key, body)
                self._reply(200, stored)

        return Handler
