"""The shape of SimpleInventory's three files, checked before Nornir reads them.

Nornir trusts the shape: a host in a group nobody defined ends in ``KeyError: 'workerz'``,
a hosts.yaml written as a list in ``'list' object has no attribute 'items'``, a host with
no settings in ``'NoneType' object has no attribute 'get'``. These checks name the file,
the entry and what to write instead. What the entries mean (roles, addresses, users) is
cluster.py's job, once Nornir has read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ruamel.yaml
from ruamel.yaml.error import YAMLError

from kubebastion.errors import ConfigError, InventoryError

#: SimpleInventory's options and their defaults (nornir/plugins/inventory/simple.py).
FILE_OPTIONS = {"host_file": "hosts.yaml", "group_file": "groups.yaml",
                "defaults_file": "defaults.yaml"}
_MAPPINGS = ("data", "connection_options")


@dataclass(frozen=True)
class InventoryFiles:
    """Where the three files are, and the Nornir config that names them."""

    config: Path
    hosts: Path
    groups: Path
    defaults: Path


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", type(None): "empty"}.get(
        type(value), type(value).__name__)


def _entry_problems(what: str, where: Path, entry: object) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"{what} in {where} must be a mapping of settings (use {{}} for none), "
                f"not {_kind(entry)}"]
    problems = [f"{what} in {where}: {key} must be a mapping, not {_kind(entry[key])}"
                for key in _MAPPINGS if key in entry and not isinstance(entry[key], Mapping)]
    groups = entry.get("groups")
    if groups is not None and not (isinstance(groups, list)
                                   and all(isinstance(g, str) for g in groups)):
        problems.append(f"{what} in {where}: groups must be a list of group names, "
                        f"not {groups!r}")
    return problems


def _undefined_groups(what: str, entry: Mapping[str, Any], defined: Mapping[str, Any],
                      files: InventoryFiles) -> list[str]:
    groups = entry.get("groups")
    if not isinstance(groups, list):
        return []
    known = ", ".join(sorted(map(str, defined))) or "none"
    return [f"{what} is in group {group!r}, which {files.groups} does not define "
            f"(defined: {known}); fix the name or add the group"
            for group in groups if isinstance(group, str) and group not in defined]


def shape_problems(hosts: object, groups: object, defaults: object,
                   files: InventoryFiles) -> list[str]:
    """Every problem of shape in the three documents (``None``: an empty or absent file)."""
    problems = []
    documents = ((hosts, files.hosts, "each host name to its settings"),
                 (groups, files.groups, "each group name to its settings"),
                 (defaults, files.defaults, "setting names to values"))
    for document, where, maps in documents:
        if document is not None and not isinstance(document, Mapping):
            problems.append(f"{where} must be a mapping of {maps}, not {_kind(document)}")
    host_map = hosts if isinstance(hosts, Mapping) else {}
    group_map = groups if isinstance(groups, Mapping) else {}
    if isinstance(defaults, Mapping):
        problems += _entry_problems("the defaults", files.defaults, defaults)
    for kind, entries, where in (("host", host_map, files.hosts),
                                 ("group", group_map, files.groups)):
        for name, entry in entries.items():
            what = f"{kind} {name!r}"
            found = _entry_problems(what, where, entry)
            problems += found
            if not found and isinstance(entry, Mapping):
                problems += _undefined_groups(what, entry, group_map, files)
    return problems


def _read(path: Path, required: bool, config: Path) -> object:
    """What Nornir will read (its own YAML loader), ``None`` for an absent optional file."""
    if not path.exists() and not required:
        return None
    try:
        with path.open(encoding="utf-8") as handle:
            return ruamel.yaml.YAML(typ="safe").load(handle)
    except FileNotFoundError:
        raise ConfigError(f"inventory file {path} does not exist (named by inventory.options."
                          f"host_file in {config}, or Nornir's default hosts.yaml beside it)"
                          ) from None
    except IsADirectoryError:
        raise ConfigError(f"inventory file {path} is a directory, not a YAML file") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"inventory file {path} is not valid YAML{where}: {problem}"
                          ) from None


def check_simple_inventory(files: InventoryFiles) -> None:
    """Read the three files as Nornir will and raise on any problem of shape."""
    problems = shape_problems(_read(files.hosts, True, files.config),
                              _read(files.groups, False, files.config),
                              _read(files.defaults, False, files.config), files)
    if problems:
        raise InventoryError(problems)
