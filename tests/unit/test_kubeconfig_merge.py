"""kubeconfig transforms on captured admin.conf files and operator kubeconfigs.

Case files live in ``cases/kubeconfig/``: ``admin_conf_*`` are admin.conf as kubespray
writes them, ``existing_*`` are operator kubeconfigs, each ``case_*`` names its inputs and
the exact expected output (``expected_*``), ``invalid_*`` are files that must be refused.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from kubebastion.errors import KubeBastionError, KubeconfigError
from kubebastion.kubeconfig.merge import (
    ContextRefs,
    Kubeconfig,
    dump_kubeconfig,
    empty_kubeconfig,
    format_server_url,
    kubeconfig_ca_pem,
    kubeconfig_client_cert_pem,
    kubeconfig_client_key_pem,
    merge_kubeconfig,
    parse_kubeconfig,
    remove_context,
    rename_entries,
    resolve_context,
    rewrite_server,
    server_address,
    validate_kubeconfig,
)

CASES = Path(__file__).parent / "cases" / "kubeconfig"
CASE_FILES = sorted(CASES.glob("case_*.yaml"))
ADMIN_CONFS = sorted(CASES.glob("admin_conf_*.yaml"))


def load(name: str) -> Kubeconfig:
    return parse_kubeconfig((CASES / name).read_text(), name)


def incoming_for(spec: dict[str, Any]) -> Kubeconfig:
    """What the fetch step does to admin.conf before merging it anywhere."""
    renamed = rename_entries(load(spec["admin_conf"]), spec["name"])
    return rewrite_server(renamed, spec["server"], spec["tls_server_name"])


def existing_for(spec: dict[str, Any]) -> Kubeconfig:
    return load(spec["existing"]) if spec["existing"] else parse_kubeconfig("", "absent")


# --- the end-to-end cases: admin.conf -> rename -> rewrite -> merge -> dump ---------------


@pytest.mark.parametrize("case", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case_output_is_exactly_the_expected_file(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    merged = merge_kubeconfig(existing_for(spec), incoming_for(spec), spec["switch"])
    assert dump_kubeconfig(merged) == (CASES / spec["expected"]).read_text()


@pytest.mark.parametrize("case", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case_merging_twice_equals_merging_once(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    incoming = incoming_for(spec)
    once = merge_kubeconfig(existing_for(spec), incoming, spec["switch"])
    twice = merge_kubeconfig(once, incoming, spec["switch"])
    assert twice == once
    # and through the file, as a second run would see it
    reread = parse_kubeconfig(dump_kubeconfig(once), "merged")
    assert dump_kubeconfig(merge_kubeconfig(reread, incoming, spec["switch"])) == (
        dump_kubeconfig(once)
    )


@pytest.mark.parametrize("case", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case_credentials_are_the_new_cluster_s(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    admin = load(spec["admin_conf"])
    merged = parse_kubeconfig((CASES / spec["expected"]).read_text(), spec["expected"])
    name = spec["name"]
    assert kubeconfig_ca_pem(merged, name) == kubeconfig_ca_pem(admin, "cluster.local")
    assert kubeconfig_client_cert_pem(merged, name) == kubeconfig_client_cert_pem(
        admin, "kubernetes-admin"
    )
    assert kubeconfig_client_key_pem(merged, name) == kubeconfig_client_key_pem(
        admin, "kubernetes-admin"
    )
    assert resolve_context(merged, name) == ContextRefs(name, name, name)


def test_merge_keeps_every_unrelated_entry_in_order() -> None:
    existing = load("existing_multi.yaml")
    merged = merge_kubeconfig(existing, incoming_for(_spec("case_v231_into_multi.yaml")), False)
    for section in ("clusters", "users", "contexts"):
        names = [e["name"] for e in merged[section]]
        old = [e["name"] for e in existing[section]]
        assert names[: len(old)] == old
        assert merged[section][: len(old)] == existing[section]
        assert names[len(old) :] == ["lab"]
    assert merged["preferences"] == {"colors": True}
    assert merged["extensions"] == existing["extensions"]
    assert merged["current-context"] == "prod-eu"


def test_merge_replaces_stale_entries_in_place() -> None:
    existing = load("existing_stale.yaml")
    incoming = incoming_for(_spec("case_v231_replaces_stale.yaml"))
    merged = merge_kubeconfig(existing, incoming, False)
    for section in ("clusters", "users", "contexts"):
        assert [e["name"] for e in merged[section]] == [e["name"] for e in existing[section]]
        assert [e for e in merged[section] if e["name"] == "lab"] == incoming[section]
    lab = merged["clusters"][0]["cluster"]
    assert "tls-server-name" not in lab
    assert kubeconfig_ca_pem(merged, "lab") != kubeconfig_ca_pem(existing, "lab")
    assert "namespace" not in merged["contexts"][1]["context"]


@pytest.mark.parametrize(
    ("existing_current", "switch", "expected"),
    [
        (None, False, "lab"),
        ("", False, "lab"),
        ("kind-dev", False, "kind-dev"),
        ("kind-dev", True, "lab"),
        (None, True, "lab"),
    ],
    ids=["absent-no-switch", "empty-no-switch", "set-no-switch", "set-switch", "absent-switch"],
)
def test_merge_current_context(existing_current: str | None, switch: bool, expected: str) -> None:
    existing = load("existing_stale.yaml")
    existing.pop("current-context")
    if existing_current is not None:
        existing["current-context"] = existing_current
    incoming = incoming_for(_spec("case_v231_replaces_stale.yaml"))
    assert merge_kubeconfig(existing, incoming, switch)["current-context"] == expected


def test_merge_takes_the_only_incoming_context_when_it_has_no_current_context() -> None:
    incoming = incoming_for(_spec("case_v230_into_empty.yaml"))
    del incoming["current-context"]
    assert merge_kubeconfig(empty_kubeconfig(), incoming, False)["current-context"] == "lab"


def test_merge_does_not_modify_its_arguments() -> None:
    existing = load("existing_stale.yaml")
    incoming = incoming_for(_spec("case_v231_replaces_stale.yaml"))
    before = copy.deepcopy((existing, incoming))
    merged = merge_kubeconfig(existing, incoming, True)
    merged["clusters"][0]["cluster"]["server"] = "https://changed.example.test"
    assert (existing, incoming) == before


# --- rewrite_server ------------------------------------------------------------------------


@pytest.mark.parametrize("admin_conf", ADMIN_CONFS, ids=[p.stem for p in ADMIN_CONFS])
@pytest.mark.parametrize(
    "server",
    ["https://198.18.0.2:6443", "https://[2001:db8::2]:6443", "https://lb.lab.example.test"],
    ids=["ipv4", "ipv6", "name"],
)
def test_rewrite_server_replaces_whatever_was_there(admin_conf: Path, server: str) -> None:
    config = load(admin_conf.name)
    original = copy.deepcopy(config)
    rewritten = rewrite_server(config, server)
    assert [c["cluster"]["server"] for c in rewritten["clusters"]] == [server]
    assert config == original
    assert dump_kubeconfig(rewritten).count(server) == 1


def test_rewrite_server_rewrites_every_cluster() -> None:
    rewritten = rewrite_server(load("existing_multi.yaml"), "https://198.18.0.2:6443")
    assert {c["cluster"]["server"] for c in rewritten["clusters"]} == {"https://198.18.0.2:6443"}


def test_rewrite_server_sets_then_removes_tls_server_name() -> None:
    config = load("admin_conf_v231.yaml")
    with_name = rewrite_server(config, "https://198.18.0.2:16443", "lab-api.example.test")
    assert with_name["clusters"][0]["cluster"]["tls-server-name"] == "lab-api.example.test"
    without = rewrite_server(with_name, "https://198.18.1.10:6443")
    assert "tls-server-name" not in without["clusters"][0]["cluster"]


@pytest.mark.parametrize(
    "server",
    ["http://198.18.0.2:6443", "198.18.0.2:6443", "https://2001:db8::2:6443", "https://:6443"],
    ids=["http", "no-scheme", "unbracketed-ipv6", "no-host"],
)
def test_rewrite_server_refuses_unusable_urls(server: str) -> None:
    with pytest.raises(KubeconfigError, match="server URL"):
        rewrite_server(load("admin_conf_v230.yaml"), server)


def test_rewrite_server_needs_a_cluster() -> None:
    with pytest.raises(KubeconfigError, match="no clusters"):
        rewrite_server(empty_kubeconfig(), "https://198.18.0.2:6443")


# --- rename_entries ------------------------------------------------------------------------


@pytest.mark.parametrize("admin_conf", ADMIN_CONFS, ids=[p.stem for p in ADMIN_CONFS])
def test_rename_kubespray_names(admin_conf: Path) -> None:
    config = load(admin_conf.name)
    renamed = rename_entries(config, "lab")
    assert renamed["clusters"] == [{"name": "lab", "cluster": config["clusters"][0]["cluster"]}]
    assert renamed["users"] == [{"name": "lab", "user": config["users"][0]["user"]}]
    assert renamed["contexts"] == [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}]
    assert renamed["current-context"] == "lab"
    assert "cluster.local" not in dump_kubeconfig(renamed)
    assert config["clusters"][0]["name"] == "cluster.local"


def test_rename_keeps_the_current_context_s_entries_and_namespace() -> None:
    renamed = rename_entries(load("existing_multi.yaml"), "prod")
    assert renamed["clusters"][0]["cluster"]["server"] == "https://api.prod-eu.example.test:443"
    assert "exec" in renamed["users"][0]["user"]
    assert renamed["contexts"][0]["context"] == {
        "cluster": "prod",
        "user": "prod",
        "namespace": "payments",
    }
    assert renamed["preferences"] == {"colors": True}


def test_rename_refuses_to_guess_between_contexts() -> None:
    config = load("existing_multi.yaml")
    del config["current-context"]
    with pytest.raises(KubeconfigError, match="2 contexts and no current-context"):
        rename_entries(config, "lab")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["contexts"][0]["context"].update(cluster="gone"), "no cluster named 'gone'"),
        (lambda c: c["contexts"][0]["context"].pop("user"), "does not name both"),
        (lambda c: c.update({"current-context": "other"}), "no context named 'other'"),
    ],
    ids=["dangling-cluster", "no-user", "unknown-current-context"],
)
def test_rename_refuses_broken_references(edit: Any, message: str) -> None:
    config = load("admin_conf_v230.yaml")
    edit(config)
    with pytest.raises(KubeconfigError, match=message):
        rename_entries(config, "lab")


def test_rename_refuses_an_empty_name() -> None:
    with pytest.raises(KubeconfigError, match="empty name"):
        rename_entries(load("admin_conf_v230.yaml"), " ")


# --- parse / validate ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n"], ids=["empty", "newline", "comment"])
def test_parse_empty_file_is_an_empty_config(text: str) -> None:
    config = parse_kubeconfig(text, "~/.kube/config")
    assert config == empty_kubeconfig()
    assert config["clusters"] == config["users"] == config["contexts"] == []


INVALID = [
    ("invalid_bad_yaml.yaml", ["not valid YAML", "line 7, column 1"]),
    ("invalid_not_mapping.yaml", ["not a kubeconfig", "a list, not a mapping"]),
    ("invalid_wrong_kind.yaml", ["kind is 'Pod', expected 'Config'"]),
    (
        "invalid_entries.yaml",
        [
            "clusters[0] has no name",
            "clusters[1] ('lab').cluster is a list, not a mapping",
            "users is a mapping, not a list",
            "two contexts are named 'lab'",
            "contexts[1] ('lab').context.namespace is an integer, not a string",
            "current-context is a list, not a string",
        ],
    ),
]


@pytest.mark.parametrize(("name", "fragments"), INVALID, ids=[n for n, _ in INVALID])
def test_parse_refuses_bad_files_naming_the_file(name: str, fragments: list[str]) -> None:
    source = str(CASES / name)
    with pytest.raises(KubeconfigError) as caught:
        parse_kubeconfig((CASES / name).read_text(), source)
    message = str(caught.value)
    assert message.startswith(f"{source}: ")
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert isinstance(caught.value, KubeBastionError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("apiVersion: v2\nkind: Config\n", "apiVersion is 'v2', expected 'v1'"),
        ("clusters:\n- name: a\n", "clusters[0] ('a') has no 'cluster' mapping"),
        ("users:\n- just-a-string\n", "users[0] is a string, not a mapping"),
        ("contexts:\n- name: 1\n  context: {}\n", "contexts[0].name is an integer"),
        ("preferences: [1]\n", "preferences is a list, not a mapping"),
        ("clusters:\n- name: a\n  cluster: {server: 6443}\n", "server is an integer"),
    ],
    ids=[
        "api-version",
        "no-body",
        "entry-not-mapping",
        "name-not-string",
        "preferences",
        "server-not-string",
    ],
)
def test_parse_refuses_bad_shapes(text: str, fragment: str) -> None:
    with pytest.raises(KubeconfigError, match=r"^bastion:/home/ops/\.kube/config: ") as caught:
        parse_kubeconfig(text, "bastion:/home/ops/.kube/config")
    assert fragment in str(caught.value)


def test_parse_normalises_what_kubectl_tolerates() -> None:
    config = parse_kubeconfig(
        "clusters:\n- name: a\n  cluster:\nusers: null\ncurrent-context: null\n", "f"
    )
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"
    assert config["clusters"] == [{"name": "a", "cluster": {}}]
    assert config["users"] == config["contexts"] == []
    assert config["current-context"] == ""


def test_validate_refuses_a_non_mapping() -> None:
    with pytest.raises(KubeconfigError, match="incoming: not a kubeconfig"):
        validate_kubeconfig(["x"], "incoming")


# --- dump ----------------------------------------------------------------------------------


def plain(config: Kubeconfig) -> Kubeconfig:
    """The document as plain data, as if built here rather than read from a file."""
    document: Kubeconfig = json.loads(json.dumps(config))
    return document


def test_dump_of_a_document_built_here_is_block_style_with_sorted_keys() -> None:
    existing = plain(load("existing_multi.yaml"))  # written by hand, keys in another order
    text = dump_kubeconfig(existing)
    assert dump_kubeconfig(parse_kubeconfig(text, "dumped")) == text
    assert text.splitlines()[:2] == ["apiVersion: v1", "clusters:"]
    assert "{" not in text.replace("preferences: {}", "")  # no flow mappings
    for line in text.splitlines():
        if "-data: " in line:
            base64.b64decode(line.split(": ", 1)[1], validate=True)  # never folded


def test_dump_of_a_reordered_document_built_here_is_identical() -> None:
    config = plain(load("expected_v230_into_empty.yaml"))
    shuffled = {key: config[key] for key in reversed(list(config))}
    assert dump_kubeconfig(shuffled) == (CASES / "expected_v230_into_empty.yaml").read_text()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("case", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_kubectl_reads_the_expected_file(case: Path) -> None:
    """An independent reader: kubectl itself loads what we write, with the same meaning."""
    spec = yaml.safe_load(case.read_text())
    shown = subprocess.run(
        ["kubectl", "config", "view", "--raw", "-o", "json"],
        env={"KUBECONFIG": str(CASES / spec["expected"]), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    seen = json.loads(shown.stdout)
    ours = load(spec["expected"])
    assert seen["current-context"] == ours["current-context"]
    for section in ("clusters", "users", "contexts"):
        assert sorted(e["name"] for e in seen[section]) == sorted(e["name"] for e in ours[section])
    lab = next(c["cluster"] for c in seen["clusters"] if c["name"] == spec["name"])
    assert lab["server"] == spec["server"]
    assert lab.get("tls-server-name") == spec["tls_server_name"]


# --- server addresses and embedded credentials ---------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://127.0.0.1:6443", ("127.0.0.1", 6443)),
        ("https://198.18.1.10:6443/", ("198.18.1.10", 6443)),
        ("https://[2001:db8::10]:6443", ("2001:db8::10", 6443)),
        ("https://[2001:db8::10]", ("2001:db8::10", 443)),
        ("https://LB.Lab.Example.test:16443", ("lb.lab.example.test", 16443)),
        ("https://rancher.example.test/k8s/clusters/c-1", ("rancher.example.test", 443)),
    ],
    ids=["loopback", "ipv4-slash", "ipv6", "ipv6-default-port", "name", "name-with-path"],
)
def test_server_address(url: str, expected: tuple[str, int]) -> None:
    assert server_address(url) == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://198.18.0.2:6443", "is not https://"),
        ("https://198.18.0.2:99999", "unusable"),
        ("https://2001:db8::10:6443", "IPv6 address in brackets"),
        ("https://[2001:db8::zz]:6443", "unusable"),
        ("https://", "has no host"),
    ],
    ids=["http", "port-out-of-range", "unbracketed-ipv6", "bad-ipv6", "no-host"],
)
def test_server_address_refuses(url: str, fragment: str) -> None:
    with pytest.raises(KubeconfigError) as caught:
        server_address(url)
    assert fragment in str(caught.value)
    assert repr(url) in str(caught.value) or fragment == "has no host"


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("198.18.0.2", 6443, "https://198.18.0.2:6443"),
        ("2001:db8::2", 6443, "https://[2001:db8::2]:6443"),
        ("[2001:db8::2]", 443, "https://[2001:db8::2]:443"),
        ("lb.lab.example.test", 16443, "https://lb.lab.example.test:16443"),
    ],
    ids=["ipv4", "ipv6", "ipv6-bracketed", "name"],
)
def test_format_server_url_round_trips(host: str, port: int, url: str) -> None:
    assert format_server_url(host, port) == url
    assert server_address(url) == (host.strip("[]"), port)


def test_embedded_pems_are_real_certificates() -> None:
    config = load("admin_conf_v231.yaml")
    ca = x509.load_pem_x509_certificate(kubeconfig_ca_pem(config, "cluster.local"))
    client = x509.load_pem_x509_certificate(kubeconfig_client_cert_pem(config, "kubernetes-admin"))
    assert client.issuer == ca.subject
    assert kubeconfig_client_key_pem(config, "kubernetes-admin").startswith(b"-----BEGIN ")


@pytest.mark.parametrize(
    ("cluster", "fragment"),
    [
        ({"server": "https://x"}, "has no certificate-authority-data"),
        ({"certificate-authority": "/etc/kubernetes/ssl/ca.crt"}, "refers to the file"),
        ({"certificate-authority-data": "not base64!"}, "not valid base64"),
        ({"certificate-authority-data": "aGVsbG8="}, "does not decode to PEM"),
    ],
    ids=["missing", "file-reference", "bad-base64", "not-pem"],
)
def test_ca_pem_errors(cluster: dict[str, str], fragment: str) -> None:
    config = {"clusters": [{"name": "lab", "cluster": cluster}]}
    with pytest.raises(KubeconfigError, match="cluster 'lab'") as caught:
        kubeconfig_ca_pem(config, "lab")
    assert fragment in str(caught.value)


def test_accessors_name_missing_entries() -> None:
    config = load("existing_multi.yaml")
    with pytest.raises(KubeconfigError, match=r"no user named 'lab' \(has: 'kind-dev', "):
        kubeconfig_client_cert_pem(config, "lab")
    with pytest.raises(KubeconfigError, match="user 'oidc@prod-eu' has no client-key-data"):
        kubeconfig_client_key_pem(config, "oidc@prod-eu")


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((CASES / name).read_text())
    return spec


@pytest.mark.parametrize("value", ["yes", "on", "0x1f", "1e3", "~"],
                         ids=["yes", "on", "hex", "float", "null"])
def test_values_yaml_1_1_would_misread_are_quoted(value: str) -> None:
    """kubectl's parser follows YAML 1.1: a context called ``on`` written bare would come
    back as a boolean there (ruamel, YAML 1.2, would not quote it by itself)."""
    config = empty_kubeconfig()
    config["contexts"] = [{"name": value, "context": {"cluster": value, "user": value}}]
    text = dump_kubeconfig(config)
    assert yaml.safe_load(text)["contexts"][0]["name"] == value
    assert f"name: '{value}'" in text


def test_an_unchanged_document_dumps_as_the_file_was() -> None:
    text = (CASES / "existing_commented.yaml").read_text()
    assert dump_kubeconfig(parse_kubeconfig(text, "existing_commented.yaml")) == text


# --- reset: our context leaves, everything else stays byte for byte -----------------------


def _has_context(config: Kubeconfig, name: str) -> bool:
    return any(entry["name"] == name for entry in config["contexts"])


#: Cases that added our context to a file without it and left its current context alone
#: (a switched current context cannot be given back: the file no longer says what it was).
ADDED_CASES = [p for p in CASE_FILES if (lambda s: s["existing"] and not s["switch"] and not
               _has_context(load(s["existing"]), s["name"]))(yaml.safe_load(p.read_text()))]


@pytest.mark.parametrize("case", ADDED_CASES, ids=[p.stem for p in ADDED_CASES])
def test_removing_the_merged_context_gives_back_the_file_byte_for_byte(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    merged = parse_kubeconfig((CASES / spec["expected"]).read_text(), spec["expected"])
    removed = remove_context(merged, spec["name"])
    assert dump_kubeconfig(removed) == (CASES / spec["existing"]).read_text()
    assert remove_context(removed, spec["name"]) == removed


def test_removing_a_context_keeps_entries_another_context_uses() -> None:
    config = parse_kubeconfig(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "shared", "cluster": {"server": "https://198.18.1.10:6443"}}],
        "users": [{"name": "shared", "user": {"token": "t"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "shared", "user": "shared"}},
                     {"name": "other", "context": {"cluster": "shared", "user": "shared"}}],
    }), "two contexts")
    removed = remove_context(config, "lab")
    assert [e["name"] for e in removed["contexts"]] == ["other"]
    assert [e["name"] for e in removed["clusters"]] == ["shared"]
    assert [e["name"] for e in removed["users"]] == ["shared"]
    assert removed["current-context"] == ""
