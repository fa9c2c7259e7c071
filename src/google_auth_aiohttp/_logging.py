"""The package's logger, and URLs made safe to log.

Everything is logged at DEBUG through ``logging.getLogger("google_auth_aiohttp")``:
methods, URLs without their query string (a query may carry a token or key),
statuses and refreshes. Headers and bodies are never logged.
"""

from __future__ import annotations

import logging

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
