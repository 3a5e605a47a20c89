"""Keystone v3: password authentication scoped to a project, version documents, token checks.

Tokens are random opaque strings kept in memory with their expiry; `/_sim/tokens/expire` ends
them all at once, as a Keystone restart with rotated fernet keys would.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime

from aiohttp import web

from .fleet import CloudSettings

DOMAIN = {"id": "default", "name": "Default"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def unauthorized(message: str = "The request you have made requires authentication.") -> web.Response:
    return web.json_response(
        {"error": {"code": 401, "message": message, "title": "Unauthorized"}},
        status=401,
        headers={"WWW-Authenticate": 'Keystone uri="/identity"'},
    )


class Keystone:
    def __init__(self, settings: CloudSettings):
        self.settings = settings
        self.user_id = uuid.uuid4().hex
        self.project_id = uuid.uuid4().hex
        self.customer_project_id = uuid.uuid4().hex
        self.tokens: dict[str, float] = {}  # token -> expires_at (epoch seconds)
        self.base_url = ""  # set once the server knows its port

    # -- tokens -------------------------------------------------------------------------------

    def valid(self, token: str | None) -> bool:
        expires = self.tokens.get(token or "")
        return expires is not None and expires > time.time()

    def expire_all(self) -> int:
        count = len(self.tokens)
        self.tokens = {token: 0.0 for token in self.tokens}
        return count

    # -- routes -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/identity", self.versions),
            web.get("/identity/", self.versions),
            web.get("/identity/v3", self.version),
            web.get("/identity/v3/", self.version),
            web.post("/identity/v3/auth/tokens", self.issue_token),
            web.get("/identity/v3/auth/tokens", self.validate_token),
        ]

    def _version_doc(self) -> dict:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base_url}/identity/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    async def versions(self, request: web.Request) -> web.Response:
        return web.json_response({"versions": {"values": [self._version_doc()]}}, status=300)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self._version_doc()})

    async def issue_token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            auth = body["auth"]
            methods = auth["identity"]["methods"]
        except (ValueError, KeyError, TypeError):
            return _bad_request(
                "Expecting to find auth in request body. The server could not comply with the request."
            )
        if methods != ["password"]:
            return unauthorized()
        user = auth["identity"].get("password", {}).get("user", {})
        name_ok = user.get("name") == self.settings.username or user.get("id") == self.user_id
        if not name_ok or user.get("password") != self.settings.password:
            return unauthorized()
        project = (auth.get("scope") or {}).get("project") or {}
        if project and project.get("name") != self.settings.project and project.get("id") != self.project_id:
            return unauthorized()
        issued = time.time()
        expires = issued + self.settings.token_lifetime_s
        token = "gAAAA" + secrets.token_urlsafe(48)
        self.tokens[token] = expires
        return web.json_response(
            {"token": self._token_body(issued, expires, scoped=bool(project))},
            status=201,
            headers={"X-Subject-Token": token},
        )

    async def validate_token(self, request: web.Request) -> web.Response:
        if not self.valid(request.headers.get("X-Auth-Token")):
            return unauthorized()
        subject = request.headers.get("X-Subject-Token")
        if not self.valid(subject):
            return web.json_response(
                {"error": {"code": 404, "message": "Could not find token.", "title": "Not Found"}}, status=404
            )
        expires = self.tokens[subject]
        return web.json_response(
            {"token": self._token_body(expires - self.settings.token_lifetime_s, expires, scoped=True)},
            headers={"X-Subject-Token": subject},
        )

    def _token_body(self, issued: float, expires: float, scoped: bool) -> dict:
        body = {
            "methods": ["password"],
            "user": {
                "domain": DOMAIN,
                "id": self.user_id,
                "name": self.settings.username,
                "password_expires_at": None,
            },
            "audit_ids": [secrets.token_urlsafe(16)],
            "expires_at": _iso(expires),
            "issued_at": _iso(issued),
        }
        if scoped:
            body.update(
                {
                    "project": {"domain": DOMAIN, "id": self.project_id, "name": self.settings.project},
                    "is_domain": False,
                    "roles": [
                        {"id": uuid.uuid5(uuid.NAMESPACE_DNS, r).hex, "name": r}
                        for r in ("admin", "member", "reader")
                    ],
                    "catalog": self.catalog(),
                }
            )
        return body

    def catalog(self) -> list[dict]:
        region = self.settings.region

        def endpoints(url: str) -> list[dict]:
            return [
                {
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, url + i).hex,
                    "interface": i,
                    "region": region,
                    "region_id": region,
                    "url": url,
                }
                for i in ("public", "internal", "admin")
            ]

        return [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_DNS, "keystone").hex,
                "type": "identity",
                "name": "keystone",
                "endpoints": endpoints(f"{self.base_url}/identity"),
            },
            {
                "id": uuid.uuid5(uuid.NAMESPACE_DNS, "nova").hex,
                "type": "compute",
                "name": "nova",
                "endpoints": endpoints(f"{self.base_url}/compute/v2.1"),
            },
            {
                "id": uuid.uuid5(uuid.NAMESPACE_DNS, "placement").hex,
                "type": "placement",
                "name": "placement",
                "endpoints": endpoints(f"{self.base_url}/placement"),
            },
        ]


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"code": 400, "message": message, "title": "Bad Request"}}, status=400)
