"""Render the files kubebastion puts on hosts from Jinja2 templates under ``templates/``.

Rendering happens here, locally, and the result is uploaded as a string: the host needs
no Jinja2, and a missing variable fails before anything is written (``StrictUndefined``)
instead of producing a config file with a silent hole in it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES_ENV = "KUBEBASTION_TEMPLATES"
#: The repository's top-level templates/ folder (the package is installed editable).
DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def templates_dir() -> Path:
    """Where templates live: ``$KUBEBASTION_TEMPLATES`` if set, else the repository's."""
    override = os.environ.get(TEMPLATES_ENV)
    return Path(override) if override else DEFAULT_TEMPLATES_DIR


@functools.cache
def _environment(folder: str) -> Environment:
    # Generated files are configuration, not HTML: no autoescape. keep_trailing_newline
    # so a rendered file ends like its template (tools such as sysctl and nft care).
    return Environment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )


def render(name: str, **variables: object) -> str:
    """Render template ``name`` (a path relative to templates/, e.g. ``nat/nat.nft.j2``)."""
    return _environment(str(templates_dir())).get_template(name).render(**variables)
