"""The Ready verification's rows, from a node list."""

from __future__ import annotations

from kubebastion.kubeconfig.verify import node_rows


def test_node_rows_from_a_node_list() -> None:
    node_list = {"items": [
        {"metadata": {"name": "k8s-m0",
                      "labels": {"node-role.kubernetes.io/control-plane": ""}},
         "status": {"conditions": [{"type": "Ready", "status": "True"}],
                    "nodeInfo": {"kubeletVersion": "v1.32.0"}}},
        {"metadata": {"name": "k8s-w0"},
         "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
    ]}
    rows = node_rows(node_list)
    assert [(r.name, r.status, r.roles, r.version) for r in rows] == [
        ("k8s-m0", "Ready", "control-plane", "v1.32.0"), ("k8s-w0", "NotReady", "<none>", "")]
