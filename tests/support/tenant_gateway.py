"""A multi-tenant front door on 127.0.0.1 that refuses a query without `X-Scope-OrgID`, as
Mimir, Cortex and Loki do ("no org id", HTTP 401), and forwards the rest to a real backend.

Stand-in: Mimir/Cortex do not run here. Only the tenant check is simulated; the answers come
from the real VictoriaMetrics or Prometheus behind it."""

from __future__ import annotations

import httpx

from rollout.review.localstack import LoopbackServer, QuietHandler


class TenantGateway(LoopbackServer):
    def __init__(self, backend_url: str) -> None:
        self.tenants: list[str | None] = []  # the X-Scope-OrgID of every request, in order
        gateway = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                tenant = self.headers.get("X-Scope-OrgID")
                gateway.tenants.append(tenant)
                if not tenant:
                    self._reply(401, b"no org id\n", "text/plain")
                    return
                upstream = httpx.get(backend_url + self.path, timeout=5.0)
                self._reply(upstream.status_code, upstream.content, upstream.headers.get("content-type", ""))

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
