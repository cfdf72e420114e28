"""Kubeconfig documents as data: parse, check, point at a server, rename, merge, dump.

kubespray's ``/etc/kubernetes/admin.conf`` is the credential handed to the operator, but as
written on a control-plane node it is wrong anywhere else: its ``server:`` is
``https://127.0.0.1:6443`` up to kubespray v2.30 and the node's own address from v2.31, and
its names (``cluster.local``, ``kubernetes-admin``) are the same for every cluster, so two
clusters collide in one file. Everything here works on the parsed YAML, never on the text
(a ``sed`` on ``server:`` silently misses an IPv6 or a differently indented file), and is
pure, so captured files are the unit tests and the same functions serve the bastion's copy
and the operator's own ``~/.kube/config``.

The file is shared with other users' entries, so it is read and written round-trip
(ruamel.yaml): their comments, quoting, flow style and key order come back as they were,
and only our entries change. kubectl itself drops comments on every write; we need not.
Entries we add are written as kubectl writes them (block style, keys sorted).

Every function returns a new document; the caller's dictionaries are never modified.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import ipaddress
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from kubebastion.errors import KubeconfigError

Kubeconfig = dict[str, Any]
"""A parsed kubeconfig: the YAML mapping, with ``clusters``/``users``/``contexts`` lists."""

# (list key, key of the mapping inside each entry)
_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))
_STRING_FIELDS = {
    "cluster": ("server", "tls-server-name", "certificate-authority-data"),
    "user": ("client-certificate-data", "client-key-data", "token"),
    "context": ("cluster", "user", "namespace"),
}


class ContextRefs(NamedTuple):
    """A context's name and the cluster and user entries it points at."""

    context: str
    cluster: str
    user: str


def empty_kubeconfig() -> Kubeconfig:
    """What a missing ``~/.kube/config`` means: a valid Config with nothing in it."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [],
        "users": [],
        "contexts": [],
    }


def parse_kubeconfig(text: str, source: str) -> Kubeconfig:
    """Parse and check a kubeconfig; ``source`` (a path, ``host:path``) names it in errors.

    Empty text (an absent or empty file) is an empty Config, so "merge into the operator's
    kubeconfig" needs no special case for a first run.
    """
    try:
        loaded = _round_trip().load(text)
    except YAMLError as exc:
        raise KubeconfigError(f"{source}: not valid YAML: {_describe_yaml_error(exc)}") from exc
    if loaded is None:
        return empty_kubeconfig()
    return validate_kubeconfig(loaded, source)


def validate_kubeconfig(config: Any, source: str) -> Kubeconfig:
    """Check the shape kubectl needs and return a normalised deep copy.

    Normalised: a missing ``apiVersion``/``kind`` becomes ``v1``/``Config`` (client-go
    defaults them too), and a missing or null ``clusters``/``users``/``contexts`` or entry
    body becomes empty, so later code can index without guarding every key. Duplicate names
    are refused, as kubectl refuses them. All problems are reported at once.
    """
    if not isinstance(config, dict):
        raise KubeconfigError(
            f"{source}: not a kubeconfig: the top level is {_kind_of(config)}, not a mapping"
        )
    result: Kubeconfig = copy.deepcopy(config)
    problems: list[str] = []
    for key, expected in (("apiVersion", "v1"), ("kind", "Config")):
        value = result.setdefault(key, expected)
        if value != expected:
            problems.append(f"{key} is {value!r}, expected {expected!r}")
    for section, body_key in _SECTIONS:
        entries = result.get(section)
        if entries is None:
            result[section] = entries = []
        if not isinstance(entries, list):
            problems.append(f"{section} is {_kind_of(entries)}, not a list")
            continue
        problems.extend(_entry_problems(section, body_key, entries))
    current = result.get("current-context")
    if current is None and "current-context" in result:
        result["current-context"] = ""
    elif current is not None and not isinstance(current, str):
        problems.append(f"current-context is {_kind_of(current)}, not a string")
    for key, kind, kind_name in (
        ("preferences", dict, "a mapping"),
        ("extensions", list, "a list"),
    ):
        if result.get(key) is not None and not isinstance(result[key], kind):
            problems.append(f"{key} is {_kind_of(result[key])}, not {kind_name}")
    if problems:
        raise KubeconfigError(f"{source}: invalid kubeconfig: " + "; ".join(problems))
    return result


def _entry_problems(section: str, body_key: str, entries: list[Any]) -> list[str]:
    """Problems of one named list; fills null bodies with ``{}`` in place (on our copy)."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{section}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} is {_kind_of(entry)}, not a mapping")
            continue
        name = entry.get("name")
        if name is None or name == "":
            problems.append(f"{where} has no name")
        elif not isinstance(name, str):
            problems.append(f"{where}.name is {_kind_of(name)}, not a string")
        else:
            where = f"{where} ({name!r})"
            if name in seen:
                problems.append(f"{where}: two {section} are named {name!r}")
            seen.add(name)
        if body_key not in entry:
            problems.append(f"{where} has no {body_key!r} mapping")
            continue
        if entry[body_key] is None:
            entry[body_key] = {}
        body = entry[body_key]
        if not isinstance(body, dict):
            problems.append(f"{where}.{body_key} is {_kind_of(body)}, not a mapping")
            continue
        for field in _STRING_FIELDS[body_key]:
            if field in body and not isinstance(body[field], str):
                problems.append(
                    f"{where}.{body_key}.{field} is {_kind_of(body[field])}, not a string"
                )
    return problems


def rewrite_server(
    config: Kubeconfig, server_url: str, tls_server_name: str | None = None
) -> Kubeconfig:
    """Point every cluster at ``server_url``, whatever address it held before.

    ``tls_server_name`` is for an address that is not in the API certificate's SANs (a NAT
    or port-forward on the bastion): the client then verifies the certificate against that
    name instead. Without it, a stale ``tls-server-name`` is removed, so it never outlives
    the address it was written for.
    """
    server_address(server_url)  # refuse a URL kubectl could not use, before writing it
    result = validate_kubeconfig(config, "kubeconfig")
    if not result["clusters"]:
        raise KubeconfigError("kubeconfig has no clusters: no server to rewrite")
    for entry in result["clusters"]:
        cluster = entry["cluster"]
        cluster["server"] = server_url
        if tls_server_name:
            cluster["tls-server-name"] = tls_server_name
        else:
            cluster.pop("tls-server-name", None)
    return result


def rename_entries(config: Kubeconfig, name: str) -> Kubeconfig:
    """Reduce to one cluster, one user and one context, all called ``name``.

    kubespray names them ``cluster.local``, ``kubernetes-admin`` and
    ``kubernetes-admin@cluster.local`` on every cluster, so two clusters merged into one
    file would overwrite each other. The entries kept are those of the current context (or
    of the only context); the new context points at the renamed cluster and user and keeps
    its other fields (a namespace).
    """
    if not isinstance(name, str) or not name.strip():
        raise KubeconfigError(f"cannot rename kubeconfig entries to {name!r}: empty name")
    source = validate_kubeconfig(config, "kubeconfig")
    refs = resolve_context(source)
    context = copy.deepcopy(_find(source, "contexts", refs.context)["context"])
    context.update(cluster=name, user=name)
    result = {k: v for k, v in source.items() if k not in ("clusters", "users", "contexts")}
    cluster = _find(source, "clusters", refs.cluster)["cluster"]
    user = _find(source, "users", refs.user)["user"]
    result["clusters"] = [{"name": name, "cluster": cluster}]
    result["users"] = [{"name": name, "user": user}]
    result["contexts"] = [{"name": name, "context": context}]
    result["current-context"] = name
    return result


def merge_kubeconfig(existing: Kubeconfig, incoming: Kubeconfig, switch: bool) -> Kubeconfig:
    """Merge ``incoming`` into ``existing``; incoming wins for every name it defines.

    A same-named cluster, user or context is *replaced*, in its old position: after a
    cluster is rebuilt, its old CA and client certificate must not survive (k3sup's
    ``--merge`` keeps them and the new credentials never take effect: k3sup issues #95,
    #316). Every other entry, ``preferences`` and ``extensions`` stay as they were, in
    order. Merging the same incoming document twice gives the same result as once.

    ``current-context`` becomes incoming's context when ``switch`` is true or when
    ``existing`` had none; otherwise the operator's choice stands.
    """
    result = validate_kubeconfig(existing, "existing kubeconfig")
    new = validate_kubeconfig(incoming, "incoming kubeconfig")
    for section, _ in _SECTIONS:
        entries: list[dict[str, Any]] = result[section]
        position = {entry["name"]: index for index, entry in enumerate(entries)}
        for entry in new[section]:
            if entry["name"] in position:
                index = position[entry["name"]]
                entries[index] = _overwrite(entries[index], entry)
            else:
                position[entry["name"]] = len(entries)
                entries.append(entry)
    incoming_context = new.get("current-context") or (
        new["contexts"][0]["name"] if len(new["contexts"]) == 1 else ""
    )
    if incoming_context and (switch or not result.get("current-context")):
        result["current-context"] = incoming_context
    return result


def remove_context(config: Kubeconfig, name: str) -> Kubeconfig:
    """``config`` without the context ``name`` and the cluster and user entries it points
    at (unless another context still uses them): what ``invoke reset`` leaves of a file
    that ``merge_kubeconfig`` added a cluster to. Every other entry stays as it was, in
    order, with its comments; ``current-context`` is emptied only when it was ``name``.
    A file without that context comes back equal."""
    result = validate_kubeconfig(config, "kubeconfig")
    ours = [e for e in result["contexts"] if e["name"] == name]
    if not ours:
        return result
    refs = ours[0].get("context") or {}
    kept = [e for e in result["contexts"] if e["name"] != name]
    still_used = {(section, str((e.get("context") or {}).get(key, "")))
                  for e in kept for section, key in (("clusters", "cluster"), ("users", "user"))}
    for section, key in (("clusters", "cluster"), ("users", "user")):
        target = str(refs.get(key, ""))
        if (section, target) not in still_used:
            _drop(result[section], target)
    _drop(result["contexts"], name)
    if result.get("current-context") == name:
        result["current-context"] = ""
    return result


def _drop(entries: list[Any], name: str) -> None:
    """Remove the named entries in place (a ruamel list keeps its other items' comments)."""
    for index in reversed(range(len(entries))):
        if entries[index].get("name") == name:
            del entries[index]


def _overwrite(old: Any, new: Any) -> Any:
    """``new``'s content in ``old``'s containers: a comment the file attaches to a key we
    keep (the one above the next entry hangs on the last key of this one) stays."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            old[key] = _overwrite(old[key], value) if key in old else value
        return old
    return new


def dump_kubeconfig(config: Kubeconfig) -> str:
    """The document as YAML: what was read from a file comes back as it was (comments,
    quoting, flow style, key order); what we added is block style with keys sorted, as
    ``kubectl config view --raw`` writes it, so a kubeconfig made from scratch is
    independent of the order it was built in and "has the file changed?" is a plain
    string comparison.
    """
    stream = io.StringIO()
    _round_trip().dump(_as_written(copy.deepcopy(config)), stream)
    return stream.getvalue()


def _round_trip() -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 2**31 - 1  # never fold a line: base64 data stays on one line, like kubectl's
    rt.default_flow_style = False
    rt.indent(mapping=2, sequence=2, offset=0)  # kubectl's layout: "- name:" under "users:"
    return rt


def _as_written(value: Any) -> Any:
    """Our values in kubectl's form: plain mappings sorted, and a string that YAML 1.1
    (kubectl's parser) would read as something else quoted (``'yes'``, ``'0x1f'``). What
    came from a file (ruamel's own types) is kept with its layout; its children may be
    ours."""
    if isinstance(value, CommentedMap):
        for key in value:
            value[key] = _as_written(value[key])
        return value
    if isinstance(value, dict):
        return CommentedMap((k, _as_written(value[k])) for k in sorted(value))
    if isinstance(value, CommentedSeq):
        for index, item in enumerate(value):  # by index: a slice would drop the comments
            value[index] = _as_written(item)
        return value
    if isinstance(value, list):
        return CommentedSeq(_as_written(item) for item in value)
    if type(value) is str and _yaml11_tag(value) != "tag:yaml.org,2002:str":
        return SingleQuotedScalarString(value)
    return value


def _yaml11_tag(text: str) -> str:
    """What PyYAML (YAML 1.1, like kubectl's parser) reads ``text`` as, written bare."""
    tag: str = yaml.resolver.Resolver().resolve(  # type: ignore[no-untyped-call]
        yaml.ScalarNode, text, (True, False))
    return tag


def server_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``https://`` server URL; IPv6 comes back without brackets.

    This is what a TCP probe or a SAN check needs; the port defaults to 443 as for any
    HTTPS URL.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise KubeconfigError(
            f"server URL {url!r} is unusable ({exc}); write it as https://HOST:PORT, "
            "with an IPv6 address in brackets: https://[2001:db8::1]:6443"
        ) from exc
    if parts.scheme != "https":
        raise KubeconfigError(f"server URL {url!r} is not https://: the API server only speaks TLS")
    if not host:
        raise KubeconfigError(f"server URL {url!r} has no host")
    return host, port if port is not None else 443


def format_server_url(host: str, port: int = 6443) -> str:
    """The ``server:`` URL for ``host``, bracketing an IPv6 address as URLs require."""
    if not host:
        raise KubeconfigError("cannot build a server URL without a host")
    try:
        is_ipv6 = ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        is_ipv6 = False
    return f"https://[{host.strip('[]')}]:{port}" if is_ipv6 else f"https://{host}:{port}"


def resolve_context(config: Kubeconfig, context_name: str | None = None) -> ContextRefs:
    """The cluster and user names behind ``context_name`` (default: the current context).

    Without a current context, a file with exactly one context is unambiguous; anything
    else is an error rather than a guess.
    """
    contexts: list[dict[str, Any]] = config.get("contexts") or []
    name = context_name or config.get("current-context") or ""
    if not name:
        if len(contexts) != 1:
            raise KubeconfigError(
                f"kubeconfig has {len(contexts)} contexts and no current-context: "
                "cannot tell which one to use"
            )
        name = contexts[0]["name"]
    body = _find(config, "contexts", name)["context"]
    cluster, user = body.get("cluster"), body.get("user")
    if not cluster or not user:
        raise KubeconfigError(f"context {name!r} does not name both a cluster and a user")
    _find(config, "clusters", cluster)
    _find(config, "users", user)
    return ContextRefs(context=name, cluster=cluster, user=user)


def kubeconfig_ca_pem(config: Kubeconfig, cluster_name: str) -> bytes:
    """The cluster's CA certificate (PEM), to verify the API server's TLS ourselves."""
    cluster = _find(config, "clusters", cluster_name)["cluster"]
    return _embedded_pem(cluster, "certificate-authority", f"cluster {cluster_name!r}")


def kubeconfig_client_cert_pem(config: Kubeconfig, user_name: str) -> bytes:
    """The user's client certificate (PEM), for a TLS client-auth probe of the API."""
    user = _find(config, "users", user_name)["user"]
    return _embedded_pem(user, "client-certificate", f"user {user_name!r}")


def kubeconfig_client_key_pem(config: Kubeconfig, user_name: str) -> bytes:
    """The user's client private key (PEM); secret, so never log what this returns."""
    user = _find(config, "users", user_name)["user"]
    return _embedded_pem(user, "client-key", f"user {user_name!r}")


def _embedded_pem(body: dict[str, Any], field: str, owner: str) -> bytes:
    """Decode ``<field>-data``; a file reference instead is an error, not a silent read.

    admin.conf always embeds its data; a path would name a file on whichever machine the
    kubeconfig was written on, which is not the one we are running on.
    """
    data = body.get(f"{field}-data")
    if not data:
        if body.get(field):
            raise KubeconfigError(
                f"{owner} refers to the file {body[field]!r} for {field} instead of "
                f"embedding it in {field}-data"
            )
        raise KubeconfigError(f"{owner} has no {field}-data")
    try:
        decoded = base64.b64decode("".join(str(data).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KubeconfigError(f"{owner}: {field}-data is not valid base64 ({exc})") from exc
    if b"-----BEGIN " not in decoded:
        raise KubeconfigError(f"{owner}: {field}-data does not decode to PEM")
    return decoded


def _find(config: Kubeconfig, section: str, name: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    names = ", ".join(repr(e.get("name")) for e in config.get(section) or []) or "none"
    raise KubeconfigError(f"kubeconfig has no {section[:-1]} named {name!r} (has: {names})")


def _describe_yaml_error(exc: YAMLError) -> str:
    """One line with the position, instead of the parser's multi-line ``<unicode string>``."""
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or "syntax error"
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(exc).replace("\n", " ")


_KIND_NAMES = (
    (type(None), "empty"),
    (dict, "a mapping"),
    (list, "a list"),
    (str, "a string"),
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
)


def _kind_of(value: Any) -> str:
    """``a mapping``, ``a list``...: YAML words, since the reader is editing YAML."""
    return next((name for kind, name in _KIND_NAMES if isinstance(value, kind)),
                f"a {type(value).__name__}")
