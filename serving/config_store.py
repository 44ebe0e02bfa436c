"""``POST /config``: merge a change into the config file, validate it exactly as the file is validated, write it
atomically, and say what changed (secrets redacted).

The change is a JSON object shaped like the file: sections merge key by key, every other value replaces. The
merged document is validated by ``lstm_pipeline.settings.load_settings`` (same rules, same one-sentence errors)
before the file is replaced in one ``os.replace``: a reader sees the old file or the new one, never half of one.
Secrets are not written through the API: set them in the environment or the file by hand.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lstm_pipeline.settings import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings

SECRET_PATHS = frozenset({"polygon_api_key", "api.api_key"})
REDACTED = "**********"
_write_lock = threading.Lock()


class ConfigRejected(ValueError):
    """The change is not valid; the message names the key and the reason."""


def config_path(environ: Mapping[str, str]) -> Path:
    """The file the service reads and writes: ``LSTM_PIPELINE_CONFIG`` or the project's default."""
    chosen = environ.get(CONFIG_ENV_VAR)
    return Path(chosen).expanduser().resolve() if chosen else DEFAULT_CONFIG_PATH


def redacted(settings: Settings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    return {prefix: value}


def _merge(base: dict[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _secret_keys(change: Mapping[str, Any]) -> list[str]:
    return sorted(path for path in _flatten(dict(change)) if path in SECRET_PATHS or path.startswith("api.api_key"))


def apply_change(change: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[Settings, list[dict[str, Any]]]:
    """Validate and persist ``change``; returns the new settings and the changed keys (old and new values)."""
    secrets = _secret_keys(change)
    if secrets:
        raise ConfigRejected(
            f"'{secrets[0]}' is a secret and the API does not write secrets; set it in the environment or edit "
            "the config file by hand."
        )
    path = config_path(environ)
    with _write_lock:
        raw: dict[str, Any] = {}
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise ConfigRejected(f"Config file {path} cannot be read ({error}); fix it by hand first.") from None
            if not isinstance(raw, dict):
                raise ConfigRejected(f"Config file {path} does not hold a JSON object; fix it by hand first.")
        path.parent.mkdir(parents=True, exist_ok=True)
        old, old_temp = _validated(raw, path, environ)
        Path(old_temp).unlink(missing_ok=True)
        new, temp = _validated(_merge(raw, change), path, environ)
        try:
            if path.exists():
                os.chmod(temp, path.stat().st_mode & 0o777)
            os.replace(temp, path)
        finally:
            Path(temp).unlink(missing_ok=True)
    before, after = _flatten(redacted(old)), _flatten(redacted(new))
    changes = [
        {"key": key, "old": before.get(key), "new": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    return new, changes


def _validated(document: dict[str, Any], path: Path, environ: Mapping[str, str]) -> tuple[Settings, str]:
    """``document`` validated as the file at ``path`` would be; returns the settings and the written temp file."""
    handle, temp = tempfile.mkstemp(prefix=".config.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        return load_settings(temp, dict(environ)), temp
    except ConfigError as error:
        Path(temp).unlink(missing_ok=True)
        raise ConfigRejected(str(error).replace(temp, str(path))) from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
