"""What users add to kubespray's command line: ``--tags``, ``--skip-tags``, ``--limit`` and
extra vars (``-e``), as kubespray users habitually do, plus the preflight's own tags.

Everything is validated here, before any SSH, and becomes plain argv items; the script
that runs the playbook quotes every item (``shlex.quote``), so nothing a user types is
ever read by the bastion's shell. Extra vars are read the way ansible reads them
(``@file``, JSON/YAML, or ``key=value`` words) so the ones that would turn host key
checking off are refused like the same ``kubespray_vars``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from kubebastion.errors import ConfigError
from kubebastion.kubespray.inventory import check_kubespray_vars

#: kubespray's own quick checks (cluster.yml): ``validate_inventory`` is tagged ``always``
#: (playbooks/boilerplate.yml), fact gathering ``facts`` (playbooks/internal_facts.yml),
#: kubernetes/preinstall's assertions ``asserts`` (roles/kubernetes/preinstall/tasks/
#: main.yml, 0040-verify-settings.yml). Run against real v2.31.0 on lab nodes: changed=0.
PREFLIGHT_TAGS = ("facts", "asserts")
CLUSTER_PLAYBOOK = "cluster.yml"
FACTS_PLAYBOOK = "playbooks/facts.yml"
SCALE_PLAYBOOK = "scale.yml"

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
#: ansible host patterns: names, groups, globs, ranges, ``:``/``,`` unions, ``!``/``&``.
_LIMIT = re.compile(r"^[A-Za-z0-9_.*?:,!&\[\]~^$-]{1,1000}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PlaybookOptions:
    """Additions to ``ansible-playbook ... cluster.yml -b``; empty adds nothing.
    ``playbook``: which of kubespray's playbooks (day two runs scale.yml, remove-node.yml,
    upgrade-cluster.yml, reset.yml, playbooks/facts.yml; see ``kubebastion.day2``)."""

    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    limit: str = ""
    extra_vars: tuple[str, ...] = ()
    playbook: str = CLUSTER_PLAYBOOK

    def argv(self) -> list[str]:
        args: list[str] = []
        if self.tags:
            args += ["--tags", ",".join(self.tags)]
        if self.skip_tags:
            args += ["--skip-tags", ",".join(self.skip_tags)]
        if self.limit:
            args += ["--limit", self.limit]
        for value in self.extra_vars:
            args += ["-e", value]
        return args

    def for_preflight(self) -> PlaybookOptions:
        """The preflight: its own tags, the user's limit and extra vars (they change what
        the assertions see), never the user's tags or skipped tags."""
        return replace(self, tags=PREFLIGHT_TAGS, skip_tags=())

    @property
    def is_preflight(self) -> bool:
        return self.tags == PREFLIGHT_TAGS and not self.skip_tags

    @property
    def keeps_record(self) -> bool:
        """Leaves what the last successful run recorded (``applied``) true: kubespray's own
        checks and facts change nothing, and ``scale.yml --limit`` touches only the new
        nodes, which the record does not hold yet."""
        return (self.is_preflight or self.playbook == FACTS_PLAYBOOK
                or (self.playbook == SCALE_PLAYBOOK and bool(self.limit)))

    @property
    def plays_everything(self) -> bool:
        """No tags chosen or skipped: the whole of cluster.yml (on the hosts limited to)."""
        return not self.tags and not self.skip_tags and self.playbook == CLUSTER_PLAYBOOK

    def describe(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv())


def parse_tags(value: str | Iterable[str], option: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` into tag names; anything else is refused."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    tags = tuple(str(p).strip() for p in parts if str(p).strip())
    bad = [t for t in tags if not _TAG.fullmatch(t)]
    if bad:
        raise ConfigError(f"{option}: {', '.join(map(repr, bad))} is not a tag name "
                          "(letters, digits, _ . -; several separated by commas)")
    return tags


def parse_limit(value: str) -> str:
    limit = value.strip()
    if limit and not _LIMIT.fullmatch(limit):
        raise ConfigError(f"--limit {value!r} is not an ansible host pattern (host or group "
                          "names, globs, ranges, joined by , or :)")
    return limit


def extra_vars_mapping(value: str) -> dict[str, Any]:
    """One ``-e`` value as ansible reads it: JSON/YAML when it starts with ``{``, else
    ``key=value`` words (shell-like quoting inside). ``@file`` is refused: the file would
    be looked for on the bastion, where kubebastion cannot check it."""
    text = value.strip()
    if not text or "\x00" in text:
        raise ConfigError("an extra var (-e) is empty")
    if text.startswith("@"):
        raise ConfigError(f"extra vars from a file ({text!r}) are not supported: put the "
                          "variables in kubespray_vars (defaults.yaml) instead")
    if text.startswith(("{", "[")):
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"extra vars {text!r} are not valid JSON/YAML: "
                              f"{str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"extra vars {text!r} must be a mapping")
        mapping = loaded
    else:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise ConfigError(f"extra vars {text!r}: {exc}") from None
        mapping = {}
        for word in words:
            key, sep, val = word.partition("=")
            if not sep:
                raise ConfigError(f"extra var {word!r} must be key=value (or JSON)")
            mapping[key] = val
    bad = [str(k) for k in mapping if not _VAR_NAME.fullmatch(str(k))]
    if bad:
        raise ConfigError(f"extra vars: {', '.join(map(repr, bad))} is not a variable name")
    return mapping


def parse_extra_vars(values: Sequence[object]) -> tuple[str, ...]:
    """Each value checked (see :func:`extra_vars_mapping`); kept as given for ansible."""
    texts: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ConfigError(f"extra vars must be strings (key=value or JSON), not {value!r}")
        try:
            check_kubespray_vars(extra_vars_mapping(value))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("kubespray_vars", "extra vars (-e)")) from None
        texts.append(value.strip())
    return tuple(texts)


def playbook_options(*, tags: str = "", skip_tags: str = "", limit: str = "",
                     extra_vars: Sequence[object] = ()) -> PlaybookOptions:
    """From the command line (and the inventory's ``extra_vars`` setting)."""
    return PlaybookOptions(tags=parse_tags(tags, "--tags"),
                           skip_tags=parse_tags(skip_tags, "--skip-tags"),
                           limit=parse_limit(limit), extra_vars=parse_extra_vars(extra_vars))
