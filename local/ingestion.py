"""A local Application Insights ingestion endpoint: what the Azure Monitor exporter sends
(`POST /v2.1/track`, JSON envelopes, gzip or not), recorded for tests, answered as the
service answers (every item accepted).

It must not be imported by `shared/`: the function app never ships it.
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from typing import Any, Self


class Ingestion:
    """`with Ingestion() as ingestion:` serves on a free port; `connection_string` points the
    exporter at it; `envelopes` is what arrived."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                items = json.loads(body)
                with owner._lock:
                    owner.envelopes.extend(items)
                answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def connection_string(self) -> str:
        port = self._server.server_address[1]
        return f"InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint=http://127.0.0.1:{port}/"

    def of(self, base_type: str) -> list[dict[str, Any]]:
        """The `baseData` of every envelope of one type (`MetricData`, `EventData`, `MessageData`)."""
        with self._lock:
            return [e["data"]["baseData"] for e in self.envelopes if e.get("data", {}).get("baseType") == base_type]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
