"""``invoke`` in this checkout: kubebastion's tasks (``kubebastion.cli``, the same ones the
``kubebastion`` command runs) plus the built-in lab's, which live only here.
``invoke --list`` is the menu."""

from __future__ import annotations

import os

from invoke.collection import Collection
from invoke.context import Context

from kubebastion.cli import collection
from kubebastion.options import NodeCount, PositiveCount, task
from kubebastion.ui.console import console, print_json


@task(help={"control_planes": "number of control-plane nodes",
            "workers": "number of worker nodes", "user": "login user on the lab hosts",
            "sudo_password": "require this sudo password (default: passwordless sudo)",
            "single_nic": "one bastion NIC, on the private network, which also reaches "
                          "the internet (a cloud bastion with a 1:1 NAT public address)"})
def lab_up(c: Context, control_planes: PositiveCount = 1, workers: NodeCount = 3,
           user: str = "kblab", sudo_password: str = "", single_nic: bool = False) -> None:
    """Bring up the lab: bastion, control planes, workers and an emulated internet."""
    import lab

    state = lab.up(control_planes=control_planes, workers=workers, user=user,
                   sudo_password=sudo_password or None, single_nic=single_nic)
    console.print(f"lab up: {state.nornir_config}")
    console.print(f"next: invoke check --config {os.path.relpath(state.nornir_config)}")


@task()
def lab_down(c: Context) -> None:
    """Remove the lab: namespaces, links, processes, user."""
    import lab

    lab.down()
    console.print("lab down")


@task(help={"json": "machine-readable output"})
def lab_status(c: Context, json: bool = False) -> None:
    """Show the lab's hosts and whether each sshd runs."""
    import lab

    status = lab.status()
    if json:
        print_json(status)
    else:
        console.print(status)


def _collection() -> Collection:
    root = collection()
    lab_tasks = Collection("lab")
    lab_tasks.add_task(lab_up, "up")
    lab_tasks.add_task(lab_down, "down")
    lab_tasks.add_task(lab_status, "status")
    root.add_collection(lab_tasks)
    return root


namespace = _collection()
