"""From a Nornir config file to a ready run: Nornir object, validated cluster, SSH wiring.

Everything here happens before any SSH, so a bad inventory costs nothing. What a run
needs later travels with it (``kubebastion.runstate``): nothing here is process-wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from nornir import InitNornir
from nornir.core import Nornir
from nornir.core.inventory import ConnectionOptions, Inventory

from kubebastion import nornir_log
from kubebastion.cluster import Cluster, RawHost, build_cluster
from kubebastion.errors import ConfigError
from kubebastion.inventory_files import FILE_OPTIONS, InventoryFiles, check_simple_inventory
from kubebastion.runstate import INVENTORY
from kubebastion.secrets import install_log_redaction
from kubebastion.ssh.connection import CONNECTION_NAME, pool_of
from kubebastion.ssh.settings import SSHSettings

#: What ``InitNornir`` accepts at the top of a config (``Config.from_dict``'s arguments).
_CONFIG_SECTIONS = ("inventory", "ssh", "logging", "core", "runner", "user_defined")


@dataclass
class Run:
    """What every task needs: the Nornir object and the cluster it describes. A context
    manager: ``with build_run(path) as run:`` closes the run's connections at the end."""

    nornir: Nornir
    cluster: Cluster
    config_path: Path

    def close(self) -> None:
        """Close every connection this run opened (only this run's: see ``runstate``)."""
        pool_of(self.nornir.config).close_all()
        self.nornir.close_connections(on_good=True, on_failed=True)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def load_config(config_path: Path) -> dict[str, Any]:
    """Read a Nornir config, resolving its relative paths (SimpleInventory's default file
    names too) against the file's folder: Nornir would resolve them against the current
    directory."""
    try:
        data = yaml.safe_load(config_path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"Nornir config {config_path} does not exist (use --config PATH)"
                          ) from None
    except IsADirectoryError:
        inside = config_path / "nornir_config.yaml"
        hint = f"--config {inside}" if inside.is_file() else "--config with the file"
        raise ConfigError(f"Nornir config {config_path} is a directory; use {hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Nornir config {config_path} is not valid YAML: "
                          f"{' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Nornir config {config_path} must be a mapping")
    unknown = [str(key) for key in data if key not in _CONFIG_SECTIONS]
    if unknown:
        raise ConfigError(
            f"{config_path} is not a Nornir config: unknown section(s) {', '.join(unknown)} "
            f"(a Nornir config has {', '.join(_CONFIG_SECTIONS)}); is it an inventory file? "
            f"use --config with the Nornir config that names it")
    base = config_path.resolve().parent
    inventory = data.setdefault("inventory", {})
    options = inventory.setdefault("options", {})
    simple = inventory.get("plugin", "SimpleInventory") == "SimpleInventory"
    for key, default in FILE_OPTIONS.items():
        if key in options or simple:
            options[key] = str(base / Path(str(options.get(key, default))).expanduser())
    if simple:
        check_simple_inventory(InventoryFiles(
            config_path, *(Path(options[key]) for key in FILE_OPTIONS)))
    logging = data.setdefault("logging", {})
    if logging.get("log_file"):
        logging["log_file"] = str(base / Path(str(logging["log_file"])).expanduser())
    return data


def raw_hosts(nornir: Nornir) -> list[RawHost]:
    hosts = []
    for name, host in nornir.inventory.hosts.items():
        groups = frozenset(g.name for g in host.extended_groups())
        hosts.append(RawHost(
            name=name, hostname=host.hostname, username=host.username, port=host.port,
            groups=groups, data=dict(host.items()),
        ))
    return hosts


def build_run(config_path: Path | str = "nornir_config.yaml", *, dry_run: bool = False,
              num_workers: int | None = None) -> Run:
    """Init Nornir, validate the cluster and wire SSH (jump host, settings) — no SSH yet."""
    config_path = Path(config_path)
    config = load_config(config_path)
    if num_workers is not None:
        config.setdefault("runner", {"plugin": "threaded"}).setdefault("options", {})[
            "num_workers"] = num_workers
    config["logging"] = nornir_log.configure(config["logging"])
    try:
        nornir = InitNornir(dry_run=dry_run, **config)
    except Exception as exc:
        raise ConfigError(f"cannot load the inventory from {config_path}: {exc}") from None
    cluster = prepare_nornir(nornir)
    return Run(nornir=nornir, cluster=cluster, config_path=config_path)


def prepare_nornir(nornir: Nornir) -> Cluster:
    """Validate a Nornir object built elsewhere (your own ``InitNornir``) and wire its SSH
    (jump host, host names) for kubebastion's tasks; returns the cluster they take. All
    of it is written into that Nornir object (its hosts' connection options, its run
    state), none of it into this process: prepare it before filtering it."""
    install_log_redaction()
    cluster = build_cluster(raw_hosts(nornir), dict(nornir.inventory.defaults.data))
    _wire_connections(nornir, cluster)
    # A step running on the bastion also reads a control plane: the whole inventory
    # stays reachable from every filtered copy (they share the config).
    nornir.config.user_defined[INVENTORY] = nornir.inventory
    return cluster


def full_inventory(nornir: Nornir) -> Inventory:
    """The unfiltered inventory of ``nornir``'s run (its own, if it was never prepared)."""
    inventory = nornir.config.user_defined.get(INVENTORY)
    return inventory if isinstance(inventory, Inventory) else nornir.inventory


def _wire_connections(nornir: Nornir, cluster: Cluster) -> None:
    """Give each host's fabric extras its name and, behind the bastion, the gateway."""
    bastion = nornir.inventory.hosts[cluster.bastion.name]
    for name, host in nornir.inventory.hosts.items():
        params = host.get_connection_parameters(CONNECTION_NAME)
        extras = dict(params.extras or {})
        SSHSettings.from_extras(extras)  # typos in extras fail now, before any SSH
        extras["host_name"] = name
        jump = host.get("jump_host")
        if jump and name != cluster.bastion.name and not cluster.bastion.local:
            extras["gateway"] = {
                "name": cluster.bastion.name,
                "hostname": bastion.hostname,
                "port": bastion.port or 22,
                "username": bastion.username,
            }
        host.connection_options[CONNECTION_NAME] = ConnectionOptions(
            hostname=params.hostname, port=params.port, username=params.username,
            password=None, platform=params.platform, extras=extras,
        )
