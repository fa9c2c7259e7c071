"""Sphinx configuration for google-auth-aiohttp.

The build is offline and warning-free (``sphinx-build -W -n``). Links to
Python's, aiohttp's, yarl's, multidict's and google-auth's documentation come
from small inventories written here, at build time, from the table below:
the real pages' addresses, and no network needed to build.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

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
exclude_patterns = ["_build"]
nitpicky = True
nitpick_ignore = [
    # The private class behind what ClientSession.request() returns: aiohttp
    # documents it only as "an awaitable async context manager".
    ("py:class", "aiohttp.client._BaseRequestContextManager"),
    ("py:class", "aiohttp.client._RequestContextManager"),
]

# name -> (role, page#anchor), per project: the objects these docs link to.
_LINKS: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "python": (
        "Python",
        "https://docs.python.org/3/",
        {
            "TimeoutError": ("py:exception", "library/exceptions.html#TimeoutError"),
            "ValueError": ("py:exception", "library/exceptions.html#ValueError"),
            "TypeError": ("py:exception", "library/exceptions.html#TypeError"),
            "RuntimeError": ("py:exception", "library/exceptions.html#RuntimeError"),
            "ImportError": ("py:exception", "library/exceptions.html#ImportError"),
            "ssl.SSLContext": ("py:class", "library/ssl.html#ssl.SSLContext"),
            "datetime.datetime": ("py:class", "library/datetime.html#$"),
            **{
                f"collections.abc.{name}": (
                    "py:class",
                    "library/collections.abc.html#$",
                )
                for name in (
                    "Awaitable",
                    "Callable",
                    "Collection",
                    "Mapping",
                    "MutableMapping",
                )
            },
        },
    ),
    "aiohttp": (
        "aiohttp",
        "https://docs.aiohttp.org/en/stable/",
        {
            "aiohttp.ClientSession": ("py:class", "client_reference.html#$"),
            "aiohttp.ClientSession.request": ("py:method", "client_reference.html#$"),
            "aiohttp.ClientTimeout": ("py:class", "client_reference.html#$"),
            "aiohttp.ClientResponse": ("py:class", "client_reference.html#$"),
            "aiohttp.ClientRequest": ("py:class", "client_reference.html#$"),
            "aiohttp.TraceConfig": ("py:class", "tracing_reference.html#$"),
            "aiohttp.StreamReader": ("py:class", "streams.html#$"),
            "aiohttp.streams.StreamReader": (
                "py:class",
                "streams.html#aiohttp.StreamReader",
            ),
        },
    ),
    "yarl": (
        "yarl",
        "https://yarl.aio-libs.org/en/stable/",
        {"yarl.URL": ("py:class", "api/#$")},
    ),
    "multidict": (
        "multidict",
        "https://multidict.aio-libs.org/en/stable/",
        {
            "multidict.CIMultiDict": ("py:class", "multidict/#$"),
            "multidict.CIMultiDictProxy": ("py:class", "multidict/#$"),
            "multidict._multidict.CIMultiDictProxy": (
                "py:class",
                "multidict/#multidict.CIMultiDictProxy",
            ),
        },
    ),
    "google-auth": (
        "google-auth",
        "https://googleapis.dev/python/google-auth/latest/",
        {
            **{
                f"google.auth.exceptions.{name}": (
                    "py:exception",
                    "reference/google.auth.exceptions.html#$",
                )
                for name in (
                    "TransportError",
                    "RefreshError",
                    "DefaultCredentialsError",
                    "MutualTLSChannelError",
                    "GoogleAuthError",
                    "InvalidValue",
                )
            },
            "google.auth.default": ("py:function", "reference/google.auth.html#$"),
            "google.auth.aio.transport.Request": (
                "py:class",
                "reference/google.auth.aio.transport.html#$",
            ),
            "google.auth.credentials.Credentials": (
                "py:class",
                "reference/google.auth.credentials.html#$",
            ),
        },
    ),
}


def _inventory(project: str, objects: dict[str, tuple[str, str]]) -> bytes:
    lines = "".join(
        f"{name} {role} 1 {uri} -\n" for name, (role, uri) in sorted(objects.items())
    )
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    return header.encode() + zlib.compress(lines.encode())


_inventories = Path(tempfile.mkdtemp(prefix="google-auth-aiohttp-inv-"))
intersphinx_mapping = {}
for _key, (_project, _base, _objects) in _LINKS.items():
    _path = _inventories / f"{_key}.inv"
    _path.write_bytes(_inventory(_project, _objects))
    intersphinx_mapping[_key] = (_base, str(_path))
