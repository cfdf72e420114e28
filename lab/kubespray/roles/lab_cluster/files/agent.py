#!/usr/bin/python3
"""Lab stand-in for the kubelet's node registration and heartbeat (stdlib only).

Every --interval seconds, PUT /lab/v1/nodes/<name> on every --server with a JSON body
{"roles": [...], "address": ..., "kubeletVersion": ..., "osImage": ..., "kernelVersion": ...},
authenticated by the node's client certificate (CN system:node:<name>, O system:nodes).
The first PUT registers the node (201), later ones are heartbeats (200). One thread per
server, so an unreachable control plane does not delay the others.

--once --not-ready sends one beat saying {"ready": false, "message": ...} to every server
and exits: what a kubelet being restarted for an upgrade shows (NotReady, KubeletNotReady)
until the restarted agent beats again. Exit status 0 when every server took it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stderr.write(f"{stamp} {message}\n")
    sys.stderr.flush()


def os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def beat(server: str, path: str, body: bytes, ctx: ssl.SSLContext, interval: float,
         timeout: float, stop: threading.Event) -> None:
    """Send heartbeats to one server until stop is set; log only changes of state."""
    url = urlsplit(server)
    conn: http.client.HTTPSConnection | None = None
    state = ""
    while not stop.is_set():
        started = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPSConnection(url.hostname or "", url.port or 6443,
                                                   context=ctx, timeout=timeout)
            conn.request("PUT", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            reply = resp.read()
            now = "ok" if resp.status in (200, 201) else f"HTTP {resp.status}: {reply[:200]!r}"
            if resp.status == 201:
                log(f"registered with {server}")
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            now = f"unreachable: {e}"
            if conn is not None:
                conn.close()
            conn = None
        if now != state:
            log(f"{server}: {now}")
            state = now
        stop.wait(max(interval - (time.monotonic() - started), 0.05))


def once(server: str, path: str, body: bytes, ctx: ssl.SSLContext, timeout: float) -> bool:
    """One beat to one server; True when it was accepted."""
    url = urlsplit(server)
    conn = http.client.HTTPSConnection(url.hostname or "", url.port or 6443, context=ctx,
                                       timeout=timeout)
    try:
        conn.request("PUT", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        reply = resp.read()
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        log(f"{server}: unreachable: {e}")
        return False
    finally:
        conn.close()
    log(f"{server}: HTTP {resp.status} {reply[:200]!r}")
    return resp.status in (200, 201)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="lab stand-in for kubelet heartbeats")
    p.add_argument("--name", required=True, help="node name")
    p.add_argument("--server", action="append", required=True, help="https://host:port")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--role", action="append", default=[], help="e.g. control-plane")
    p.add_argument("--address", default="", help="InternalIP")
    p.add_argument("--kubelet-version", default="v1.35.4")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--once", action="store_true", help="one beat to every server, then exit")
    p.add_argument("--not-ready", action="store_true", help="report the node not ready")
    p.add_argument("--message", default="kubelet is restarting", help="with --not-ready")
    a = p.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    info: dict[str, Any] = {"roles": a.role, "address": a.address,
                            "kubeletVersion": a.kubelet_version, "osImage": os_image(),
                            "kernelVersion": os.uname().release}
    if a.not_ready:
        info |= {"ready": False, "message": a.message}
    body = json.dumps(info).encode()
    path = f"/lab/v1/nodes/{a.name}"
    timeout = max(a.interval, 1.0)
    if a.once:
        sys.exit(0 if all(once(s, path, body, ctx, timeout) for s in a.server) else 1)
    threads = [threading.Thread(target=beat, args=(s, path, body, ctx, a.interval, timeout,
                                                   stop), daemon=True) for s in a.server]
    for t in threads:
        t.start()
    log(f"{a.name}: heartbeats every {a.interval:g}s to {', '.join(a.server)}")
    while not stop.wait(1.0):
        pass
    for t in threads:
        t.join(timeout + 1)


if __name__ == "__main__":
    main()
