"""``POST /config``: merge a change into the config file, validate it exactly as the file is validated, write it
atomically, and say what changed (secrets redacted).

The change is a JSON object shaped like the file: sections merge key by key, every other value replaces. The
merged document is validated by ``lstm_pipeline.settings.load_settings`` (same rules, same one-sentence errors)
before the file is replaced in one ``os.replace`` (the new file and then its folder fsynced first, so a crash
leaves the old file or the whole new one): a reader sees the old file or the new one, never half of one.

Secrets are never written through the API: every ``SecretStr`` setting of ``Settings`` (found by walking the model,
so a secret added to the settings is refused without a change here) is refused with the environment variable to
set instead. A key that an environment variable overrides is still saved to the file, and the answer says that the
variable keeps deciding its value (instead of reporting an unexplained "no change").
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from lstm_pipeline.settings import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    ENV_OVERRIDES,
    ConfigError,
    Settings,
    load_settings,
)

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


def _holds_secret(annotation: Any) -> bool:
    """Whether a value of this type is, or holds anywhere inside, a ``SecretStr``."""
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_secret(field.annotation) for field in annotation.model_fields.values())
    return any(_holds_secret(argument) for argument in typing.get_args(annotation))


def _secret_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of the secret fields of ``model``: into sections (a model, or an optional one) key by key; a
    list or mapping holding a secret anywhere is one path (the API replaces such values whole)."""
    paths: list[str] = []
    for name, field in model.model_fields.items():
        path, annotation = f"{prefix}{name}", field.annotation
        if not _holds_secret(annotation):
            continue
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        choices = typing.get_args(annotation) if union else (annotation,)
        sections = [c for c in choices if isinstance(c, type) and issubclass(c, BaseModel)]
        if sections and not any(_holds_secret(c) for c in choices if c not in sections):
            for section in sections:
                paths += _secret_fields(section, f"{path}.")
        else:
            paths.append(path)
    return paths


@functools.cache
def secret_paths() -> tuple[str, ...]:
    """Every secret-bearing setting (dotted key path), derived from the ``Settings`` model."""
    return tuple(dict.fromkeys(_secret_fields(Settings)))


SECRET_ENV_VARS: dict[str, str] = {".".join(path): variable for variable, path in ENV_OVERRIDES.items()}
"""Dotted key path -> the environment variable that sets it."""


def _secret_keys(change: Mapping[str, Any]) -> list[str]:
    """The secret settings ``change`` would write (a secret path, or a key inside one)."""
    found = set()
    for key in _flatten(dict(change)):
        for secret in secret_paths():
            if key == secret or key.startswith(f"{secret}."):
                found.add(secret)
    return sorted(found)


def _refusal(secret: str) -> str:
    variable = SECRET_ENV_VARS.get(secret)
    where = f"set the environment variable {variable} instead" if variable else \
        "set it in the config file by hand instead"
    return f"'{secret}' is a secret and the API never writes secrets into the config file; {where}."


def overridden_keys(change: Mapping[str, Any], settings: Settings) -> list[dict[str, str]]:
    """The keys of ``change`` whose value an environment variable decides (so saving them changes nothing now)."""
    found: dict[str, str] = {}
    for key in _flatten(dict(change)):
        parts = tuple(key.split("."))
        for depth in range(len(parts), 0, -1):
            variable = settings.env_variable_for(*parts[:depth])
            if variable:
                found[".".join(parts[:depth])] = variable
                break
    return [{"key": key, "variable": variable} for key, variable in sorted(found.items())]


def apply_change(change: Mapping[str, Any], environ: Mapping[str, str]
                 ) -> tuple[Settings, list[dict[str, Any]], list[dict[str, str]]]:
    """Validate and persist ``change``; returns the new settings, the changed keys (old and new values, as in
    effect) and the keys of the change that an environment variable overrides (``key``, ``variable``)."""
    secrets = _secret_keys(change)
    if secrets:
        raise ConfigRejected(_refusal(secrets[0]))
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
            _fsync(temp)
            os.replace(temp, path)
            _fsync(path.parent)
        finally:
            Path(temp).unlink(missing_ok=True)
    before, after = _flatten(redacted(old)), _flatten(redacted(new))
    changes = [
        {"key": key, "old": before.get(key), "new": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    return new, changes, overridden_keys(change, new)


def _fsync(path: str | Path) -> None:
    """Flush ``path`` (the new file before it replaces the old; then the folder, which makes the rename durable)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError:
        if not Path(path).is_dir():
            raise
        # some filesystems refuse fsync on a folder; the file's own fsync already happened
    finally:
        os.close(handle)


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
