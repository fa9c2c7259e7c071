"""Sphinx configuration for google-auth-aiohttp.

The build is warning-free (``sphinx-build -W -n``) with or without a network.
Links to other projects' documentation come from their real inventories
(``objects.inv``): each is fetched from the project's site, and when that
fails (offline) read from the copy under ``_inventories/``, which
``_inventories/refresh.py`` updates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.ext import intersphinx

from google_auth_aiohttp import __version__

project = "google-auth-aiohttp"
author = "google-auth-aiohttp developers"
copyright = "2026, google-auth-aiohttp developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "myst_parser",  # the changelog is Markdown
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "furo"
html_title = f"google-auth-aiohttp {version}"
exclude_patterns = ["_build", "_inventories"]
nitpicky = True
nitpick_ignore = [
    # The private class behind what ClientSession.request() returns: aiohttp
    # documents it only as "an awaitable async context manager".
    ("py:class", "aiohttp.client._BaseRequestContextManager"),
    ("py:class", "aiohttp.client._RequestContextManager"),
    # The cached aiohttp inventory (3.8's) lists no ClientSession.request;
    # the site's current one does, and the link is made when it loads.
    ("py:meth", "aiohttp.ClientSession.request"),
]

# Each project: its documentation, and the cached copy of its inventory. The
# first location that loads wins: the site's own objects.inv, then the copy.
_INVENTORIES = Path(__file__).parent / "_inventories"
_PROJECTS = {
    "python": "https://docs.python.org/3/",
    "aiohttp": "https://docs.aiohttp.org/en/stable/",
    "yarl": "https://yarl.aio-libs.org/en/stable/",
    "multidict": "https://multidict.aio-libs.org/en/stable/",
    "google-auth": "https://googleapis.dev/python/google-auth/latest/",
    "pytest": "https://docs.pytest.org/en/stable/",
}
# A project with no cached copy is linked only once refresh.py has fetched
# one: without it an offline build could not resolve its names, and -W fails.
intersphinx_mapping = {
    name: (url, (None, str(_INVENTORIES / f"{name}.inv")))
    for name, url in _PROJECTS.items()
    if (_INVENTORIES / f"{name}.inv").is_file()
}
intersphinx_timeout = 10
nitpick_ignore_regex = [
    ("py:.*", rf"{module}(\..*)?")
    for name, module in (("multidict", "multidict"), ("google-auth", "google"))
    if name not in intersphinx_mapping
]

# Type hints name some classes by the private module that defines them; their
# documentation knows them by the public name.
_PUBLIC_NAMES = {
    "aiohttp.streams.StreamReader": "aiohttp.StreamReader",
    "multidict._multidict.CIMultiDictProxy": "multidict.CIMultiDictProxy",
}


def _by_public_name(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    public = _PUBLIC_NAMES.get(node.get("reftarget"))
    if public is None:
        return None
    node["reftarget"] = public
    return intersphinx.missing_reference(app, env, node, contnode)


def setup(app: Any) -> None:
    app.connect("missing-reference", _by_public_name)
