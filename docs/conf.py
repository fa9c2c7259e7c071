"""Sphinx configuration for google-auth-aiohttp."""

from google_auth_aiohttp import __version__

project = "google-auth-aiohttp"
author = "google-auth-aiohttp developers"
copyright = "2026, google-auth-aiohttp developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "alabaster"
exclude_patterns = ["_build"]
