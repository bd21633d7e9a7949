"""The Graph emulator's login side: the OAuth2 client-credentials token endpoint and its tokens.

Answers what ``azure.identity.aio.ClientSecretCredential`` sends (one form ``POST
{authority}/{tenant}/oauth2/v2.0/token``) with Entra ID's answer shapes, including the AADSTS
error codes a user would search for; checks presented bearer tokens for the Graph side.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._graph_directory import GraphError

__all__ = ["TokenIssuer", "TokenRequest"]


@dataclass(slots=True)
class TokenRequest:
    """One request to the token endpoint (the secret is not kept)."""

    tenant: str
    client_id: str | None
    scope: str | None
    grant_type: str | None
    status: int
    time: float  # time.monotonic()


@dataclass(slots=True)
class _Token:
    client_id: str
    scope: str
    expires: float  # time.time(): the credential judges expiry on the wall clock too
    revoked: bool = False


class TokenIssuer:
    """Issues bearer tokens for one tenant and one client, and checks the ones presented."""

    def __init__(self, tenant: str, client_id: str, client_secret: str, lifetime: int) -> None:
        if lifetime < 1:
            raise ValueError(f"token_lifetime must be >= 1 s, got {lifetime}")
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.lifetime = lifetime
        self.tokens: dict[str, _Token] = {}
        self.requests: list[TokenRequest] = []
        self.accepting = True
        """False: every token is refused (401), as for an app whose access was revoked."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /{tenant}/oauth2/v2.0/token``."""
        tenant = request.match_info["tenant"]
        form = await request.post()
        values = {name: str(value) for name, value in form.items()}
        status, body = self.grant(tenant, values)
        self.requests.append(
            TokenRequest(
                tenant,
                values.get("client_id"),
                values.get("scope"),
                values.get("grant_type"),
                status,
                time.monotonic(),
            )
        )
        return web.json_response(body, status=status)

    def grant(self, tenant: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """The status and body answering a token request."""

        def error(status: int, code: str, description: str) -> tuple[int, dict[str, Any]]:
            return status, {"error": code, "error_description": description}

        if tenant != self.tenant:
            return error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        if form.get("client_id") != self.client_id:
            return error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application '{form.get('client_id')}' was not found in"
                f" the directory '{tenant}'.",
            )
        secret = form.get("client_secret", "")
        if not hmac.compare_digest(secret.encode(), self.client_secret.encode()):
            return error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return error(
                400,
                "invalid_scope",
                f"AADSTS1002012: The scope '{scope}' is not valid: client credentials"
                " need a '/.default' scope.",
            )
        token = secrets.token_urlsafe(32)
        self.tokens[token] = _Token(self.client_id, scope, time.time() + self.lifetime)
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": token,
        }

    def check(self, authorization: str) -> str:
        """The bearer token of an ``Authorization`` header, or a 401 saying what is wrong."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        record = self.tokens.get(token)
        if record is None or record.revoked or not self.accepting:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if time.time() >= record.expires:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        return token

    def revoke(self) -> None:
        for token in self.tokens.values():
            token.revoked = True

    def expire(self) -> None:
        now = time.time()
        for token in self.tokens.values():
            token.expires = min(token.expires, now)
