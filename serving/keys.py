"""API keys: minted with high entropy, stored only as SHA-256 hashes, checked in constant time.

Where keys come from (all of them are accepted at once, so rotating is: add the new key, move clients, remove the
old one):

- ``api.api_key`` in the config or ``LSTM_PIPELINE_API_KEY``: the spec's single key, an operator key;
- ``LSTM_PIPELINE_API_KEYS``: more keys from the environment, ``role:key`` pairs separated by commas
  (``reader:abc...,operator:def...``);
- ``api.keys`` in the config: ``{"id", "role", "sha256"}`` entries (hashes only);
- the key file ``api_keys.json`` beside the Dagster instance (``$DAGSTER_HOME``, 0600): hashes the service
  wrote when it generated the first operator key, and those ``issue_key`` minted since.

A key is never written anywhere in plain text by this project; only its hash and a key id (for the audit trail) are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lstm_pipeline.settings import PROJECT_ROOT, Settings

Role = Literal["reader", "operator"]
ROLES: tuple[Role, ...] = ("reader", "operator")
KEY_FILE_NAME = "api_keys.json"
KEYS_ENV_VAR = "LSTM_PIPELINE_API_KEYS"
KEY_PREFIX = "lsp_"


def instance_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The Dagster instance folder (``$DAGSTER_HOME``, else the project's ``dagster_home``): the service keeps its
    key hashes and audit trail there, never in the pipeline's database."""
    environ = os.environ if environ is None else environ
    home = environ.get("DAGSTER_HOME")
    return Path(home).expanduser().resolve() if home else PROJECT_ROOT / "dagster_home"


def key_file_path(environ: Mapping[str, str] | None = None) -> Path:
    return instance_dir(environ) / KEY_FILE_NAME


def hash_key(key: str) -> str:
    """SHA-256 of a key, hex: enough for keys minted with 256 bits of entropy (``generate_key``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class StoredKey:
    """A key as the service holds it: its id, role and hash (the key itself is gone once hashed)."""

    key_id: str
    role: Role
    sha256: str
    source: str


def read_key_file(path: Path) -> list[StoredKey]:
    """The hashed keys of ``path`` (none when it does not exist)."""
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())["keys"]
        return [StoredKey(e["id"], e["role"], e["sha256"], f"key file {path}") for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Key file {path} cannot be read ({error}); fix or delete it (a new operator key is then generated)."
        ) from None


def _write_key_file(path: Path, keys: list[StoredKey]) -> None:
    """Atomically, with 0600 permissions from the first byte (the temp file is created private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "about": "SHA-256 hashes of the REST API keys; the keys themselves are never stored.",
        "keys": [{"id": k.key_id, "role": k.role, "sha256": k.sha256} for k in keys],
    }
    handle, temp = tempfile.mkstemp(prefix=".api_keys.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(document, out, indent=2)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def issue_key(role: Role = "reader", *, environ: Mapping[str, str] | None = None, key_id: str | None = None) -> str:
    """Mint a key with ``role``, add its hash to the key file beside the instance and return the key (shown once).

    The running service reads the key file on every start; ``lstm-pipeline`` exposes this as a command."""
    if role not in ROLES:
        raise ValueError(f"Role {role!r} is not a role; use 'reader' or 'operator'.")
    path = key_file_path(environ)
    keys = read_key_file(path)
    key = generate_key()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    key_id = key_id or f"{role}-{stamp}-{secrets.token_hex(3)}"
    if any(k.key_id == key_id for k in keys):
        raise ValueError(f"Key id {key_id!r} is already in {path}; choose another id.")
    _write_key_file(path, [*keys, StoredKey(key_id, role, hash_key(key), f"key file {path}")])
    return key


def revoke_key(key_id: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Remove a key from the key file (the end of a rotation); False when the file holds no such id."""
    path = key_file_path(environ)
    keys = read_key_file(path)
    kept = [k for k in keys if k.key_id != key_id]
    if len(kept) == len(keys):
        return False
    _write_key_file(path, kept)
    return True


def configured_keys(settings: Settings, environ: Mapping[str, str]) -> list[StoredKey]:
    """Keys from the config and the environment, hashed on reading."""
    keys: list[StoredKey] = []
    if settings.api.api_key is not None and settings.api.api_key.get_secret_value():
        source = settings.env_variable_for("api", "api_key") or "config api.api_key"
        keys.append(StoredKey("api-key", "operator", hash_key(settings.api.api_key.get_secret_value()), source))
    for entry in settings.api.keys:
        keys.append(StoredKey(entry.id, entry.role, entry.sha256, "config api.keys"))
    for index, item in enumerate(filter(None, (p.strip() for p in environ.get(KEYS_ENV_VAR, "").split(","))), 1):
        role, sep, key = item.partition(":")
        if not sep or role not in ROLES or not key:
            raise ValueError(
                f"Environment variable {KEYS_ENV_VAR}: entry {index} is not 'role:key' with role reader or "
                "operator; fix it (e.g. reader:KEY1,operator:KEY2)."
            )
        keys.append(StoredKey(f"env-{index}", role, hash_key(key), KEYS_ENV_VAR))  # type: ignore[arg-type]
    return keys


def verify_hash(key: str, keys: list[StoredKey]) -> StoredKey | None:
    """The stored key matching ``key``; compares against every hash in constant time (no early exit)."""
    digest = hash_key(key).encode()
    found: StoredKey | None = None
    for stored in keys:
        if hmac.compare_digest(digest, stored.sha256.encode()):
            found = stored
    return found
