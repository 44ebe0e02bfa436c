"""Who is calling: API keys with roles, the rate limit, and the FastAPI dependency that enforces both.

``require_role("reader")`` guards every GET but ``/health``, ``require_role("operator")`` the endpoints that change
something. A key comes in the ``X-API-Key`` header or, for the dashboard page, the ``lstm_pipeline_key`` cookie.
No key: 401. A key that is not one of ours: 403. A reader key on an operator endpoint: 403 naming the role.
Over the rate limit: 429 with ``Retry-After``. The key itself is never logged or stored; the audit trail and the
logs name its key id.

Requests without a valid key are limited per client address, so a flood of them is refused after the limit; the
audit trail then holds one 429 entry per caller per minute, and the refusals folded into it are counted in the
next one (``repeated``) or, at shutdown, in a closing entry: a flood cannot push real entries out of the rotated
trail. The key ring follows its sources while the service runs: a change of the key file beside the instance or
of the config file (one ``stat`` of each per request) reloads the keys, so rotating a key needs no restart.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader

from lstm_pipeline.settings import ConfigError, Settings, _loopback, load_settings
from serving.config_store import config_path
from serving.keys import (
    Role,
    StoredKey,
    configured_keys,
    issue_key,
    key_file_path,
    read_key_file,
    verify_hash,
)

LOGGER = logging.getLogger("serving.security")
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


FileStamp = tuple[int, int, int] | None
"""(inode, size, mtime_ns) of a watched file; None when it does not exist."""


def _stamp(path: Path | None) -> FileStamp:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass
class KeySources:
    """Where the keys come from, and the state of the two files among them when they were last read."""

    settings: Settings
    environ: Mapping[str, str]
    key_file: Path
    config_file: Path | None
    key_file_stamp: FileStamp = None
    config_stamp: FileStamp = None

    def __post_init__(self) -> None:
        self.key_file_stamp, self.config_stamp = _stamp(self.key_file), _stamp(self.config_file)

    def keys(self) -> list[StoredKey]:
        return configured_keys(self.settings, self.environ) + read_key_file(self.key_file)


class KeyRing:
    """The accepted keys, as hashes. ``auth_required=False`` (only ever on a loopback host) lets every caller in
    as the local operator. With ``sources`` the ring reloads itself when the key file or the config file changes."""

    def __init__(self, keys: list[StoredKey], *, auth_required: bool = True, sources: KeySources | None = None
                 ) -> None:
        self.keys = list(keys)
        self.auth_required = auth_required
        self.sources = sources
        self._reload_lock = threading.Lock()

    def verify(self, key: str) -> Principal | None:
        self.reload_if_changed()
        stored = verify_hash(key, self.keys)
        return Principal(stored.key_id, stored.role) if stored else None

    def reload_if_changed(self) -> bool:
        """Reread the keys if the key file or the config file changed since they were read; True if reloaded.

        A file that cannot be read or validated right now (an editor halfway through) keeps the keys as they were,
        with one warning, and is tried again once it changes again."""
        sources = self.sources
        if sources is None:
            return False
        key_stamp, config_stamp = _stamp(sources.key_file), _stamp(sources.config_file)
        if key_stamp == sources.key_file_stamp and config_stamp == sources.config_stamp:
            return False
        with self._reload_lock:
            if key_stamp == sources.key_file_stamp and config_stamp == sources.config_stamp:
                return False  # another request reloaded meanwhile
            settings = sources.settings
            try:
                if config_stamp != sources.config_stamp and config_stamp is not None:
                    settings = load_settings(sources.config_file, dict(sources.environ))
                keys = configured_keys(settings, sources.environ) + read_key_file(sources.key_file)
            except (ConfigError, ValueError) as error:
                LOGGER.warning("The API keys were not reloaded, the previous ones stay: %s", error)
                keys = None
            sources.key_file_stamp, sources.config_stamp = key_stamp, config_stamp
            if keys is None:
                return False
            sources.settings = settings
            self.keys = keys
            return True

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
        config_file = config_path(environ)
        sources = KeySources(settings, environ, path, config_file if config_file.is_file() else None)
        return cls(keys, auth_required=auth_required, sources=sources)


class RateLimiter:
    """At most ``per_minute`` requests per caller in any sliding 60 seconds; the clock is injectable for tests."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._folded: dict[str, tuple[float, int, dict[str, Any] | None]] = {}
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

    def audit_refusal(self, caller: str, entry: dict[str, Any] | None = None) -> int | None:
        """Whether a 429 of ``caller`` goes into the audit trail: at most one per caller per minute. None: fold it
        into that one (``entry`` describes it, for the closing count); else the number folded since the last one."""
        now = self.clock()
        with self._lock:
            until, folded, _ = self._folded.get(caller, (0.0, 0, None))
            if now < until:
                self._folded[caller] = (until, folded + 1, entry)
                return None
            self._folded[caller] = (now + 60.0, 0, None)
            if len(self._folded) > 10_000:
                for name in [n for n, (u, count, _) in self._folded.items() if u <= now and not count]:
                    del self._folded[name]
            return folded

    def folded_refusals(self) -> list[tuple[int, dict[str, Any]]]:
        """The 429s folded since each caller's last audited one (count, the last one's entry); forgets them."""
        with self._lock:
            pending = [(count, entry) for _, count, entry in self._folded.values() if count and entry]
            self._folded.clear()
        return pending


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _refuse(request: Request, status: int, detail: str, principal: Principal | None = None,
            headers: dict[str, str] | None = None) -> HTTPException:
    request.state.principal = principal
    return HTTPException(status_code=status, detail=detail, headers=headers)


def limit_client(request: Request) -> None:
    """The per-address limit of requests without a valid key (429 once reached)."""
    _limit(request, f"client:{client_address(request)}", None)


def limit_key(request: Request, principal: Principal) -> None:
    _limit(request, f"key:{principal.key_id}", principal)


def _limit(request: Request, caller: str, principal: Principal | None) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.retry_after(caller)
    if wait is not None:
        described = {"key_id": principal.key_id if principal else None, "role": principal.role if principal else None,
                     "client": client_address(request), "method": request.method, "path": request.url.path}
        folded = limiter.audit_refusal(caller, described)
        request.state.audit = {"fold": True} if folded is None else {"repeated": folded or None}
        raise _refuse(
            request, 429,
            f"Rate limit of {request.app.state.rate_limiter.per_minute} requests per minute reached; retry in "
            f"{wait} s.", principal, {"Retry-After": str(wait)},
        )


def require_role(role: Role) -> Callable[..., Any]:
    """A dependency admitting keys of ``role`` or a higher one; it returns the ``Principal``."""

    async def dependency(  # async: no blocking work, so FastAPI runs it on the loop, not a worker thread
        request: Request,
        header_key: str | None = Security(api_key_header),
        cookie_key: str | None = Security(api_key_cookie),
    ) -> Principal:
        keyring: KeyRing = request.app.state.keyring
        key = header_key or cookie_key
        if not keyring.auth_required and not key:
            principal = Principal("anonymous-loopback", "operator")
        elif not key:
            limit_client(request)
            raise _refuse(
                request, 401,
                f"This endpoint needs an API key: send it in the {API_KEY_HEADER} header.",
                headers={"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'},
            )
        else:
            found = keyring.verify(key)
            if found is None:
                limit_client(request)
                raise _refuse(request, 403, "The API key is not valid; check it or ask an operator for one.")
            principal = found
        request.state.principal = principal
        limit_key(request, principal)
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
