"""The shape of SimpleInventory's files, checked before Nornir reads them (Nornir's own
errors on these are riddles: ``'workerz'``, ``'list' object has no attribute 'items'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubebastion.inventory_files import InventoryFiles, shape_problems

FILES = InventoryFiles(Path("nornir_config.yaml"), Path("inv/hosts.yaml"),
                       Path("inv/groups.yaml"), Path("inv/defaults.yaml"))
GROUPS = {"bastion": {}, "workers": {"data": {"role": "worker"}}}
HOSTS = {"bastion": {"hostname": "198.18.0.1", "groups": ["bastion"]},
         "w0": {"hostname": "198.18.0.2", "groups": ["workers"]}}


def test_a_good_inventory_has_no_problem() -> None:
    assert shape_problems(HOSTS, GROUPS, {"data": {}}, FILES) == []
    assert shape_problems(None, None, None, FILES) == []


@pytest.mark.parametrize(("hosts", "groups", "defaults", "expected"), [
    ({**HOSTS, "w1": {"groups": ["workerz"]}}, GROUPS, None,
     ["host 'w1' is in group 'workerz', which inv/groups.yaml does not define "
      "(defined: bastion, workers); fix the name or add the group"]),
    ([{"bastion": {}}], GROUPS, None,
     ["inv/hosts.yaml must be a mapping of each host name to its settings, not a list"]),
    ({"w0": None}, GROUPS, None,
     ["host 'w0' in inv/hosts.yaml must be a mapping of settings (use {} for none), "
      "not empty"]),
    ({"w0": {"groups": "workers"}}, GROUPS, None,
     ["host 'w0' in inv/hosts.yaml: groups must be a list of group names, not 'workers'"]),
    ({"w0": {"data": ["a"]}}, GROUPS, None,
     ["host 'w0' in inv/hosts.yaml: data must be a mapping, not a list"]),
    (HOSTS, {**GROUPS, "extra": {"groups": ["nope"]}}, None,
     ["group 'extra' is in group 'nope', which inv/groups.yaml does not define "
      "(defined: bastion, extra, workers); fix the name or add the group"]),
    (HOSTS, ["bastion"], "x",
     ["inv/groups.yaml must be a mapping of each group name to its settings, not a list",
      "inv/defaults.yaml must be a mapping of setting names to values, not a string",
      "host 'bastion' is in group 'bastion', which inv/groups.yaml does not define "
      "(defined: none); fix the name or add the group",
      "host 'w0' is in group 'workers', which inv/groups.yaml does not define "
      "(defined: none); fix the name or add the group"]),
], ids=["undefined group", "hosts a list", "host without settings", "groups a string",
        "data a list", "undefined parent group", "groups and defaults not mappings"])
def test_shape_problems_name_file_entry_and_fix(hosts: Any, groups: Any, defaults: Any,
                                                expected: list[str]) -> None:
    assert shape_problems(hosts, groups, defaults, FILES) == expected
