"""Who is calling: API keys with roles, the rate limit, and the FastAPI dependency that enforces both.

``require_role("reader")`` guards every GET but ``/health``, ``require_role("operator")`` the endpoints that change
something. A key comes in the ``X-API-Key`` header or, for the dashboard page, the ``lstm_pipeline_key`` cookie.
No key: 401. A key that is not one of ours: 403. A reader key on an operator endpoint: 403 naming the role.
Over the rate limit: 429 with ``Retry-After``. The key itself is never logged or stored; the audit trail and the
logs name its key id.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader

from lstm_pipeline.settings import Settings, _loopback
from serving.keys import (
    Role,
    StoredKey,
    configured_keys,
    issue_key,
    key_file_path,
    read_key_file,
    verify_hash,
)

API_KEY_HEADER = "X-API-Key"
API_KEY_COOKIE = "lstm_pipeline_key"
ROLE_RANK: dict[str, int] = {"reader": 1, "operator": 2}

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, scheme_name="ApiKeyHeader",
    description="An API key; its role (reader or operator) decides which endpoints it may call.",
)
api_key_cookie = APIKeyCookie(
    name=API_KEY_COOKIE, auto_error=False, scheme_name="ApiKeyCookie",
    description="The same key as a cookie, set by the dashboard's login form.",
)


@dataclass(frozen=True)
class Principal:
    """The caller: the id of the key it presented (never the key) and that key's role."""

    key_id: str
    role: Role


class KeyRing:
    """The accepted keys, as hashes. ``auth_required=False`` (only ever on a loopback host) lets every caller in
    as the local operator."""

    def __init__(self, keys: list[StoredKey], *, auth_required: bool = True) -> None:
        self.keys = list(keys)
        self.auth_required = auth_required

    def verify(self, key: str) -> Principal | None:
        stored = verify_hash(key, self.keys)
        return Principal(stored.key_id, stored.role) if stored else None

    @classmethod
    def load(
        cls,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        announce: Callable[[str], None] | None = None,
    ) -> KeyRing:
        """Keys from config, environment and the key file; with none anywhere (and auth required), generate an
        operator key, keep its hash in the key file and announce the key once."""
        announce = announce or (lambda line: print(line, file=sys.stderr, flush=True))
        auth_required = settings.api.require_auth or not _loopback(settings.api.host)
        if not settings.api.require_auth and auth_required:
            announce(
                f"api.require_auth is false but api.host {settings.api.host} is not a loopback address, so keys "
                "are still required; set api.host to 127.0.0.1 to run without them."
            )
        path = key_file_path(environ)
        keys = configured_keys(settings, environ) + read_key_file(path)
        if not keys and auth_required:
            key = issue_key("operator", environ=environ, key_id="first-operator")
            keys = read_key_file(path)
            announce(
                f"No API key was configured, so an operator key was generated: {key}\n"
                f"It is shown only this once; its SHA-256 is kept in {path} (0600). Send it as the X-API-Key "
                "header. Mint more with `lstm-pipeline keys add --role reader` (serving.keys.issue_key)."
            )
        return cls(keys, auth_required=auth_required)


class RateLimiter:
    """At most ``per_minute`` requests per caller in any sliding 60 seconds; the clock is injectable for tests."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, caller: str) -> int | None:
        """Record a request of ``caller``; None when allowed, else the seconds until it would be."""
        now = self.clock()
        with self._lock:
            seen = self._seen.setdefault(caller, deque())
            while seen and seen[0] <= now - 60.0:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return max(1, math.ceil(seen[0] + 60.0 - now))
            seen.append(now)
            if len(self._seen) > 10_000:  # forget idle callers so spoofed addresses cannot grow this forever
                for name in [n for n, q in self._seen.items() if not q or q[-1] <= now - 60.0]:
                    del self._seen[name]
            return None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _refuse(request: Request, status: int, detail: str, principal: Principal | None = None,
            headers: dict[str, str] | None = None) -> HTTPException:
    request.state.principal = principal
    return HTTPException(status_code=status, detail=detail, headers=headers)


def _limit(request: Request, caller: str, principal: Principal | None) -> None:
    wait = request.app.state.rate_limiter.retry_after(caller)
    if wait is not None:
        raise _refuse(
            request, 429,
            f"Rate limit of {request.app.state.rate_limiter.per_minute} requests per minute reached; retry in "
            f"{wait} s.", principal, {"Retry-After": str(wait)},
        )


def require_role(role: Role) -> Callable[..., Any]:
    """A dependency admitting keys of ``role`` or a higher one; it returns the ``Principal``."""

    def dependency(
        request: Request,
        header_key: str | None = Security(api_key_header),
        cookie_key: str | None = Security(api_key_cookie),
    ) -> Principal:
        keyring: KeyRing = request.app.state.keyring
        key = header_key or cookie_key
        if not keyring.auth_required and not key:
            principal = Principal("anonymous-loopback", "operator")
        elif not key:
            _limit(request, f"client:{client_address(request)}", None)
            raise _refuse(
                request, 401,
                f"This endpoint needs an API key: send it in the {API_KEY_HEADER} header.",
                headers={"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'},
            )
        else:
            found = keyring.verify(key)
            if found is None:
                _limit(request, f"client:{client_address(request)}", None)
                raise _refuse(request, 403, "The API key is not valid; check it or ask an operator for one.")
            principal = found
        request.state.principal = principal
        _limit(request, f"key:{principal.key_id}", principal)
        if ROLE_RANK[principal.role] < ROLE_RANK[role]:
            raise _refuse(
                request, 403,
                f"This endpoint needs a key with the {role} role; key {principal.key_id} has the "
                f"{principal.role} role.",
                principal,
            )
        return principal

    dependency.required_role = role  # type: ignore[attr-defined]
    return dependency


require_reader = require_role("reader")
require_operator = require_role("operator")
