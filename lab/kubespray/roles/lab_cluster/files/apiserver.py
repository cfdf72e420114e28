#!/usr/bin/python3
"""Lab stand-in for kube-apiserver (stdlib only).

HTTPS with mandatory client certificates signed by the cluster CA. Serves what kubectl and
the Kubernetes Python client read about nodes (/version, /api, /apis, /api/v1, nodes as
NodeList or meta.k8s.io/v1 Table, empty services and pods, a few namespaces, no
volumeattachments) and the lab agent's heartbeat: PUT /lab/v1/nodes/<name> with a JSON body
(see agent.py). A node is Ready while heartbeats arrive, NotReady when none came for
--grace-seconds or when its agent reported itself not ready ({"ready": false}).

What kubespray's day-two roles do to nodes works as on a real API server, for
system:masters only: cordon/uncordon (PATCH spec.unschedulable), drain (nothing to evict:
no pods), delete (DELETE /api/v1/nodes/<name>; a running agent registers the node again,
as a kubelet would). --state keeps the node registry across restarts (the stand-in's
etcd), so an upgrade's API server restart does not forget cordons or deleted nodes;
--events appends one JSON line per node transition (registered, Ready, NotReady,
cordoned, uncordoned, kubelet version changed, deleted) for tests to read.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]
VERSION = "v1.35.4"
NODE_RE_PREFIX = "/api/v1/nodes/"
HEARTBEAT_PREFIX = "/lab/v1/nodes/"
NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Seconds per unit of kubectl's ages (a year is 365 days there).
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}
#: Kubernetes' duration.HumanDuration as steps: below ``limit`` seconds, the age in ``unit``,
#: followed by the rest in ``then`` when there is a rest (and ``then`` is not "").
_AGE_STEPS = ((120, "s", ""), (600, "m", "s"), (3 * 3600, "m", ""), (8 * 3600, "h", "m"),
              (48 * 3600, "h", ""), (192 * 3600, "d", "h"), (730 * 86400, "d", ""),
              (2920 * 86400, "y", "d"))


def human_age(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration, as in kubectl's AGE column."""
    s = max(int(seconds), 0)
    unit, then = next(((unit, then) for limit, unit, then in _AGE_STEPS if s < limit),
                      ("y", ""))
    whole, rest = divmod(s, _AGE_UNITS[unit])
    rest = rest // _AGE_UNITS[then] if then else 0
    return f"{whole}{unit}{rest}{then}" if rest else f"{whole}{unit}"


@dataclass
class NodeRecord:
    name: str
    info: JSON
    created: float = field(default_factory=time.time)
    last_beat: float = field(default_factory=time.monotonic)
    ready_since: float = field(default_factory=time.time)
    version: int = 0
    unschedulable: bool = False


def reported_ready(info: JSON) -> bool:
    """False when the agent said it is not ready (a kubelet restarting), else True."""
    return info.get("ready") is not False


class Registry:
    """Nodes known to this API server, with their last heartbeat.

    With a state file, what a real cluster keeps in etcd (which nodes exist, since when,
    cordoned or not, what their kubelet last reported) survives a restart of the server;
    heartbeats themselves are not written (a restarted server gives every node a fresh
    grace period, as the node controller does after a restart)."""

    def __init__(self, grace: float, state: str = "", events: str = "") -> None:
        self.grace = grace
        self.lock = threading.Lock()
        self.nodes: dict[str, NodeRecord] = {}
        self.counter = 0
        self.state = Path(state) if state else None
        self.events = Path(events) if events else None
        if self.state is not None and self.state.exists():
            self.load(json.loads(self.state.read_text()))

    def load(self, data: JSON) -> None:
        for name, rec in dict(data.get("nodes", {})).items():
            self.counter += 1
            self.nodes[name] = NodeRecord(
                name, dict(rec.get("info", {})), created=float(rec.get("created", time.time())),
                ready_since=float(rec.get("ready_since", time.time())), version=self.counter,
                unschedulable=bool(rec.get("unschedulable", False)))

    def save(self) -> None:
        """Write the registry atomically (called with the lock held)."""
        if self.state is None:
            return
        data = {"nodes": {r.name: {"info": r.info, "created": r.created,
                                   "ready_since": r.ready_since,
                                   "unschedulable": r.unschedulable}
                          for r in self.nodes.values()}}
        tmp = self.state.with_name(f".{self.state.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.state)

    def event(self, name: str, what: str, **extra: Any) -> None:
        """Append one transition to the events file (one write of one line: O_APPEND keeps
        concurrent lines whole)."""
        line = json.dumps({"time": time.time(), "node": name, "event": what, **extra})
        sys.stderr.write(f"{rfc3339(time.time())} node {name}: {what} {extra or ''}\n")
        if self.events is not None:
            fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)

    def heartbeat(self, name: str, info: JSON) -> bool:
        """Record a heartbeat; True when the node was not registered before."""
        with self.lock:
            self.counter += 1
            rec = self.nodes.get(name)
            version = info.get("kubeletVersion")
            if rec is None:
                self.nodes[name] = rec = NodeRecord(name, info, version=self.counter)
                self.event(name, "Registered", kubeletVersion=version,
                           ready=reported_ready(info))
                self.save()
                return True
            was_ready, old = self.ready(rec), rec.info
            rec.info, rec.last_beat, rec.version = info, time.monotonic(), self.counter
            now_ready = self.ready(rec)
            if now_ready and not was_ready:
                rec.ready_since = time.time()
            changed = False
            if old.get("kubeletVersion") != version:
                self.event(name, "KubeletVersionChanged", kubeletVersion=version,
                           previous=old.get("kubeletVersion"))
                changed = True
            if now_ready != was_ready:
                self.event(name, "Ready" if now_ready else "NotReady", kubeletVersion=version,
                           reason=str(info.get("message", "")) if not now_ready else "")
                changed = True
            if changed or reported_ready(old) != reported_ready(info):
                self.save()
            return False

    def delete(self, name: str) -> NodeRecord | None:
        """Forget a node (kubectl delete node); None when it was not registered."""
        with self.lock:
            rec = self.nodes.pop(name, None)
            if rec is not None:
                self.counter += 1
                self.event(name, "Deleted")
                self.save()
            return rec

    def set_unschedulable(self, name: str, value: bool) -> NodeRecord | None:
        """Cordon (True) or uncordon (False) a node; None when it is not registered."""
        with self.lock:
            rec = self.nodes.get(name)
            if rec is not None and rec.unschedulable != value:
                self.counter += 1
                rec.unschedulable, rec.version = value, self.counter
                self.event(name, "Cordoned" if value else "Uncordoned")
                self.save()
            return rec

    def ready(self, rec: NodeRecord) -> bool:
        return reported_ready(rec.info) and time.monotonic() - rec.last_beat <= self.grace

    def get(self, name: str) -> NodeRecord | None:
        with self.lock:
            return self.nodes.get(name)

    def all(self) -> list[NodeRecord]:
        with self.lock:
            return sorted(self.nodes.values(), key=lambda r: r.name)

    def node(self, rec: NodeRecord) -> JSON:
        info, ready = rec.info, self.ready(rec)
        beat = time.time() - (time.monotonic() - rec.last_beat)
        roles = [r for r in info.get("roles", []) if isinstance(r, str)]
        labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": rec.name,
                  "kubernetes.io/os": "linux"}
        labels.update({f"node-role.kubernetes.io/{r}": "" for r in roles})
        version = str(info.get("kubeletVersion", VERSION))
        addresses = [{"type": "Hostname", "address": rec.name}]
        if info.get("address"):
            addresses.insert(0, {"type": "InternalIP", "address": str(info["address"])})
        fresh = time.monotonic() - rec.last_beat <= self.grace
        condition = {
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": rfc3339(beat), "lastTransitionTime": rfc3339(rec.ready_since),
        } if ready else {
            "type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": str(info.get("message") or "kubelet is not ready"),
            "lastHeartbeatTime": rfc3339(beat), "lastTransitionTime": rfc3339(beat),
        } if fresh else {
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
            "lastHeartbeatTime": rfc3339(beat), "lastTransitionTime": rfc3339(beat + self.grace),
        }
        ident = str(uuid.uuid5(uuid.NAMESPACE_DNS, rec.name + ".lab"))
        return {
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": rec.name, "uid": ident, "resourceVersion": str(rec.version),
                         "creationTimestamp": rfc3339(rec.created), "labels": labels},
            "spec": {"unschedulable": True, "taints": [{
                "key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                "timeAdded": rfc3339(time.time())}]} if rec.unschedulable else {},
            "status": {
                "conditions": [condition], "addresses": addresses,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": ident.replace("-", ""), "systemUUID": ident, "bootID": ident,
                    "kernelVersion": str(info.get("kernelVersion", "")),
                    "osImage": str(info.get("osImage", "")),
                    "containerRuntimeVersion": "lab://0.0.0", "kubeletVersion": version,
                    "kubeProxyVersion": version, "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    def node_row(self, rec: NodeRecord, obj: JSON) -> list[str]:
        roles = sorted(k.split("/", 1)[1] for k in obj["metadata"]["labels"]
                       if k.startswith("node-role.kubernetes.io/"))
        st, ips = obj["status"], {a["type"]: a["address"] for a in obj["status"]["addresses"]}
        state = "Ready" if self.ready(rec) else "NotReady"
        return [rec.name, state + (",SchedulingDisabled" if rec.unschedulable else ""),
                ",".join(roles) or "<none>", human_age(time.time() - rec.created),
                st["nodeInfo"]["kubeletVersion"], ips.get("InternalIP", "<none>"),
                ips.get("ExternalIP", "<none>"), st["nodeInfo"]["osImage"],
                st["nodeInfo"]["kernelVersion"], st["nodeInfo"]["containerRuntimeVersion"]]


def column(name: str, priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": "string", "format": fmt, "description": name,
            "priority": priority}


NODE_COLUMNS = [column("Name", fmt="name"), column("Status"), column("Roles"), column("Age"),
                column("Version")] + [column(c, 1) for c in (
                    "Internal-IP", "External-IP", "OS-Image", "Kernel-Version",
                    "Container-Runtime")]
SERVICE_COLUMNS = [column("Name", fmt="name")] + [column(c) for c in (
    "Type", "Cluster-IP", "External-IP", "Port(s)", "Age")] + [column("Selector", 1)]
NAMESPACE_COLUMNS = [column("Name", fmt="name"), column("Status"), column("Age")]
POD_COLUMNS = [column("Name", fmt="name")] + [column(c) for c in (
    "Ready", "Status", "Restarts", "Age")]


READ = ["get", "list"]
WRITE = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resource(name: str, kind: str, namespaced: bool, short: list[str],
             verbs: list[str] = READ) -> JSON:
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced,
            "kind": kind, "verbs": verbs, "shortNames": short}


API_V1 = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [resource("namespaces", "Namespace", False, ["ns"]),
                  resource("nodes", "Node", False, ["no"], WRITE),
                  resource("pods", "Pod", True, ["po"]),
                  resource("services", "Service", True, ["svc"])],
}
#: storage.k8s.io/v1, for kubespray's remove-node role, which waits until no
#: volumeattachment names the node (there are none here: no volumes).
STORAGE_GROUP = "storage.k8s.io"
STORAGE_V1: JSON = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{STORAGE_GROUP}/v1",
    "resources": [resource("volumeattachments", "VolumeAttachment", False, [])],
}
API_GROUPS: JSON = {
    "kind": "APIGroupList", "apiVersion": "v1",
    "groups": [{"name": STORAGE_GROUP,
                "versions": [{"groupVersion": f"{STORAGE_GROUP}/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": f"{STORAGE_GROUP}/v1", "version": "v1"}}],
}
NODE_PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json",
                    "application/json-patch+json", "application/apply-patch+yaml")


def unschedulable_patch(content_type: str, patch: Any) -> bool | None:
    """The spec.unschedulable a node patch asks for: True (cordon), False (uncordon),
    None when the patch does not touch it. Raises ValueError for anything else, since the
    stand-in keeps no other node field."""
    if content_type.startswith("application/json-patch+json"):
        if not isinstance(patch, list):
            raise ValueError("a JSON patch is a list of operations")
        value: bool | None = None
        for op in patch:
            if not isinstance(op, dict) or op.get("path") != "/spec/unschedulable":
                raise ValueError(f"unsupported patch operation {op!r}")
            value = bool(op.get("value")) if op.get("op") in ("add", "replace") else False
        return value
    if not isinstance(patch, dict):
        raise ValueError("a merge patch is a JSON object")
    if set(patch) - {"spec", "metadata", "apiVersion", "kind"}:
        raise ValueError(f"unsupported fields {sorted(set(patch) - {'spec', 'metadata'})}")
    spec = patch.get("spec") or {}
    if not isinstance(spec, dict) or set(spec) - {"unschedulable"}:
        raise ValueError("only spec.unschedulable can be patched in the lab")
    return bool(spec["unschedulable"]) if "unschedulable" in spec else None


def field_selector(query: str) -> dict[str, str]:
    """fieldSelector=a=b,c==d as {a: b, c: d} (the equality forms kubectl sends)."""
    selector = parse_qs(query).get("fieldSelector", [""])[0]
    pairs = [p.replace("==", "=").split("=", 1) for p in selector.split(",") if p]
    return {k: v for k, v in pairs}


def status(code: int, reason: str, message: str) -> JSON:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    server: APIServer
    protocol_version = "HTTP/1.1"
    server_version = "lab-apiserver"

    def identity(self) -> tuple[str, list[str]]:
        """Common name and organizations of the client certificate."""
        assert isinstance(self.connection, ssl.SSLSocket)
        cert: dict[str, Any] = dict(self.connection.getpeercert() or {})
        attrs: list[tuple[str, str]] = [tuple(a) for rdn in cert.get("subject", ()) for a in rdn]
        cn = next((v for k, v in attrs if k == "commonName"), "")
        return cn, [v for k, v in attrs if k == "organizationName"]

    def send_json(self, code: int, body: JSON) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        if not (len(args) > 1 and str(args[1]).startswith("2")):
            sys.stderr.write(f"{rfc3339(time.time())} {self.address_string()} {format % args}\n")

    def wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def table(self, columns: list[JSON], rows: list[tuple[list[str], JSON]]) -> JSON:
        include = parse_qs(urlsplit(self.path).query).get("includeObject", ["Metadata"])[0]
        out_rows = []
        for cells, obj in rows:
            row: JSON = {"cells": cells}
            if include == "Object":
                row["object"] = obj
            elif include != "None":
                row["object"] = {"kind": "PartialObjectMetadata",
                                 "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
            out_rows.append(row)
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(self.server.registry.counter)},
                "columnDefinitions": columns, "rows": out_rows}

    def items(self, kind: str, items: list[JSON], api_version: str = "v1") -> JSON:
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self.server.registry.counter)},
                "items": items}

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        reg, srv = self.server.registry, self.server
        if path in ("/healthz", "/livez", "/readyz"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(data)
        elif path == "/version":
            major, _, rest = srv.version.lstrip("v").partition(".")
            minor = rest.partition(".")[0]
            self.send_json(200, {"major": major, "minor": minor, "gitVersion": srv.version,
                                 "gitCommit": "0" * 40, "gitTreeState": "clean",
                                 "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
                                 "compiler": "gc", "platform": "linux/amd64"})
        elif path == "/api":
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                 "serverAddressByClientCIDRs": [
                                     {"clientCIDR": "0.0.0.0/0", "serverAddress": srv.advertise}]})
        elif path == "/apis":
            self.send_json(200, API_GROUPS)
        elif path == f"/apis/{STORAGE_GROUP}":
            self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1",
                                 **API_GROUPS["groups"][0]})
        elif path == f"/apis/{STORAGE_GROUP}/v1":
            self.send_json(200, STORAGE_V1)
        elif path == f"/apis/{STORAGE_GROUP}/v1/volumeattachments":
            self.send_json(200, self.items("VolumeAttachment", [], f"{STORAGE_GROUP}/v1"))
        elif path == "/api/v1":
            self.send_json(200, API_V1)
        elif path == "/api/v1/pods" or (
                path.startswith("/api/v1/namespaces/") and path.endswith("/pods")):
            self.send_json(200, self.table(POD_COLUMNS, []) if self.wants_table()
                           else self.items("Pod", []))
        elif path == "/api/v1/nodes":
            wanted = field_selector(urlsplit(self.path).query).get("metadata.name")
            recs = [r for r in reg.all() if wanted is None or r.name == wanted]
            objs = [reg.node(r) for r in recs]
            if self.wants_table():
                rows = [(reg.node_row(r, o), o) for r, o in zip(recs, objs, strict=True)]
                self.send_json(200, self.table(NODE_COLUMNS, rows))
            else:
                self.send_json(200, self.items("Node", objs))
        elif path.startswith(NODE_RE_PREFIX) and "/" not in path[len(NODE_RE_PREFIX):]:
            name = path[len(NODE_RE_PREFIX):]
            rec = reg.get(name)
            if rec is None:
                self.send_json(404, status(404, "NotFound", f'nodes "{name}" not found'))
            elif self.wants_table():
                obj = reg.node(rec)
                self.send_json(200, self.table(NODE_COLUMNS, [(reg.node_row(rec, obj), obj)]))
            else:
                self.send_json(200, reg.node(rec))
        elif path == "/api/v1/services" or (
                path.startswith("/api/v1/namespaces/") and path.endswith("/services")):
            empty: list[tuple[list[str], JSON]] = []
            self.send_json(200, self.table(SERVICE_COLUMNS, empty) if self.wants_table()
                           else self.items("Service", []))
        elif path == "/api/v1/namespaces":
            objs = [{"kind": "Namespace", "apiVersion": "v1",
                     "metadata": {"name": n, "creationTimestamp": rfc3339(srv.started)},
                     "status": {"phase": "Active"}} for n in NAMESPACES]
            age = human_age(time.time() - srv.started)
            self.send_json(200, self.table(NAMESPACE_COLUMNS, [
                ([o["metadata"]["name"], "Active", age], o) for o in objs])
                if self.wants_table() else self.items("Namespace", objs))
        else:
            self.send_json(404, status(404, "NotFound", "the server could not find the "
                                       "requested resource"))

    def do_PUT(self) -> None:
        path = urlsplit(self.path).path
        body = self.body()
        name = path[len(HEARTBEAT_PREFIX):] if path.startswith(HEARTBEAT_PREFIX) else ""
        if not name or "/" in name:
            return self.send_json(404, status(404, "NotFound", f"no such path {path}"))
        cn, orgs = self.identity()
        if not (("system:nodes" in orgs and cn == f"system:node:{name}")
                or "system:masters" in orgs):
            return self.send_json(403, status(403, "Forbidden",
                                              f'User "{cn}" cannot update node "{name}"'))
        try:
            info = json.loads(body or b"{}")
            if not isinstance(info, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as e:
            return self.send_json(400, status(400, "BadRequest", str(e)))
        created = self.server.registry.heartbeat(name, info)
        if created:
            sys.stderr.write(f"{rfc3339(time.time())} registered node {name}\n")
        self.send_json(201 if created else 200,
                       {"name": name, "registered": created,
                        "graceSeconds": self.server.registry.grace})

    def node_name(self) -> str:
        """The node a /api/v1/nodes/<name> request is about, or "" for any other path."""
        path = urlsplit(self.path).path.rstrip("/")
        name = path[len(NODE_RE_PREFIX):] if path.startswith(NODE_RE_PREFIX) else ""
        return "" if "/" in name else name

    def admin(self, verb: str, name: str) -> bool:
        """Only cluster admins change nodes here (kubespray's kubectl uses admin.conf)."""
        cn, orgs = self.identity()
        if "system:masters" in orgs:
            return True
        self.send_json(403, status(403, "Forbidden", f'nodes "{name}" is forbidden: User '
                                   f'"{cn}" cannot {verb} resource "nodes" in API group ""'))
        return False

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_PATCH(self) -> None:
        """kubectl cordon / uncordon / drain: spec.unschedulable."""
        name, data = self.node_name(), self.body()
        if not name:
            return self.send_json(405, status(405, "MethodNotAllowed",
                                              "only nodes can be patched in the lab"))
        if not self.admin("patch", name):
            return None
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith(NODE_PATCH_TYPES):
            return self.send_json(415, status(415, "UnsupportedMediaType",
                                              f"the body of the request was in an unknown "
                                              f"format - accepted media types include: "
                                              f"{', '.join(NODE_PATCH_TYPES)}"))
        try:
            value = unschedulable_patch(ctype, json.loads(data or b"{}"))
        except ValueError as e:
            return self.send_json(422, status(422, "Invalid", f"lab: {e}"))
        reg = self.server.registry
        rec = reg.get(name) if value is None else reg.set_unschedulable(name, value)
        if rec is None:
            return self.send_json(404, status(404, "NotFound", f'nodes "{name}" not found'))
        self.send_json(200, reg.node(rec))

    def do_DELETE(self) -> None:
        """kubectl delete node (kubespray's remove-node/post-remove)."""
        name = self.node_name()
        self.body()
        if not name:
            return self.send_json(405, status(405, "MethodNotAllowed",
                                              "only nodes can be deleted in the lab"))
        if not self.admin("delete", name):
            return None
        reg = self.server.registry
        rec = reg.get(name)
        obj = reg.node(rec) if rec is not None else None
        if rec is None or reg.delete(name) is None or obj is None:
            return self.send_json(404, status(404, "NotFound", f'nodes "{name}" not found'))
        self.send_json(200, obj)

    def do_POST(self) -> None:
        self.body()
        self.send_json(405, status(405, "MethodNotAllowed", "the lab API server creates "
                                   "nothing: nodes register through their agent"))


class APIServer(ThreadingHTTPServer):
    """ThreadingHTTPServer doing the TLS handshake in the request thread."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], context: ssl.SSLContext, registry: Registry,
                 advertise: str, version: str) -> None:
        super().__init__(addr, Handler)
        self.context, self.registry = context, registry
        self.advertise, self.version, self.started = advertise, version, time.time()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write(f"{rfc3339(time.time())} rejected {client_address[0]}: {e}\n")
            return
        try:
            Handler(tls, client_address, self)
        except OSError:
            pass
        finally:
            tls.close()


def tls_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    return ctx


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="lab stand-in for kube-apiserver")
    p.add_argument("--bind", default="0.0.0.0")  # noqa: S104
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--grace-seconds", type=float, default=8.0)
    p.add_argument("--advertise", default="", help="host:port shown in /api")
    p.add_argument("--version", default=VERSION, help="gitVersion served by /version")
    p.add_argument("--name", default=socket.gethostname(), help="this control plane's name")
    p.add_argument("--state", default="", help="JSON file keeping the nodes across restarts")
    p.add_argument("--events", default="", help="append node transitions here (JSON lines)")
    a = p.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = APIServer((a.bind, a.port), tls_context(a.cert, a.key, a.ca),
                       Registry(a.grace_seconds, a.state, a.events), a.advertise, a.version)
    host, port = server.server_address[:2]
    server.advertise = server.advertise or f"{host!s}:{port}"
    sys.stderr.write(f"{rfc3339(time.time())} {a.name}: serving on {host!s}:{port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
