"""Render the files kubebastion puts on hosts from the Jinja2 templates shipped in the package.

Rendering happens here, locally, and the result is uploaded as a string: the host needs
no Jinja2, and a missing variable fails before anything is written (``StrictUndefined``)
instead of producing a config file with a silent hole in it.

The templates are package data (``kubebastion/templates/``; the checkout's top-level
``templates`` is a link to it), read through ``importlib.resources``: a wheel installed
anywhere renders the same files as the checkout, with no path into a source tree.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from importlib.resources import files
from importlib.resources.abc import Traversable

from jinja2 import BaseLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

TEMPLATES_ENV = "KUBEBASTION_TEMPLATES"


def packaged_templates() -> Traversable:
    """The ``templates`` folder inside the installed package."""
    return files("kubebastion").joinpath("templates")


class PackageResourceLoader(BaseLoader):
    """Templates read from package data with ``importlib.resources``.

    Jinja2's own ``PackageLoader`` finds the package folder through import internals and
    refuses some installs (zip imports without a folder); ``importlib.resources`` is the
    interface Python defines for reading a package's data wherever it is installed.
    """

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(self, environment: Environment, template: str
                   ) -> tuple[str, str | None, Callable[[], bool] | None]:
        parts = template.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise TemplateNotFound(template)
        resource = self.root.joinpath(*parts)
        if not resource.is_file():
            raise TemplateNotFound(template)
        # Package data does not change while a process runs: never reload.
        return resource.read_text(encoding="utf-8"), str(resource), lambda: True


@functools.cache
def _environment(override: str | None) -> Environment:
    """One environment per template source: ``override`` (``$KUBEBASTION_TEMPLATES``, a
    folder of the same layout) when set, else the package's own templates."""
    loader: BaseLoader = (FileSystemLoader(override) if override
                          else PackageResourceLoader(packaged_templates()))
    # Generated files are configuration, not HTML: no autoescape. keep_trailing_newline
    # so a rendered file ends like its template (tools such as sysctl and nft care).
    return Environment(
        loader=loader,
        undefined=StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )


def render(name: str, **variables: object) -> str:
    """Render template ``name`` (a path relative to templates/, e.g. ``nat/nat.nft.j2``)."""
    return _environment(os.environ.get(TEMPLATES_ENV)).get_template(name).render(**variables)
