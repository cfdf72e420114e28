"""The emulated internet host's service: answers any HTTP GET with the caller's address.

Run by the system ``python3`` inside the lab's inet namespace (stdlib only, no venv):

    python3 -I inet_service.py ADDRESS PORT PIDFILE

Replying with the source address is what makes NAT observable: before masquerade a
node's packets cannot even get an answer (inet has no route back to the private
network); after it, the body reads the bastion's uplink address.
The pid file is written only after the socket is bound, so it doubles as readiness.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoSourceHandler(BaseHTTPRequestHandler):
    """GET (any path) -> ``<client address>\\n``; HEAD gets the headers only."""

    server_version = "kubebastion-lab-inet/1"

    def _reply(self, with_body: bool) -> None:
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(True)

    def do_HEAD(self) -> None:
        self._reply(False)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.client_address[0]} {format % args}\n")
        sys.stderr.flush()


def main(argv: list[str]) -> int:
    address, port, pidfile = argv[0], int(argv[1]), argv[2]
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((address, port), EchoSourceHandler)
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, pidfile)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
