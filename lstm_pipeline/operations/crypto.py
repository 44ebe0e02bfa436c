"""Authenticated encryption of backup files: AES-256-GCM under the key in ``LSTM_PIPELINE_BACKUP_KEY``.

The key is urlsafe base64 of 32 random bytes (``generate_key()`` makes one). Every file is sealed as
``MAGIC + 12-byte nonce + ciphertext + 16-byte tag`` with the file's name inside its backup as associated data, so
a flipped byte, a truncated file or a file moved between backups fails authentication instead of restoring wrong
rows. A backup's clear-text manifest is sealed the same way with no ciphertext (only its tag), so it cannot be
edited either. This module imports no Dagster.
"""

from __future__ import annotations

import base64
import binascii
import os

from lstm_pipeline.operations.errors import OperationError

KEY_ENV_VAR = "LSTM_PIPELINE_BACKUP_KEY"
MAGIC = b"LSTMBK1\0"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class AuthenticationError(OperationError):
    """A sealed file was tampered with, truncated, or sealed under another key."""


def generate_key() -> str:
    """A new random key in the format ``LSTM_PIPELINE_BACKUP_KEY`` expects."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def parse_key(text: str) -> bytes:
    """The 32 key bytes of ``text``; one sentence naming the variable and the fix when it is malformed."""
    fix = (
        f"set {KEY_ENV_VAR} (or backups.key) to urlsafe base64 of 32 random bytes, e.g. the output of "
        "python -c \"from lstm_pipeline.operations.crypto import generate_key; print(generate_key())\""
    )
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise OperationError(f"The backup key is not valid base64; {fix}.") from None
    if len(raw) != KEY_BYTES:
        raise OperationError(f"The backup key decodes to {len(raw)} bytes, not {KEY_BYTES}; {fix}.")
    return raw


def seal(key: bytes, data: bytes, name: str) -> bytes:
    """``data`` encrypted and authenticated under ``key``, bound to ``name`` (its place in the backup)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, data, name.encode("utf-8"))


def open_sealed(key: bytes, sealed: bytes, name: str, where: str) -> bytes:
    """The plaintext of a sealed file; ``AuthenticationError`` naming ``where`` if it does not authenticate."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
        raise AuthenticationError(
            f"{where} fails authentication: it is truncated or not an encrypted backup file; restore from another "
            "backup."
        )
    nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES :], name.encode("utf-8"))
    except InvalidTag:
        raise AuthenticationError(
            f"{where} fails authentication: it was modified or truncated after it was written, or the backup key "
            f"is not the one it was made with; check {KEY_ENV_VAR} or restore from another backup."
        ) from None


def sign(key: bytes, data: bytes, name: str) -> bytes:
    """A tag (nonce + GCM tag over nothing, with ``data`` as associated data) that authenticates clear ``data``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, b"", name.encode("utf-8") + b"\0" + data)


def check_signature(key: bytes, data: bytes, signature: bytes, name: str, where: str) -> None:
    """Raise ``AuthenticationError`` naming ``where`` unless ``signature`` authenticates ``data``."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not signature.startswith(MAGIC) or len(signature) != len(MAGIC) + NONCE_BYTES + TAG_BYTES:
        raise AuthenticationError(f"{where} fails authentication: its signature file is damaged; restore from "
                                  "another backup.")
    nonce = signature[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        AESGCM(key).decrypt(nonce, signature[len(MAGIC) + NONCE_BYTES :], name.encode("utf-8") + b"\0" + data)
    except InvalidTag:
        raise AuthenticationError(
            f"{where} fails authentication: it was modified after it was written, or the backup key is not the one "
            f"it was made with; check {KEY_ENV_VAR} or restore from another backup."
        ) from None
