"""``python -m google_auth_aiohttp``: the ``google-auth-aiohttp`` command line."""

import sys

from google_auth_aiohttp._cli import main

if __name__ == "__main__":
    sys.exit(main())
