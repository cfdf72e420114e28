"""Day two: add nodes, remove a node, upgrade Kubernetes, reset, each through kubespray's
own playbook for it (``docs/operations/nodes.md``, ``upgrades.md`` of kubespray v2.31.0).

Pure planning (which nodes are new, what kubespray refuses or does not support, version
rules, the playbook command lines) lives in ``nodes``, ``versions``, ``playbooks`` and
``reset``; the Nornir tasks that talk to hosts in ``task``; the sequences behind the
commands (``invoke remove-node``, ``upgrade``, ``reset``) in ``commands``.
"""
