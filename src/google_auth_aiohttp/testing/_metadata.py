"""The GCE metadata server: the instance's default service account and project.

It answers only requests with ``Metadata-Flavor: Google``, as the real one
does: ``/`` (google-auth's ping), the project ID, the universe domain, and the
default service account's info, access tokens and ID tokens. Its token
requests count as the token endpoint's and obey its knobs.
"""

from __future__ import annotations

from aiohttp import web

from ._certs import Certs
from ._state import TokenKnobs, Tokens

PATH = "/computeMetadata/v1/{path:.*}"
_FLAVOR = {"Metadata-Flavor": "Google"}
_ACCOUNTS = "instance/service-accounts/"


class Metadata:
    """The metadata server of one instance.

    Attributes:
        project_id (str): The project it reports.
        service_account (str): The email of its default service account.
    """

    def __init__(
        self, project_id: str, knobs: TokenKnobs, tokens: Tokens, certs: Certs
    ) -> None:
        self.project_id = project_id
        self.service_account = f"vm-default@{project_id}.iam.gserviceaccount.com"
        self._knobs = knobs
        self._tokens = tokens
        self._certs = certs

    async def ping(self, request: web.Request) -> web.Response:
        """``GET /``: google-auth's check that it runs on Google Cloud."""
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403)
        return web.Response(text="ok", headers=_FLAVOR)

    async def metadata(self, request: web.Request) -> web.Response:
        """``GET /computeMetadata/v1/...``."""
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor header.")
        path = request.match_info["path"].rstrip("/")
        if path == "project/project-id":
            return web.Response(text=self.project_id, headers=_FLAVOR)
        if path == "universe/universe-domain":
            return web.Response(text="googleapis.com", headers=_FLAVOR)
        if path.startswith(_ACCOUNTS):
            account, _, leaf = path[len(_ACCOUNTS) :].partition("/")
            if account not in ("default", self.service_account):
                return web.Response(status=404, headers=_FLAVOR)
            if leaf == "":
                return web.json_response(
                    {
                        "email": self.service_account,
                        "aliases": ["default"],
                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                    },
                    headers=_FLAVOR,
                )
            if leaf == "identity":
                return await self._identity(request)
            if leaf == "token":
                return await self._token(request)
        return web.Response(status=404, headers=_FLAVOR)

    async def _identity(self, request: web.Request) -> web.Response:
        refused = await self._knobs.refusal(oauth=False)
        if refused is not None:
            return refused
        audience = request.query.get("audience")
        if not audience:
            return web.Response(status=400, text="audience required")
        return web.Response(
            text=self._certs.id_token(audience, email=self.service_account),
            headers=_FLAVOR,
        )

    async def _token(self, request: web.Request) -> web.Response:
        refused = await self._knobs.refusal(oauth=False)
        if refused is not None:
            return refused
        scopes = tuple(request.query.get("scopes", "").split(","))
        issued = self._tokens.issue(self.service_account, scopes)
        del issued["scope"]
        return web.json_response(issued, headers=_FLAVOR)
