"""The package's logger, and URLs made safe to log.

Everything is logged at DEBUG through ``logging.getLogger("google_auth_aiohttp")``:
methods, URLs without their query string (a query may carry a token or key),
statuses and refreshes. Headers and bodies are never logged.
"""

from __future__ import annotations

import logging
import re

from yarl import URL

LOGGER = logging.getLogger("google_auth_aiohttp")


def safe_url(url: URL | str) -> str:
    """Return ``url`` without its user info, query and fragment.

    Args:
        url (Union[yarl.URL, str]): The URL to describe.

    Returns:
        str: A form of the URL that can be logged or put in an error message.

    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (TypeError, ValueError):
        return "<unparsable URL>"


# A URL inside free text: scheme (web schemes may lack the "//"), optional
# userinfo, the rest up to a query, a fragment, white space or a quote.
_URL_IN_TEXT = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://|(?i:https?|wss?):/*)"
    r"(?P<userinfo>[^\s/?#'\"]*@)?"
    r"(?P<rest>[^\s?#'\"]*)(?P<query>\?[^\s#'\"]*)?(?P<fragment>#[^\s'\"]*)?"
)
# What a URL without a scheme may hold: "user:password@" before a host, and a
# query ("?name=value") after it.
_USERINFO = re.compile(r"(?<![^\s'\"(<\[/])[^\s/?#'\"]*:[^\s/?#'\"]*@")
_QUERY = re.compile(r"(?P<path>[^\s?#'\"]+)\?[^\s#'\"=]*=[^\s'\"]*")


def scrub(text: str) -> str:
    """Return ``text`` with every URL in it made safe, as :func:`safe_url` does.

    For messages built of other libraries' texts (aiohttp's exceptions name
    the URL they failed on, with its query), which may quote URLs anywhere.

    Args:
        text (str): A message.

    Returns:
        str: The message, its URLs without user info, query or fragment.
    """
    text = _URL_IN_TEXT.sub(lambda m: m["scheme"] + m["rest"], text)
    return _QUERY.sub(r"\g<path>", _USERINFO.sub("", text))
