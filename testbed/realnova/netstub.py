"""A stand-in for the network service (Neutron) in the real-Nova backend: every list is empty.

nova-api asks the network service for the ports and security groups of the servers it lists
(`GET /servers/detail`); without a network endpoint it answers 500. No test looks at networks,
so this answers each `GET /v2.0/<collection>` with an empty list, and the version document at /.

Usage: python netstub.py --port PORT   (binds 127.0.0.1 only; stdlib only)
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0].rstrip("/")
        base = f"http://{self.headers.get('Host', '127.0.0.1')}"
        if path in ("", "/v2.0"):
            self._send(
                200,
                {
                    "versions": [
                        {
                            "id": "v2.0",
                            "status": "CURRENT",
                            "links": [{"rel": "self", "href": f"{base}/v2.0/"}],
                        }
                    ]
                },
            )
            return
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "v2.0":
            collection = parts[1].removesuffix(".json").replace("-", "_")
            self._send(200, {collection: []})
            return
        self._send(404, {"NeutronError": {"type": "HTTPNotFound", "message": f"{path} not found"}})

    def log_message(self, fmt: str, *args) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
